"""Hostile patterns and nesting through the REST API: a quick answer or a 4xx, never a freeze
or a 500 (issue 10: a ``match()`` glob froze the server, deep FQL and mappings answered 500)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater import fql
from headwater.destinations.mapping import MAX_DEPTH
from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error
from tests.support.limits import timed

MAPPINGS = "/api/v1/destinations/orders-hook/mappings"
FILTERS = "/api/v1/destinations/orders-hook/filters"
ORDERS: dict[str, Any] = {
    "name": "Orders",
    "trigger": 'type = "track"',
    "action": "send",
    "fields": {"url": "http://127.0.0.1:9/orders"},
}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(engine, {"name": "orders-hook", "type": "webhook-actions"}) as http:
        yield http


def preview(client: TestClient, statement: str, payload: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/filters/preview",
        json={"filter": {"if": statement, "actions": [{"type": "DROP"}]}, "payload": payload},
    )


@pytest.mark.parametrize("size", [6_000, 100_000])
def test_the_glob_that_froze_the_server_answers_at_once(client: TestClient, size: int) -> None:
    statement = "match(properties.path, '*/*/*/checkout')"
    for path, dropped in (
        ("/" * size, False),
        ("/" * size + "checkout", True),
        ("a/" * (size // 2) + "checkou", False),
    ):
        response, seconds = timed(
            partial(preview, client, statement, {"type": "track", "properties": {"path": path}})
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["dropped"] is dropped
        assert seconds < 2, f"{seconds:.1f} s for a {size}-character path"


def test_a_destination_filter_with_that_glob_saves_and_previews(client: TestClient) -> None:
    statement = "match(properties.path, '*a*a*a*a*b')"
    body = {"title": "checkout", "if": statement, "actions": [{"type": "DROP"}]}
    assert client.post(FILTERS, json=body).status_code == 201
    response, seconds = timed(
        partial(preview, client, statement, {"properties": {"path": "a" * 50_000}})
    )
    assert response.json()["data"]["dropped"] is False and seconds < 2


@pytest.mark.parametrize(
    "statement",
    [
        "!" * 1000 + "true",
        "(" * 2000 + "true" + ")" * 2000,
        "[" * 2000 + "]" * 2000 + " = []",
        "lowercase(" * 300 + "event" + ")" * 300 + " = 'x'",
    ],
)
def test_deep_fql_is_a_clear_422(client: TestClient, statement: str) -> None:
    for response, field in (
        (preview(client, statement, {}), "filter.if"),
        (
            client.post(FILTERS, json={"if": statement, "actions": [{"type": "DROP"}]}),
            "filters.0.if",
        ),
    ):
        assert_error(response, 422, "validation", field)
        message = response.json()["errors"][0]["message"]
        assert f"deeper than {fql.MAX_DEPTH} levels" in message and "at position" in message
    assert client.get(FILTERS).json()["data"]["filters"] == []


def nested(levels: int, wrap: Any, leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = wrap(value)
    return value


@pytest.mark.parametrize(
    "data",
    [
        nested(MAX_DEPTH + 1, lambda v: {"k": v}, 1),
        {"x": nested(MAX_DEPTH, lambda v: [v], 1)},
        {
            "x": nested(
                MAX_DEPTH // 2, lambda v: {"@if": {"exists": v, "then": 1}}, {"@path": "$.event"}
            )
        },
        {"x": nested(MAX_DEPTH, lambda v: {"@template": v}, "{{event}}")},
        {"x": nested(MAX_DEPTH, lambda v: {"@path": v}, "$.event")},
        {"x": nested(MAX_DEPTH // 2, lambda v: {"@arrayPath": ["$.list", v]}, {"a": 1})},
        {".".join(["a"] * 2000): 1},
    ],
    ids=["objects", "arrays", "@if", "@template", "@path", "@arrayPath", "field path"],
)
def test_deep_mappings_are_a_clear_422(client: TestClient, data: Any) -> None:
    mapping = {**ORDERS, "fields": {**ORDERS["fields"], "data": data}}
    response = client.post(MAPPINGS, json=mapping)
    assert_error(response, 422, "validation", "mappings.0.fields")
    assert str(MAX_DEPTH) in response.json()["errors"][0]["message"]
    mapping_id = client.post(MAPPINGS, json=ORDERS).json()["data"]["mapping"]["id"]
    assert_error(
        client.patch(f"{MAPPINGS}/{mapping_id}", json={"fields": mapping["fields"]}),
        422,
        "validation",
    )
    assert [m["fields"] for m in client.get(MAPPINGS).json()["data"]["mappings"]] == [
        ORDERS["fields"]
    ]


def test_thirty_nested_ifs_save_at_once(client: TestClient) -> None:
    """Validation walked each @if twice per level: 2^30 steps for this small mapping."""
    data = {"x": nested(30, lambda v: {"@if": {"exists": {"@path": "$.event"}, "then": v}}, "deep")}
    response, seconds = timed(
        lambda: client.post(MAPPINGS, json={**ORDERS, "fields": {**ORDERS["fields"], "data": data}})
    )
    assert response.status_code == 201, response.text
    assert seconds < 2


def test_triggers_with_2000_parentheses_or_3000_conditions(client: TestClient) -> None:
    deep = "(" * 2000 + 'type = "track"' + ")" * 2000
    response = client.post(MAPPINGS, json={**ORDERS, "trigger": deep})
    assert_error(response, 422, "validation", "mappings.0.trigger")
    assert "cannot nest" in response.json()["errors"][0]["message"]
    long = " and ".join(['type = "track"'] * 3000)
    assert client.post(MAPPINGS, json={**ORDERS, "trigger": long}).status_code == 201
