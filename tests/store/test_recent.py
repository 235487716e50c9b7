"""The recent-records window the event log serves repeated polls from."""

from __future__ import annotations

from headwater.store.recent import RecentRecords


def rows(first: int, last: int, size: int = 10) -> list[tuple[int, bytes]]:
    return [(o, str(o).encode().ljust(size, b".")) for o in range(first, last + 1)]


def test_a_read_is_served_from_the_window_and_only_the_rest_is_read() -> None:
    recent = RecentRecords(partitions=1, budget_bytes=1000)
    assert recent.lookup(0, 0, 5) == ([(0, 5)], 0, [])  # nothing kept yet: read 1..5
    recent.keep(0, rows(3, 6))
    spans, first, found = recent.lookup(0, 0, 8)
    assert spans == [(0, 2), (6, 2)]  # 1..2 before the window, 7..8 after it
    assert (first, found) == (3, [p for _, p in rows(3, 6)])
    recent.keep(0, rows(7, 8))  # continues the window
    assert recent.lookup(0, 4, 8) == ([], 5, [p for _, p in rows(5, 8)])


def test_the_window_keeps_to_its_share_of_the_budget_from_its_newest_end() -> None:
    recent = RecentRecords(partitions=2, budget_bytes=100)  # 50 bytes a partition
    recent.keep(1, rows(1, 8))
    spans, first, found = recent.lookup(1, 0, 8)
    assert (first, len(found), spans) == (4, 5, [(0, 3)])
    assert recent.lookup(0, 0, 8) == ([(0, 8)], 0, [])  # the other partition has its own


def test_a_read_past_a_gap_replaces_the_window_and_an_older_one_leaves_it() -> None:
    recent = RecentRecords(partitions=1, budget_bytes=1000)
    recent.keep(0, rows(1, 3))
    recent.keep(0, rows(10, 12))
    assert recent.lookup(0, 0, 12) == ([(0, 9)], 10, [p for _, p in rows(10, 12)])
    recent.keep(0, rows(1, 5))  # a slower reader: nothing after the window's end to add
    assert recent.lookup(0, 9, 12)[1:] == (10, [p for _, p in rows(10, 12)])
    recent.keep(0, [(13, b"x"), (15, b"y")])  # not consecutive: not kept
    assert recent.lookup(0, 12, 15) == ([(12, 3)], 0, [])


def test_records_just_appended_only_continue_the_window() -> None:
    """What the stage chain hands over never displaces what readers that are behind share."""
    recent = RecentRecords(partitions=1, budget_bytes=1000)
    recent.keep(0, rows(1, 3), replace=False)  # no window yet: starts one
    recent.keep(0, rows(4, 5), replace=False)  # continues it
    assert recent.lookup(0, 0, 5) == ([], 1, [p for _, p in rows(1, 5)])
    recent.keep(0, rows(9, 10), replace=False)  # past a gap: the readers' window stays
    assert recent.lookup(0, 0, 10) == ([(5, 5)], 1, [p for _, p in rows(1, 5)])
