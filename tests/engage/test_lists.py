"""List destinations' rules and their external audiences, in process: audiences only, audience
settings only for a list destination, the audience created once through Segment's own
``createAudience`` (``actions:iterable-lists`` run by the actions runtime against a loopback
Iterable), its id kept across edits and carried by the engine's connections, a failure kept
on the connection and not tried again before its time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.redirects import Redirects
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.engage.computations import ComputationStore, Planned
from headwater.engage.lists import ListAudiences
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.receiver import Answer, Receiver

TOKEN = "test-admin-token"
ORDERS = "event('Order Completed').within(30 days).count() >= 1"


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        made = http.post("/api/v1/spaces", json={"name": "main", "sourceIds": ["web"]})
        assert made.status_code == 201, made.text
        for name, kind, settings in (
            ("iterable", "actions:iterable-lists", {"apiKey": "key-1"}),
            ("hook", "webhook", {"url": "https://example.com/hook"}),
        ):
            made = http.post(
                "/api/v1/destinations",
                json={"name": name, "source": "main-engage", "type": kind, "settings": settings},
            )
            assert made.status_code == 201, made.text
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


def test_a_list_destination_takes_audiences_only(client: TestClient) -> None:
    trait = client.post(
        "/api/v1/spaces/main/computed-traits",
        json={
            "name": "Orders",
            "definition": {"query": "event('Order Completed').within(30 days).count()"},
            "destinations": [{"name": "iterable"}],
        },
    )
    assert trait.status_code == 422, trait.text
    assert "list destination (actions:iterable-lists)" in trait.text
    assert "audiences only" in trait.text
    settings = client.post(
        "/api/v1/spaces/main/audiences",
        json={
            "name": "Buyers",
            "definition": {"query": ORDERS},
            "destinations": [{"name": "hook", "audienceSettings": {"listId": 1}}],
        },
    )
    assert settings.status_code == 422, settings.text
    assert "not a list destination" in settings.text
    bad = client.post(
        "/api/v1/spaces/main/audiences",
        json={
            "name": "Buyers",
            "definition": {"query": ORDERS},
            "destinations": [{"name": "iterable", "audienceSettings": "yes"}],
        },
    )
    assert bad.status_code == 422, bad.text
    made = client.post(
        "/api/v1/spaces/main/audiences",
        json={
            "name": "Buyers",
            "definition": {"query": ORDERS},
            "destinations": [{"name": "iterable"}],
        },
    )
    assert made.status_code == 201, made.text
    [connection] = made.json()["data"]["audience"]["destinations"]
    # no delivery engine in this app: the worker creates it
    assert (connection["audienceStatus"], connection["externalAudienceId"]) == ("pending", None)


def test_the_audience_is_created_once_and_kept_across_edits(
    client: TestClient, engine: Engine, receiver: Receiver, tmp_path: Path, actions_dir: Path
) -> None:
    made = client.post(
        "/api/v1/spaces/main/audiences",
        json={
            "name": "Buyers",
            "definition": {"query": ORDERS},
            "destinations": [
                {"name": "iterable", "audienceSettings": {"updateExistingUsersOnly": True}},
                {"name": "hook"},
            ],
        },
    )
    assert made.status_code == 201, made.text
    audience = made.json()["data"]["audience"]
    clock = Clock(1_800_000_000)
    workspace = WorkspaceStore(engine, clock=clock)
    lists = ListAudiences(workspace)
    delivery = DeliveryEngine(
        engine,
        DestinationCache(DestinationStore(workspace), workspace),
        redirects=Redirects({"https://api.iterable.com": receiver.url}),
        actions_dir=actions_dir,
    )

    async def create() -> list[str]:
        return [f.message for f in await lists.create(delivery.audience_hook)]

    async def scenario() -> None:
        # Iterable fails: kept on the connection, not tried again before its time.
        receiver.default = Answer(status=401, body=b'{"msg": "Invalid API key"}')
        [failure] = await create()
        assert "createAudience failed at 'iterable'" in failure and "HTTP 401" in failure
        tried = len(receiver.requests)
        assert await create() == []
        assert len(receiver.requests) == tried
        [stored] = ComputationStore(workspace).get("main", audience["id"]).external_audiences
        assert (stored.external_id, stored.error) == (None, failure)

        # Its time comes and Iterable answers: found by key, else created.
        receiver.default = Answer()
        receiver.answer(
            Answer(body=json.dumps({"lists": [{"id": 3, "name": "other"}]}).encode()),
            Answer(body=b'{"listId": 4242}'),
        )
        clock.advance(61)
        before = len(receiver.requests)
        assert await create() == []
        got = receiver.requests[before:]
        assert [(r.method, r.path) for r in got] == [("GET", "/api/lists"), ("POST", "/api/lists")]
        assert got[1].json() == {"name": "buyers"}
        assert {r.headers["api-key"] for r in got} == {"key-1"}
        assert await create() == []  # once
        assert len(receiver.requests) == before + 2
        await delivery.close()

    asyncio.run(scenario())

    def connection() -> tuple[str | None, object]:
        [found] = [
            c
            for c in Planned(WorkspaceStore(engine), interval=0.0).connections(audience["id"])
            if c.destination == "iterable"
        ]
        assert found.list_audience
        return found.external_audience_id, found.audience_settings

    assert connection() == ("4242", {"updateExistingUsersOnly": True})
    # An edit of its settings (and of another connection) keeps the list.
    edited = client.patch(
        f"/api/v1/spaces/main/audiences/{audience['id']}",
        json={"destinations": [{"name": "iterable", "audienceSettings": {"campaignId": 7}}]},
    )
    assert edited.status_code == 200, edited.text
    [shown] = edited.json()["data"]["audience"]["destinations"]
    assert (shown["externalAudienceId"], shown["audienceStatus"]) == ("4242", "created")
    assert connection() == ("4242", {"campaignId": 7})
    # Disconnected and connected again: a new list.
    client.patch(f"/api/v1/spaces/main/audiences/{audience['id']}", json={"destinations": []})
    again = client.patch(
        f"/api/v1/spaces/main/audiences/{audience['id']}",
        json={"destinations": [{"name": "iterable"}]},
    )
    [shown] = again.json()["data"]["audience"]["destinations"]
    assert (shown["externalAudienceId"], shown["audienceStatus"]) == (None, "pending")
