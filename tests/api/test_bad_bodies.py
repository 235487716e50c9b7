"""Whatever a client sends to the filter, mapping and warehouse routes, the answer is a clear
4xx, never a 500; and each hostile-input finding of issue 10 gets its clear error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error
from tests.support.hostile import deep_object

ODD: list[Any] = [
    None,
    1,
    "x",
    [],
    {},
    {"if": None},
    {"if": 5, "actions": "DROP"},
    {"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"": "userId"}}]},
    {"if": "all", "actions": [{"type": "SAMPLE", "percent": "half", "path": 3}]},
    {"if": "x" * 6000, "actions": [{"type": "DROP"}]},
    {"name": "m", "trigger": 'type = "track"', "action": "send", "fields": {"url": []}},
    {"name": "m", "trigger": "(((", "action": "send", "fields": {}},
    {
        "name": "m",
        "trigger": 'type = "track"',
        "action": "send",
        "fields": {"url": {"@template": 5}, "data": {"@arrayPath": [1, 2, 3]}},
    },
    {"name": "w", "type": "postgres", "settings": {"port": "many"}},
    {"name": "w", "type": "duckdb", "options": {"sources": [1], "selective_sync": {"x": 1}}},
    {"name": "w", "type": "duckdb", "options": {"schema_names": {"nope": "a"}}},
    {"filter": {"if": "all"}, "payload": []},
    {
        "filter": {"if": "length(properties) > 0", "actions": [{"type": "DROP"}]},
        "payload": {"properties": {"a": 1}},
    },
]
ROUTES = [
    ("POST", "/api/v1/destinations/hook/filters"),
    ("PATCH", "/api/v1/destinations/hook/filters/df_missing"),
    ("POST", "/api/v1/filters/preview"),
    ("POST", "/api/v1/destinations/actions/mappings"),
    ("POST", "/api/v1/destinations/hook/mappings"),
    ("POST", "/api/v1/destinations/actions/mappings/import"),
    ("POST", "/api/v1/destinations/hook/mappings/import"),
    ("POST", "/api/v1/warehouses"),
    ("PATCH", "/api/v1/warehouses/missing"),
    ("POST", "/api/v1/warehouses/missing/syncs"),
]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}}
    ) as http:
        assert (
            http.post(
                "/api/v1/destinations",
                json={"name": "actions", "type": "webhook-actions", "source": "web"},
            ).status_code
            == 201
        )
        yield http


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_odd_bodies_get_a_4xx(client: TestClient, method: str, path: str) -> None:
    for body in ODD:
        response = client.request(method, path, json=body)
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code >= 400:
            assert response.json()["errors"][0]["message"], (path, body)
    raw = client.request(
        method, path, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= raw.status_code < 500


# --- the findings of issue 10, one by one ----------------------------------------------------


def _json(client: TestClient, method: str, path: str, text: str) -> Any:
    return client.request(
        method, path, content=text.encode(), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/sources", '{"name": "\\ud800"}'),
        ("PATCH", "/api/v1/sources/web", '{"name": "a\\udc00"}'),
        (
            "POST",
            "/api/v1/destinations",
            '{"name": "\\ud800", "type": "webhook", "source": "web", "settings": {"url": "http://x/"}}',
        ),
        ("PATCH", "/api/v1/destinations/hook", '{"name": "\\ud800"}'),
        ("POST", "/api/v1/warehouses", '{"name": "\\ud800", "type": "duckdb"}'),
    ],
)
def test_lone_surrogate_in_a_name_is_a_422_on_name(
    client: TestClient, method: str, path: str, body: str
) -> None:
    assert_error(_json(client, method, path, body), 422, "validation", "name")
    response = _json(client, method, path, body)
    assert "Unicode" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PATCH", "/api/v1/sources/web", '{"settings": {"\\ud800": 1}}', "settings"),
        (
            "PATCH",
            "/api/v1/destinations/hook",
            '{"settings": {"url": "http://x/\\ud800"}}',
            "settings",
        ),
        (
            "POST",
            "/api/v1/warehouses",
            '{"name": "w", "type": "duckdb", "options": {"a": ["\\udfff"]}}',
            "options",
        ),
        (
            "POST",
            "/api/v1/filters/preview",
            '{"filter": {"if": "all", "actions": []}, "payload": {"a": "\\ud800"}}',
            "payload",
        ),
    ],
)
def test_lone_surrogate_in_a_value_is_a_422_on_its_field(
    client: TestClient, method: str, path: str, body: str, field: str
) -> None:
    assert_error(_json(client, method, path, body), 422, "validation", field)


def test_ids_past_64_bits_are_a_4xx(client: TestClient) -> None:
    assert (
        client.post("/api/v1/warehouses", json={"name": "wh", "type": "duckdb"}).status_code == 201
    )
    for sync_id in ("9223372036854775808", "-9223372036854775809", "1" + "0" * 400):
        assert_error(
            client.get(f"/api/v1/warehouses/wh/syncs/{sync_id}"), 422, "validation", "syncId"
        )
    assert_error(client.get("/api/v1/warehouses/wh/syncs/9223372036854775807"), 404, "not_found")
    for after in ("9223372036854775808", "1" + "0" * 5000):
        assert_error(
            client.get(f"/api/v1/sources/web/debugger/stream?after={after}"),
            400,
            "validation",
            "after",
        )
        assert_error(
            client.get("/api/v1/sources/web/debugger/stream", headers={"Last-Event-ID": after}),
            400,
            "validation",
            "after",
        )


def test_settings_nest_at_most_32_levels(client: TestClient) -> None:
    for depth, status in ((32, 200), (33, 422), (500, 422), (2000, 400)):
        response = _json(
            client, "PATCH", "/api/v1/sources/web", f'{{"settings": {deep_object(depth)}}}'
        )
        assert response.status_code == status, (depth, response.text[:300])
        if status == 422:
            assert "32 levels" in response.json()["errors"][0]["message"]


def test_a_gap_in_the_checks_is_a_400_not_a_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a client's values make Python raise past every check is still the client's 400."""
    from headwater.store.workspace import WorkspaceStore

    for error in (
        RecursionError("deep"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x"),
        OverflowError("int too large"),
    ):

        def failing(*_args: Any, error: Exception = error, **_kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(WorkspaceStore, "get_source", failing)
        assert_error(client.get("/api/v1/sources/web"), 400, "bad_request")
        monkeypatch.undo()
    assert client.get("/api/v1/sources/web").status_code == 200
