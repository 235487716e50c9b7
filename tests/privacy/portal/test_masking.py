"""Masking for readers without PII Access (§9.5, §9.8, A-PR-6): the debugger, Event Delivery
samples and the Profile API mask Red and Yellow values; Green stays readable, and a field
reclassified Yellow → Green stays masked."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.api.privacy import masked_delivery, use_masker
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.inventory import Inventory
from headwater.privacy.masking import MASK, Masker, load_masker
from headwater.privacy.matchers import Matchers
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.unify.profile_api import ProfileAPI
from headwater.unify.spaces import SpaceStore
from tests.support.profiles import ProfileSpace
from tests.support.unify import DAY, START

EVENT: dict[str, Any] = {
    "type": "identify",
    "userId": "u1",
    "traits": {"email": "a@b.c", "plan": "pro", "loyalty_id": "L-1"},
    "context": {"traits": {"email": "a@b.c"}, "library": {"version": "1.0"}},
    "properties": {"items": [{"ssn": "1", "sku": "x"}], "address": {"city": "Oslo"}},
}


def test_a_pr_6_the_masker(store: WorkspaceStore) -> None:
    masker = load_masker(store)
    masked = masker.event(EVENT)
    assert masked["traits"] == {"email": MASK, "plan": "pro", "loyalty_id": "L-1"}
    assert masked["context"] == {"traits": {"email": MASK}, "library": {"version": "1.0"}}
    assert masked["properties"] == {
        "items": [{"ssn": MASK, "sku": "x"}],
        "address": {"city": MASK},  # a restricted object keeps its shape
    }
    assert masked["userId"] == "u1" and EVENT["traits"]["email"] == "a@b.c"  # a copy

    # email reclassified Green stays masked; a field the user made Yellow is masked, and stays
    # masked once made Green again (§9.5).
    Inventory(store).classify("traits.email", "GREEN")
    Inventory(store).classify("traits.loyalty_id", "YELLOW")
    Inventory(store).classify("traits.loyalty_id", "GREEN")
    Inventory(store).classify("traits.plan", "GREEN")
    again = load_masker(store).event(EVENT)["traits"]
    assert again == {"email": MASK, "plan": "pro", "loyalty_id": MASK}

    # A custom value matcher masks by the value.
    CustomMatchers(store).create(
        {"name": "pro plan", "classification": "YELLOW", "matchOn": "VALUE", "pattern": "^pro$"}
    )
    assert load_masker(store).event(EVENT)["traits"]["plan"] == MASK


def test_a_pr_6_the_debugger_masks_for_a_reader_without_pii_access(
    engine: Engine, store: WorkspaceStore
) -> None:
    web = store.get_source("web")
    assert web is not None
    with engine.begin() as conn:
        conn.execute(
            schema.debugger_entries.insert().values(
                source_id=web.id,
                received_at="2026-12-07T10:00:00.000Z",
                status="accepted",
                entry={"message": EVENT},
            )
        )
    app = create_api(engine, admin_token_hash=hash_token("t"), extra_routers=[debugger_router])
    use_masker(app, lambda: load_masker(store))
    path = "/api/v1/sources/web/debugger"
    with TestClient(app, headers={"authorization": "Bearer t"}) as http:
        # The admin token has PII Access; no query parameter takes it away.
        (entry,) = http.get(path, params={"piiAccess": "false"}).json()["data"]["events"]
        assert entry["message"]["traits"]["email"] == "a@b.c"
        # A member's token that may read sources, without PII Access (§9.8).
        reader = {"roleId": "source-read-only", "resources": [{"type": "WORKSPACE"}]}
        made = http.post(
            "/api/v1/tokens",
            json={"description": "reader", "permissions": [reader], "piiAccess": False},
        )
        assert made.status_code == 201, made.text
        token = made.json()["data"]["token"]["token"]
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as http:
        for query in ({}, {"piiAccess": "true"}, {"pii_access": "1"}):  # none grants it
            (entry,) = http.get(path, params=query).json()["data"]["events"]
            assert entry["message"]["traits"]["email"] == MASK
            assert entry["message"]["traits"]["plan"] == "pro"
        lines = []
        with http.stream("GET", path + "/stream", params={"after": "0"}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    lines.append(msgspec.json.decode(line[6:]))
                    break
        assert lines[0]["message"]["traits"]["email"] == MASK


def test_event_delivery_samples_are_masked() -> None:
    data = {
        "delivered": 1,
        "errors": [
            {
                "code": "bad_request",
                "samples": [
                    {
                        "youSent": EVENT,
                        "requestToDestination": {
                            "url": "https://x",
                            "body": msgspec.json.encode({"email": "a@b.c", "n": 1}).decode(),
                        },
                        "responseFromDestination": {"status": 400, "body": "bad email a@b.c"},
                        "detail": None,
                    }
                ],
            }
        ],
    }
    (sample,) = masked_delivery(data, Masker(Matchers()))["errors"][0]["samples"]
    assert sample["youSent"]["traits"]["email"] == MASK
    assert msgspec.json.decode(msgspec.json.encode(sample["requestToDestination"]["body"])) == {
        "email": MASK,
        "n": 1,
    }
    assert sample["responseFromDestination"]["body"] == MASK  # not JSON: masked whole
    assert data["errors"][0]["samples"][0]["youSent"]["traits"]["email"] == "a@b.c"  # type: ignore[index]


@pytest.mark.parametrize("pii_access", [True, False])
def test_a_pr_6_profile_api_tokens_without_pii_access_see_masked_values(
    engine: Engine, pii_access: bool
) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    spaces = SpaceStore(workspace)
    space_id = spaces.create("main").id
    token = "profile-token-0123456789"
    spaces.create_access_token("main", "site", token, pii_access=pii_access)
    assert spaces.access_tokens("main")[0].pii_access is pii_access
    data = ProfileSpace(engine, space_id, now=START + DAY)
    data.send("identify", userId="u1", traits={"email": "a@b.c", "plan": "pro"})
    data.send("track", userId="u1", event="Signed Up", properties={"email": "a@b.c", "n": 1})
    app = ProfileAPI(
        spaces,
        engine,
        lambda space: data.graph,
        wall_clock=lambda: data.now,
        masker=lambda: load_masker(workspace),
    )

    async def get(rest: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            url = f"/v1/spaces/{space_id}/collections/users/profiles/user_id:u1/{rest}"
            return await http.get(url, auth=(token, ""), params={"piiAccess": "true"})

    traits = asyncio.run(get("traits")).json()["traits"]
    events = asyncio.run(get("events")).json()["data"]
    email = "a@b.c" if pii_access else MASK
    assert traits == {"email": email, "plan": "pro"}
    assert events[0]["properties"] == {"email": email, "n": 1}


def test_existing_profile_api_tokens_keep_pii_access(engine: Engine) -> None:
    """Tokens made before the Portal (the column's default) have PII Access."""
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    spaces = SpaceStore(workspace)
    space = spaces.create("main")
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.space_access_tokens).values(
                space_id=space.id,
                name="old",
                token_sha256=hash_token("old-token-0123456789"),
                created_at=0,
            )
        )
    found = spaces.authorize("main", "old-token-0123456789")
    assert found is not None and found[1] is True


def test_the_upgrade_gives_existing_tokens_pii_access(engine: Engine) -> None:
    """A database from before the Portal (no ``pii_access`` column) upgraded by migration 30:
    its tokens keep seeing values unmasked."""
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    spaces = SpaceStore(workspace)
    spaces.create("main")
    spaces.create_access_token("main", "old", "old-token-0123456789")
    migrations = schema.schema_migrations
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE space_access_tokens DROP COLUMN pii_access"))
        conn.execute(migrations.delete().where(migrations.c.version == 30))
    assert migrate(engine) == [30]
    found = spaces.authorize("main", "old-token-0123456789")
    assert found is not None and found[1] is True
