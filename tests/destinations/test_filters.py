"""Destination filters on single events: Segment's rules, use cases and limits (AC-060 … 066)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from headwater.destinations.filters import (
    MAX_FILTERS,
    DestinationFilter,
    check_filters,
    compile_filters,
    sample_position,
)
from headwater.errors import ListError


def run(
    filters: list[dict[str, Any]], event: dict[str, Any], rng: random.Random | None = None
) -> dict[str, Any] | str:
    checked = check_filters([{"id": f"df_{i}", **f} for i, f in enumerate(filters)])
    apply = compile_filters(checked, rng=rng)
    assert apply is not None
    return apply(event)


def test_ac060_drop_events_without_a_user_id() -> None:
    rule = {"if": "length( userId ) < 1", "actions": [{"type": "DROP"}]}
    assert run([rule], {"type": "track", "anonymousId": "a1"}) == "FILTERED_BY_RULES:df_0"
    event = {"type": "track", "userId": "u1"}
    assert run([rule], event) == event


def test_ac061_drop_a_top_level_field() -> None:
    event = {"type": "track", "userId": "u1", "event": "Signed Up", "properties": {"a": 1}}
    sent = run(
        [{"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"": ["userId"]}}]}], event
    )
    assert sent == {"type": "track", "event": "Signed Up", "properties": {"a": 1}}
    assert event["userId"] == "u1"  # the router's copy of the event is left alone


def test_ac062_drop_a_key_from_every_element_of_a_list() -> None:
    event = {
        "properties": {"products": [{"id": 1, "newElement": "x"}, {"id": 2, "newElement": "y"}]}
    }
    sent = run(
        [
            {
                "if": "all",
                "actions": [
                    {"type": "DROP_PROPERTIES", "fields": {"properties.products": ["newElement"]}}
                ],
            }
        ],
        event,
    )
    assert sent == {"properties": {"products": [{"id": 1}, {"id": 2}]}}


def test_ac063_allow_only_some_properties() -> None:
    sent = run(
        [
            {
                "if": "all",
                "actions": [{"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan"]}}],
            }
        ],
        {"type": "identify", "properties": {"plan": "pro", "email": "a@b.c"}},
    )
    assert sent == {"type": "identify", "properties": {"plan": "pro"}}


def test_ac064_sampling() -> None:
    def kept(percent: float, path: str | None, events: list[dict[str, Any]]) -> list[bool]:
        action: dict[str, Any] = {"type": "SAMPLE", "percent": percent}
        if path:
            action["path"] = path
        rng = random.Random(7)
        return [
            not isinstance(run([{"if": "all", "actions": [action]}], e, rng), str) for e in events
        ]

    events = [{"userId": f"user-{n}"} for n in range(10_000)]
    assert not any(kept(0, "userId", events[:100]))
    assert all(kept(1, None, events[:100]))
    first = kept(0.5, "userId", events)
    assert kept(0.5, "userId", events) == first  # each user always in or always out
    assert 4_700 <= sum(first) <= 5_300  # ≈ 50 % (± 3 %)
    shuffled = kept(0.5, None, events)
    assert 4_700 <= sum(shuffled) <= 5_300
    assert 0 <= sample_position("user-1") < 1


def test_ac065_sample_runs_before_everything_else() -> None:
    filters = [
        {"if": "all", "actions": [{"type": "ALLOW_PROPERTIES", "fields": {"properties": ["a"]}}]},
        {"if": "all", "actions": [{"type": "SAMPLE", "percent": 0}]},
    ]
    assert run(filters, {"properties": {"a": 1}}) == "FILTERED_BY_RULES:df_1"


def test_drop_properties_runs_before_allow_properties() -> None:
    filters = [
        {
            "if": "all",
            "actions": [{"type": "ALLOW_PROPERTIES", "fields": {"properties": ["a", "b"]}}],
        },
        {
            "if": "contains(properties.b, 'x')",
            "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["b"]}}],
        },
    ]
    assert run(filters, {"properties": {"a": 1, "b": "x", "c": 3}}) == {"properties": {"a": 1}}


def test_ac066_limits() -> None:
    rule = {"if": "all", "actions": [{"type": "DROP"}]}
    check_filters([rule] * MAX_FILTERS)
    with pytest.raises(ListError, match="at most 10 filters"):
        check_filters([rule] * (MAX_FILTERS + 1))
    with pytest.raises(ListError, match="longer than 5120 bytes") as raised:
        check_filters([{"if": "event = '" + "x" * 5200 + "'", "actions": [{"type": "DROP"}]}])
    assert raised.value.field == "filters.0.if"


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"if": 'userId = oops"', "actions": [{"type": "DROP"}]}, "filters.0.if"),
        ({"if": "all", "actions": []}, "filters.0.actions"),
        ({"if": "all", "actions": [{"type": "SAMPLE"}]}, "filters.0.actions.0"),
        ({"if": "all", "actions": [{"type": "DROP_PROPERTIES"}]}, "filters.0.actions.0"),
        ({"if": "all", "actions": [{"type": "EXPLODE"}]}, "filters.0.actions.0.type"),
        (
            {"if": "all", "actions": [{"type": "SAMPLE", "percent": 2}]},
            "filters.0.actions.0.percent",
        ),
        ({"actions": [{"type": "DROP"}]}, "filters.0.if"),
    ],
)
def test_bad_filters_are_refused_with_their_place(filter_: dict[str, Any], field: str) -> None:
    with pytest.raises(ListError) as raised:
        check_filters([filter_])
    assert raised.value.field == field


def test_old_config_api_action_names() -> None:
    [checked] = check_filters(
        [
            {
                "if": "all",
                "actions": [{"type": "blocklist_fields", "fields": {"properties": ["email"]}}],
            }
        ]
    )
    assert checked.actions[0].type == "DROP_PROPERTIES"


def test_ids_are_kept_by_position_and_new_ones_made() -> None:
    rule = {"if": "all", "actions": [{"type": "DROP"}]}
    made = iter(["df_new1", "df_new2"])
    first = check_filters([rule], new_id=lambda: next(made))
    assert [f.id for f in first] == ["df_new1"]
    second = check_filters([rule, rule], first, new_id=lambda: next(made))
    assert [f.id for f in second] == ["df_new1", "df_new2"]


def test_disabled_filters_and_no_filters() -> None:
    [off] = check_filters([{"if": "all", "actions": [{"type": "DROP"}], "enabled": False}])
    assert compile_filters([off]) is None
    assert compile_filters([]) is None


def test_fail_closed_on_evaluation_errors_and_broken_stored_filters() -> None:
    assert (
        run(
            [{"if": "length(properties) > 1", "actions": [{"type": "DROP"}]}],
            {"properties": {"a": 1}},
        )
        == "INTERNAL:df_0"
    )
    broken = DestinationFilter.model_construct(
        id="df_x", if_='userId = oops"', actions=[], enabled=True
    )
    apply = compile_filters([broken])
    assert apply is not None and apply({"userId": "u1"}) == "INTERNAL:df_x"  # AC-056


# The use cases of Segment's destination filters page (§9.7).


def test_pii_removed_from_context_and_properties() -> None:
    event = {
        "properties": {"email": "a@b.c", "plan": "pro"},
        "context": {"email": "a@b.c", "ip": "1.2.3.4"},
    }
    sent = run(
        [
            {
                "if": "all",
                "actions": [
                    {
                        "type": "DROP_PROPERTIES",
                        "fields": {"properties": ["email"], "context": ["email"]},
                    }
                ],
            }
        ],
        event,
    )
    assert sent == {"properties": {"plan": "pro"}, "context": {"ip": "1.2.3.4"}}


def test_only_some_events_are_sent() -> None:
    rule = {"if": "!(event in ['User Signed Up', 'Demo Requested'])", "actions": [{"type": "DROP"}]}
    assert isinstance(run([rule], {"type": "track", "event": "Page Scrolled"}), str)
    assert run([rule], {"type": "track", "event": "Demo Requested"}) == {
        "type": "track",
        "event": "Demo Requested",
    }


def test_only_track_calls() -> None:
    rule = {"if": "type != 'track'", "actions": [{"type": "DROP"}]}
    assert isinstance(run([rule], {"type": "page"}), str)
    assert not isinstance(run([rule], {"type": "track"}), str)


def test_internal_test_orders_dropped() -> None:
    rule = {
        "if": "event = 'Order Completed' and contains(properties.email, '@segment.com')",
        "actions": [{"type": "DROP"}],
    }
    assert isinstance(
        run([rule], {"event": "Order Completed", "properties": {"email": "qa@segment.com"}}), str
    )
    assert not isinstance(
        run([rule], {"event": "Order Completed", "properties": {"email": "jo@example.com"}}), str
    )


def test_heartbeats_sampled() -> None:
    rule = {
        "if": "event = 'Video Content Playing'",
        "actions": [{"type": "SAMPLE", "percent": 0.1}],
    }
    beats = [
        run([rule], {"event": "Video Content Playing", "n": n}, random.Random(n))
        for n in range(2_000)
    ]
    assert 120 <= sum(not isinstance(b, str) for b in beats) <= 280
    assert not isinstance(run([rule], {"event": "Video Playback Started"}), str)


def test_classic_to_actions_cut_over() -> None:
    classic = {"if": "(received_at >= '2023-04-21T19:55:00.933Z')", "actions": [{"type": "DROP"}]}
    actions = {"if": "(received_at < '2023-04-21T19:55:00.933Z')", "actions": [{"type": "DROP"}]}
    before = {"receivedAt": "2023-04-21T19:00:00.000Z"}
    after = {"receivedAt": "2023-04-21T20:00:00.000Z"}
    assert not isinstance(run([classic], before), str) and isinstance(run([classic], after), str)
    assert isinstance(run([actions], before), str) and not isinstance(run([actions], after), str)
