"""Audiences and computed traits as stored and served (``engage/computations.py`` and
``/api/v1/spaces/{space}/audiences|computed-traits``) on SQLite and PostgreSQL: keys (A-UE-37),
cycles (A-UE-43), deletion (A-UE-45), what cannot be edited, destinations on the Engage source only,
and every refusal a 4xx that names the problem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.engage.computations import ComputationStore, Planned, computation_key
from headwater.errors import ConflictError, DefinitionError, InvalidError
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.unify.profiles import ProfileData
from headwater.unify.spaces import SpaceStore

TOKEN = "test-admin-token"
ORDERS = "event('Order Completed').within(30 days).count() >= 1"


@pytest.fixture
def store(engine: Engine) -> ComputationStore:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    workspace.create_source("web")
    SpaceStore(workspace).create("main", sources=["web"])
    return ComputationStore(workspace)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        assert (
            http.post("/api/v1/spaces", json={"name": "main", "sourceIds": ["web"]}).status_code
            == 201
        )
        for name, source in (("engage-hook", "main-engage"), ("web-hook", "web")):
            made = http.post(
                "/api/v1/destinations",
                json={
                    "name": name,
                    "source": source,
                    "type": "webhook",
                    "settings": {"url": "https://example.com/hook"},
                },
            )
            assert made.status_code == 201, made.text
        yield http


def test_a37_keys_are_snake_cased_names() -> None:
    assert computation_key("Order Completed Last 30days") == "order_completed_last_30days"
    assert computation_key("  Total Revenue (180 Days)! ") == "total_revenue_180_days"
    with pytest.raises(InvalidError):
        computation_key("!!!")


def test_a_key_is_kept_by_a_rename_and_never_given_again(store: ComputationStore) -> None:
    made = store.create("main", "audience", "Order Completed Last 30days", ORDERS)
    assert (made.key, made.mode, made.status) == (
        "order_completed_last_30days",
        "realtime",
        "Preparing",
    )
    renamed = store.update("main", made.id, name="Recent buyers")
    assert (renamed.name, renamed.key) == ("Recent buyers", made.key)
    store.delete("main", made.key)
    with pytest.raises(ConflictError, match="never reused"):
        store.create("main", "trait", "order completed last 30days", "event('x').count()")


def test_a43_a_cycle_through_keys_is_refused(store: ComputationStore) -> None:
    store.create("main", "audience", "Y", "event('a').count() >= 1")
    store.create("main", "audience", "X", "trait('y') = true")
    with pytest.raises(InvalidError, match="The audience would create a cycle"):
        store.update("main", "y", definition="trait('x') = true AND event('a').count() >= 1")
    with pytest.raises(InvalidError, match="cycle"):
        store.create("main", "audience", "Z", "trait('z') = true")
    with pytest.raises(ConflictError, match="'X' reads 'y'"):
        store.delete("main", "y")


def test_realtime_and_batch_follow_the_definition_and_an_edit_cannot_switch(
    store: ComputationStore,
) -> None:
    funnel = (
        "event('Cart Viewed').where(NOT event('Order Completed').within(parent: 1 days)"
        ".count() >= 1).within(30 days).count() >= 1"
    )
    batch = store.create("main", "audience", "Abandoned carts", funnel)
    assert (batch.mode, batch.status) == ("batch", "Preparing")
    live = store.create("main", "audience", "Buyers", ORDERS)
    with pytest.raises(InvalidError, match="real-time and batch"):
        store.update("main", live.id, definition=funnel)
    with pytest.raises(InvalidError, match="anonymous"):
        store.update("main", live.id, include_anonymous=True)


def test_bad_definitions_are_refused_with_their_position(store: ComputationStore) -> None:
    with pytest.raises(DefinitionError) as refused:
        store.create("main", "audience", "A", "event('x').cnt() >= 1")
    assert refused.value.position == 11
    with pytest.raises(DefinitionError, match="comparison"):
        store.create("main", "audience", "B", "event('x').count()")
    assert store.list("main") == []


def test_the_builder_shape_is_stored_as_query_language(store: ComputationStore) -> None:
    made = store.create(
        "main",
        "trait",
        "Orders",
        {"type": "counter", "event": "Order Completed", "window": {"type": "within", "days": 30}},
    )
    assert made.definition == "event('Order Completed').within(30 days).count()"


def test_a45_a_deleted_computation_leaves_its_value_as_a_custom_trait(
    store: ComputationStore, engine: Engine
) -> None:
    made = store.create("main", "audience", "Buyers", ORDERS)
    space = SpaceStore(WorkspaceStore(engine)).require("main")
    data = ProfileData(engine, space.id)
    with engine.begin() as conn:
        data.set_computed(conn, [("use_1", "audience", "buyers", True)], "src", 1.0e9)
    store.delete("main", made.id)
    trait = data.traits("use_1")["buyers"]
    assert (trait.value, set(data.traits("use_1", trait_class="custom"))) == (True, {"buyers"})


def test_the_engine_sees_computations_and_their_destinations(
    client: TestClient, engine: Engine
) -> None:
    made = client.post(
        "/api/v1/spaces/main/audiences",
        json={
            "name": "Buyers",
            "definition": {"query": ORDERS},
            "destinations": [{"name": "engage-hook", "sendTrack": True}],
        },
    )
    assert made.status_code == 201, made.text
    audience = made.json()["data"]["audience"]
    planned = Planned(WorkspaceStore(engine), interval=0.0)
    [computation] = planned.computations(audience["spaceId"])
    assert (computation.key, computation.kind) == ("buyers", "audience")
    [connection] = planned.connections(audience["id"])
    assert (connection.destination, connection.send_identify, connection.send_track) == (
        "engage-hook",
        True,
        True,
    )


def test_the_api_crud(client: TestClient) -> None:
    base = "/api/v1/spaces/main/computed-traits"
    made = client.post(
        base,
        json={
            "name": "Total Revenue 180 Days",
            "definition": {
                "query": "event('Order Completed').within(180 days).sum(property('revenue'))"
            },
        },
    )
    assert made.status_code == 201, made.text
    trait = made.json()["data"]["computedTrait"]
    assert trait["key"] == "total_revenue_180_days"
    assert trait["definition"] == {
        "query": "event('Order Completed').within(180 days).sum(property('revenue'))",
        "type": "USERS",
    }
    assert (
        client.get(f"{base}/total_revenue_180_days").json()["data"]["computedTrait"]["id"]
        == trait["id"]
    )
    patched = client.patch(f"{base}/{trait['id']}", json={"description": "money"})
    assert patched.json()["data"]["computedTrait"]["description"] == "money"
    assert [t["key"] for t in client.get(base).json()["data"]["computedTraits"]] == [trait["key"]]
    assert client.get("/api/v1/spaces/main/audiences").json()["data"]["audiences"] == []
    assert client.delete(f"{base}/{trait['id']}").status_code == 200
    assert client.get(f"{base}/{trait['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "A", "definition": {"query": "event('x').count() >= "}}, 422, "position"),
        ({"name": "A", "definition": {"query": "trait('a') = 1 OR"}}, 422, "position"),
        (
            {"name": "A", "definition": {"query": "event('x').within(0 days).count() >= 1"}},
            422,
            "window",
        ),
        ({"name": "A", "definition": {"query": "ANY event('x').count() >= 1"}}, 422, "ACCOUNTS"),
        ({"name": "A", "definition": {}}, 422, "query or builder"),
        (
            {
                "name": "A",
                "definition": {"builder": {"event": "x", "count": {"op": "bigger", "value": 1}}},
            },
            422,
            "bigger",
        ),
        (
            {"name": "A", "definition": {"query": ORDERS}, "destinations": [{"name": "web-hook"}]},
            422,
            "Engage source",
        ),
        (
            {"name": "A", "definition": {"query": ORDERS}, "destinations": [{"name": "nope"}]},
            404,
            "nope",
        ),
        ({"name": "", "definition": {"query": ORDERS}}, 422, "name"),
        ({"name": "A", "definition": {"query": 5}}, 422, "query"),
    ],
)
def test_the_api_refuses_bad_input_with_a_4xx(
    client: TestClient, body: dict[str, Any], status: int, words: str
) -> None:
    answer = client.post("/api/v1/spaces/main/audiences", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.text
    assert client.get("/api/v1/spaces/main/audiences").json()["data"]["audiences"] == []
