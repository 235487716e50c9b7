"""``/api/v1/spaces/{space}/sql-traits`` through FastAPI's TestClient, on real warehouses and
both state databases: CRUD, previews, runs on demand, history — and every refusal a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from headwater.api.app import create_api
from headwater.api.sql_traits import use_warehouse_queries
from headwater.store.admin_token import hash_token
from headwater.warehouse.store import WarehouseStore
from tests.support.ports import free_port
from tests.support.sql_traits import SqlTraitWorld

TOKEN = "test-admin-token"
TRAITS = "/api/v1/spaces/main/sql-traits"
QUERY = "select user_id, count(*) as tickets from tickets group by user_id order by user_id"


@pytest.fixture
def client(world: SqlTraitWorld) -> Iterator[TestClient]:
    world.warehouse.execute(
        "CREATE TABLE tickets (user_id VARCHAR(20), rating INTEGER)",
        "INSERT INTO tickets VALUES ('u1', 5), ('u1', 7), ('u2', 9)",
    )
    app = create_api(world.engine, admin_token_hash=hash_token(TOKEN), clock=world.clock)
    use_warehouse_queries(app, world.queries)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


def data(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()["data"]
    return found


def error(response: Any, status: int, text: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    [first] = response.json()["errors"]
    assert text in first["message"], first
    found: dict[str, Any] = first
    return found


def test_crud(client: TestClient, world: SqlTraitWorld) -> None:
    made = data(
        client.post(TRAITS, json={"name": "Ticket Counts", "warehouse": "dw", "query": QUERY}),
        201,
    )["sqlTrait"]
    assert made["id"].startswith("tra_")
    assert {k: made[k] for k in ("key", "name", "warehouseId", "level", "schedule", "status")} == {
        "key": "ticket_counts",
        "name": "Ticket Counts",
        "warehouseId": world.warehouse.id,
        "level": "users",
        "schedule": {"everyHours": 12},
        "status": "pending",
    }
    assert made["nextRunAt"] == made["createdAt"]  # the initial sync is due at once
    assert data(client.get(f"{TRAITS}/{made['id']}"))["sqlTrait"] == made
    assert data(client.get(f"{TRAITS}/Ticket Counts"))["sqlTrait"] == made
    assert data(client.get(f"{TRAITS}/ticket_counts"))["sqlTrait"] == made
    by_id = f"/api/v1/spaces/{world.space_id}/sql-traits"
    assert [t["id"] for t in data(client.get(by_id))["sqlTraits"]] == [made["id"]]

    changed = data(
        client.patch(
            f"{TRAITS}/{made['id']}",
            json={"name": "Tickets", "schedule": {"everyHours": 1}, "key": "ticket_counts"},
        )
    )["sqlTrait"]
    assert (changed["name"], changed["key"], changed["schedule"]) == (
        "Tickets",
        "ticket_counts",  # the key stays
        {"everyHours": 1},
    )
    for field, value in (("key", "other"), ("level", "accounts"), ("warehouse", "other")):
        response = client.patch(f"{TRAITS}/Tickets", json={field: value})
        if field == "warehouse":
            error(response, 404, "no warehouse has the id or name 'other'")
        else:
            error(response, 422, f"a SQL trait's {field} cannot change")
    WarehouseStore(world.store).create("other", "duckdb")
    error(client.patch(f"{TRAITS}/Tickets", json={"warehouse": "other"}), 422, "cannot change")
    error(client.patch(f"{TRAITS}/Tickets", json={"query": None}), 422, "must not be null")

    assert data(client.delete(f"{TRAITS}/Tickets")) == {"status": "SUCCESS"}
    error(client.get(f"{TRAITS}/Tickets"), 404, "no SQL trait")
    assert data(client.get(TRAITS))["sqlTraits"] == []


def test_preview_run_now_and_history(client: TestClient, world: SqlTraitWorld) -> None:
    unsaved = data(client.post(f"{TRAITS}/preview", json={"warehouse": "dw", "query": QUERY}))[
        "preview"
    ]
    assert unsaved == {
        "identifier": "user_id",
        "traits": ["tickets"],
        "rows": [
            {"identifier": "u1", "known": False, "traits": {"tickets": 2}},
            {"identifier": "u2", "known": False, "traits": {"tickets": 1}},
        ],
    }
    made = data(
        client.post(
            TRAITS,
            json={"name": "Tickets", "warehouse": "dw", "query": QUERY, "schedule": {}},
        ),
        201,
    )["sqlTrait"]
    assert data(client.post(f"{TRAITS}/{made['id']}/preview"))["preview"] == unsaved
    assert world.outbox() == []  # a preview sends nothing

    runs = world.runs()
    runs.run_due()
    world.clock.advance(60)
    asked = data(client.post(f"{TRAITS}/Tickets/run"), 202)["sqlTrait"]
    assert asked["runRequestedAt"] is not None
    runs.run_due()
    history = data(client.get(f"{TRAITS}/Tickets/runs"))["runs"]
    assert [(r["trigger"], r["status"], r["rows"], r["changed"]) for r in history] == [
        ("manual", "success", 2, 0),
        ("schedule", "success", 2, 2),
    ]
    after = data(client.get(f"{TRAITS}/Tickets"))["sqlTrait"]
    assert (after["status"], after["error"], after["runRequestedAt"]) == ("success", None, None)


def test_refusals_are_4xx(client: TestClient, world: SqlTraitWorld) -> None:
    def create(**body: Any) -> Any:
        return client.post(TRAITS, json={"warehouse": "dw", "query": QUERY, **body})

    error(create(name="x", warehouse="nope"), 404, "no warehouse has the id or name 'nope'")
    WarehouseStore(world.store).create("lake", "data-lake", settings={"location": "lake"})
    error(create(name="x", warehouse="lake"), 422, "SQL traits query a DuckDB or PostgreSQL")
    error(create(name="x", level="groups"), 422, "level")
    error(create(name="x", schedule={"everyHours": 0}), 422, "everyHours")
    error(create(name="x", schedule={"everyHours": 169}), 422, "everyHours")
    error(create(name="x", key="user_id"), 422, "an identifier column's name")
    error(create(name="x", key="Not A Key"), 422, "lowercase letters")
    error(create(name="!!!"), 422, "'!!!' gives an empty key")
    error(create(name="x", query="  "), 422, "must not be empty")
    error(create(name="x\x00"), 422, "control characters")
    error(create(name="x", query="select 1\x00"), 422, "control characters")
    error(create(name="x", extra=1), 422, "extra")
    error(
        client.post("/api/v1/spaces/nowhere/sql-traits", json={"name": "x", "warehouse": "dw"}),
        422,
        "query",
    )
    error(
        client.post(
            "/api/v1/spaces/nowhere/sql-traits",
            json={"name": "x", "warehouse": "dw", "query": QUERY},
        ),
        404,
        "no space has the id or name 'nowhere'",
    )
    data(create(name="x"), 201)
    error(create(name="x"), 409, "another SQL trait of the space is named 'x'")
    error(create(name="X"), 409, "the key 'x'")
    for i in range(24):
        data(create(name=f"t{i}"), 201)
    error(create(name="one too many"), 409, "has 25 SQL traits")

    for query, text in (
        ("selec user_id", "syntax"),
        ("select user_id, 1 as n from nowhere_table", "nowhere_table"),
        ("select 'a' as user_id, 'b' as anonymous_id, 1 as n", "both user_id and anonymous_id"),
        ("select user_id from tickets", "at least one trait column"),
        ("select 'u' as user_id, 1 as n union all select 'u', 2", "duplicate user_id 'u'"),
    ):
        found = error(
            client.post(f"{TRAITS}/preview", json={"warehouse": "dw", "query": query}), 422, text
        )
        assert found["field"] == "query"
    error(
        client.post(f"{TRAITS}/preview", json={"warehouse": "dw", "query": "select 1\x00"}),
        422,
        "query: must be text without control characters",
    )
    error(client.post(f"{TRAITS}/nope/run"), 404, "no SQL trait")
    error(client.get(f"{TRAITS}/nope/runs"), 404, "no SQL trait")

    # A warehouse that cannot be reached: 503, the client's request was fine.
    warehouses = WarehouseStore(world.store)
    if world.warehouse.kind == "duckdb":
        writer = duckdb.connect(world.warehouse.target)  # a sync writing it, for too long
        try:
            error(client.post(f"{TRAITS}/x/preview"), 503, "the warehouse cannot be queried now")
        finally:
            writer.close()
        warehouses.update("dw", settings={"path": world.warehouse.target + ".missing"})
        error(client.post(f"{TRAITS}/x/preview"), 422, "the warehouse has no tables yet")
    else:
        current = dict(warehouses.require("dw").settings)
        warehouses.update("dw", settings={**current, "port": free_port()})
        error(client.post(f"{TRAITS}/x/preview"), 503, "the warehouse cannot be queried now")


def test_preview_needs_the_servers_warehouse_queries(world: SqlTraitWorld) -> None:
    app = create_api(world.engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        response = http.post(f"{TRAITS}/preview", json={"warehouse": "dw", "query": QUERY})
    error(response, 503, "cannot query warehouses")


def test_a_warehouse_a_sql_trait_queries_cannot_be_deleted(client: TestClient) -> None:
    made = data(
        client.post(TRAITS, json={"name": "Tickets", "warehouse": "dw", "query": QUERY}), 201
    )
    refused = error(client.delete("/api/v1/warehouses/dw"), 409, "main/tickets")
    assert "delete it first" in refused["message"]
    assert data(client.get("/api/v1/warehouses/dw"))["warehouse"]["name"] == "dw"
    client.delete(f"{TRAITS}/{made['sqlTrait']['id']}")  # a deleted trait does not count
    assert client.delete("/api/v1/warehouses/dw").status_code == 200
