"""§11: a space's deletion starts five calendar days later and can be cancelled until then."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.unify.space_deletion import GRACE_SECONDS, SpaceDeletions
from tests.api.test_sources_api import assert_error
from tests.api.test_spaces_api import SPACES, TOKEN, space_of
from tests.support.clock import Clock


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        yield http


def run(engine: Engine, clock: Clock) -> int:
    return SpaceDeletions(WorkspaceStore(engine), clock=clock).run_due()


def engage_source(engine: Engine, space_id: str) -> str | None:
    es = schema.engage_sources
    with engine.connect() as conn:
        found: str | None = conn.execute(
            sa.select(es.c.source_id).where(es.c.space_id == space_id)
        ).scalar_one_or_none()
    return found


def test_cancelled_within_five_days_the_space_stays(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    space = space_of(client.post(SPACES, json={"name": "main", "sourceIds": ["web"]}), 201)
    asked = client.delete(f"{SPACES}/main").json()["data"]["deletion"]
    assert asked["status"] == "PENDING" and asked["cancellable"] is True
    assert asked["startsAt"] == "2023-11-19T22:13:20.000Z"  # five calendar days after T
    again = client.delete(f"{SPACES}/main").json()["data"]["deletion"]
    assert again["id"] == asked["id"]  # asking twice keeps the first date

    clock.advance(GRACE_SECONDS - 1)
    assert run(engine, clock) == 0
    assert space_of(client.get(f"{SPACES}/main"))["sourceIds"] == space["sourceIds"]  # working
    cancelled = client.delete(f"{SPACES}/main/deletion")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["deletion"]["status"] == "CANCELLED"

    clock.advance(GRACE_SECONDS * 2)
    assert run(engine, clock) == 0
    assert space_of(client.get(f"{SPACES}/main"))["id"] == space["id"]
    assert_error(client.delete(f"{SPACES}/main/deletion"), 404, "not_found")
    shown = client.get(f"{SPACES}/main/deletion").json()["data"]["deletion"]
    assert shown["status"] == "CANCELLED" and shown["cancellable"] is False


def test_after_five_days_the_space_is_deleted_and_not_cancellable(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    space = space_of(client.post(SPACES, json={"name": "main", "sourceIds": ["web"]}), 201)
    assert engage_source(engine, space["id"]) is not None
    client.delete(f"{SPACES}/main")
    clock.advance(GRACE_SECONDS)
    late = client.delete(f"{SPACES}/main/deletion")
    assert_error(late, 409, "conflict")  # started: it can no longer be cancelled

    assert run(engine, clock) == 1
    assert_error(client.get(f"{SPACES}/main"), 404, "not_found")
    assert engage_source(engine, space["id"]) is None
    shown = client.get(f"{SPACES}/{space['id']}/deletion").json()["data"]["deletion"]
    assert shown["status"] == "DELETED" and shown["finishedAt"] is not None
    assert run(engine, clock) == 0
    assert client.get("/api/v1/sources/web").status_code == 200  # its sources stay


def test_unknown_space(client: TestClient) -> None:
    assert_error(client.delete(f"{SPACES}/nope"), 404, "not_found")
    assert_error(client.delete(f"{SPACES}/nope/deletion"), 404, "not_found")
    assert client.get(f"{SPACES}/nope/deletion").json()["data"]["deletion"] is None
