"""Actions mappings end to end: triggers, one request per matching mapping, the mapping kit,
Webhooks (Actions) batching, and the rules on mappings (AC-070 … 078)."""

from __future__ import annotations

from typing import Any

import pytest

from headwater import reasons
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError, InvalidError
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver


def orders(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Orders",
        "enabled": True,
        "trigger": 'type = "track" and event = "Order Completed"',
        "action": "send",
        "fields": {
            "url": url,
            "method": "POST",
            "data": {
                "order": {"@path": "$.properties.order_id"},
                "email": {"@path": "$.context.traits.email"},
            },
        },
        **extra,
    }


def test_the_config_file_example_sends_mapped_orders(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    config = parse_config(
        read_yaml(f"""
workspace: test
sources: [{{name: web, write_key: WK_web}}]
destinations:
  - name: orders-hook
    type: webhook-actions
    source: web
    mappings:
      - name: Orders
        enabled: true
        trigger: 'type = "track" and event = "Order Completed"'
        action: send
        fields:
          url: "{receiver.url}/orders"
          method: POST
          data: {{order: {{"@path": "$.properties.order_id"}}, email: {{"@path": "$.context.traits.email"}}}}
""")
    )
    [cfg] = config.destinations or []
    destination = pipeline.add(cfg.name, cfg.type, mappings=cfg.mappings)
    order = track(properties={"order_id": "o-77"}, context={"traits": {"email": "jo@example.com"}})
    other = track(event="Product Viewed")
    pipeline.send(order, other)
    pipeline.deliver()
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/orders")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"order": "o-77", "email": "jo@example.com"}
    assert (
        pipeline.totals(destination)[(reasons.FILTERED_AT_DESTINATION, "NO_MATCHING_MAPPING")] == 1
    )


def test_ac070_one_request_per_matching_mapping(pipeline: Pipeline, receiver: Receiver) -> None:
    pipeline.add(
        "hook",
        "webhook-actions",
        mappings=[
            {
                "name": "A",
                "enabled": True,
                "trigger": 'event = "Button Clicked"',
                "action": "send",
                "fields": {"url": receiver.url + "/a", "data": {"event": {"@path": "$.event"}}},
            },
            {
                "name": "B",
                "enabled": True,
                "trigger": 'event = "Button Clicked" and context.traits != null',
                "action": "send",
                "fields": {
                    "url": receiver.url + "/b",
                    "data": {"username": {"@path": "$.context.traits.username"}},
                },
            },
        ],
    )
    pipeline.send(track(event="Button Clicked", context={"traits": {"username": "testing-123"}}))
    pipeline.deliver()
    assert sorted((r.path, r.body) for r in receiver.requests) == [
        ("/a", b'{"event":"Button Clicked"}'),
        ("/b", b'{"username":"testing-123"}'),
    ]


def test_a_mapping_that_fails_is_retried_alone(pipeline: Pipeline, receiver: Receiver) -> None:
    from tests.support.receiver import Answer

    pipeline.add(
        "hook",
        "webhook-actions",
        mappings=[orders(receiver.url + "/a", name="A"), orders(receiver.url + "/b", name="B")],
    )
    receiver.answer(Answer(status=503))  # the first request fails, the other succeeds
    pipeline.send(track(properties={"order_id": "o-1"}))
    pipeline.deliver()
    first = receiver.requests[0].path
    pipeline.clock.advance(10)
    pipeline.deliver()
    paths = [r.path for r in receiver.requests]
    assert len(paths) == 3 and paths[2] == first  # only the failed mapping's request again


def test_ac071_no_enabled_mapping_matches(pipeline: Pipeline, receiver: Receiver) -> None:
    hook = pipeline.add(
        "hook", "webhook-actions", mappings=[orders(receiver.url + "/orders", enabled=False)]
    )
    pipeline.send(track(properties={"order_id": "o-1"}))
    pipeline.deliver()
    assert receiver.requests == []
    assert pipeline.totals(hook) == {(reasons.FILTERED_AT_DESTINATION, "NO_MATCHING_MAPPING"): 1}


def test_ac072_new_mappings_start_disabled(pipeline: Pipeline, receiver: Receiver) -> None:
    mapping = orders(receiver.url + "/orders")
    del mapping["enabled"]
    hook = pipeline.add("hook", "webhook-actions", mappings=[mapping])
    assert hook.mappings[0].enabled is False


def test_ac077_at_most_50_mappings(pipeline: Pipeline, receiver: Receiver) -> None:
    pipeline.add("hook", "webhook-actions", mappings=[orders(receiver.url)] * 50)
    with pytest.raises(InvalidError, match="at most 50 mappings"):
        pipeline.store.update("hook", mappings=[orders(receiver.url)] * 51)


def test_ac078_destination_field_paths(pipeline: Pipeline, receiver: Receiver) -> None:
    pipeline.add(
        "hook",
        "webhook-actions",
        mappings=[
            {
                "name": "Users",
                "enabled": True,
                "trigger": 'type = "identify"',
                "action": "send",
                "fields": {
                    "url": receiver.url + "/users",
                    "data": {
                        "info[0].email": {"@path": "$.traits.email"},
                        '"user.email"': {"@path": "$.traits.email"},
                    },
                },
            }
        ],
    )
    pipeline.send(track(type="identify", traits={"email": "jo@example.com"}))
    pipeline.deliver()
    assert receiver.requests[0].json() == {
        "info": [{"email": "jo@example.com"}],
        "user.email": "jo@example.com",
    }


def test_send_batch_groups_events(pipeline: Pipeline, receiver: Receiver) -> None:
    pipeline.add(
        "hook",
        "webhook-actions",
        mappings=[
            {
                "name": "Batch",
                "enabled": True,
                "trigger": 'type = "track"',
                "action": "send-batch",
                "fields": {
                    "url": receiver.url + "/batch",
                    "batch_size": 1000,
                    "data": {"id": {"@path": "$.messageId"}},
                },
            }
        ],
    )
    events = [track() for _ in range(2500)]
    pipeline.send(*events)
    pipeline.deliver()
    sizes = [len(r.json()) for r in receiver.requests]
    assert sorted(sizes) == [500, 1000, 1000]
    assert sorted(i["id"] for r in receiver.requests for i in r.json()) == sorted(
        e["messageId"] for e in events
    )


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"trigger": 'event = "x" and (a = 1 and (b = 2))'}, "mappings.0.trigger"),
        ({"action": "explode"}, "mappings.0.action"),
        ({"fields": {"url": "http://x", "nosuch": 1}}, "mappings.0.fields"),
        ({"fields": {"data": {"a": 1}}}, "mappings.0.fields"),  # url is required
        ({"fields": {"url": {"@nosuch": 1}}}, "mappings.0.fields"),
    ],
)
def test_bad_mappings_are_refused_with_their_place(
    pipeline: Pipeline, mapping: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidError) as raised:
        pipeline.add("hook", "webhook-actions", mappings=[{**orders("http://x"), **mapping}])
    assert raised.value.field == field


def test_only_actions_destinations_take_mappings(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidError, match="not an Actions destination"):
        pipeline.add("hook", settings={"url": "http://x"}, mappings=[orders("http://x")])
    with pytest.raises(ConfigError, match="not an Actions destination"):
        parse_config(
            read_yaml("""
sources: [{name: web}]
destinations: [{name: h, type: webhook, source: web, settings: {url: "http://x"},
                mappings: [{name: a, trigger: 'type = "track"', action: send}]}]
""")
        )
