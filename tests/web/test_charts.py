"""The server-drawn stacked bar chart: bars stacked in order and scaled to a round axis top,
no rectangle for a zero, labels thinned out, and the table fallback holding every number."""

from __future__ import annotations

from headwater.web.charts import HEIGHT, Series, stacked_bars


def test_bars_stack_bottom_up_on_a_round_axis() -> None:
    chart = stacked_bars(
        "Per hour",
        ["10:00", "11:00", "12:00"],
        [Series("Delivered", "ok", [6, 0, 3]), Series("Not delivered", "bad", [1, 0, 0])],
        x_label="Hour",
        y_label="Events",
        every=2,
    )
    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8"]  # 7 rounds up to 8
    first_ok, first_bad, third_ok = chart.bars  # the empty hour draws nothing
    assert (first_ok.css, first_bad.css, third_ok.css) == ("ok", "bad", "ok")
    assert first_bad.y + first_bad.height == first_ok.y  # stacked on top
    assert first_ok.y + first_ok.height == chart.plot_bottom == HEIGHT - 36
    assert first_ok.height == 2 * third_ok.height
    assert first_ok.label == "10:00 · Delivered: 6"
    assert [t.label for t in chart.x_ticks] == ["10:00", "12:00"]
    assert chart.rows == [("10:00", [6, 1]), ("11:00", [0, 0]), ("12:00", [3, 0])]


def test_an_empty_range_still_has_an_axis() -> None:
    chart = stacked_bars("Nothing", [], [Series("Delivered", "ok", [])], x_label="h", y_label="n")
    assert chart.bars == [] and chart.rows == []
    assert chart.y_ticks[-1].label == "4"
