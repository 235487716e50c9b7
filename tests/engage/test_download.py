"""CSV downloads of an audience and a computed trait (§5.6, §13.9): every format's columns and
rows from profiles Engage computed, on SQLite and PostgreSQL, and one download every 5 minutes
(A-UE-47)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.engage.computations import ComputationStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.engage.test_stage import ORDERS_30, REVENUE, Engage
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> Iterator[tuple[Engage, TestClient]]:
    e = Engage(engine, tmp_path, clock)
    store = ComputationStore(WorkspaceStore(engine))
    for computation, text in (
        (ORDERS_30, "event('Order Completed').within(30 days).count() >= 1"),
        (REVENUE, "event('Order Completed').within(180 days).sum(property('revenue'))"),
    ):
        made = store.create("main", computation.kind, computation.key.replace("_", " "), text)
        assert made.key == computation.key
    e.computations = [ORDERS_30, REVENUE]
    e.connected = {}
    e.send("identify", userId="u1", traits={"email": "a@x.com", "plan": "pro"})
    e.send("identify", userId="u1", traits={"email": "b@x.com"})
    e.send(event="Order Completed", userId="u1", properties={"revenue": 34})
    e.send(event="Order Completed", anonymousId="anon-2", properties={"revenue": 5})
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield e, http


def table(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_computed_trait_in_each_format(world: tuple[Engage, TestClient]) -> None:
    e, http = world
    u1 = e.profile("u1")
    base = "/api/v1/spaces/main/computed-traits/total_revenue_180_days/download"
    answer = http.get(base)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = table(answer.text)
    assert rows[0] == ["key", "value", "external_ids"]
    by_key = {r[0]: r for r in rows[1:]}
    assert by_key[u1] == [u1, "34", '{"email":["a@x.com","b@x.com"],"user_id":["u1"]}']
    assert len(rows) == 3  # u1 and the anonymous buyer
    e.clock.advance(300)
    indexed = table(http.get(base, params={"format": "indexed"}).text)
    assert indexed[0] == [
        "key",
        "value",
        "external_ids",
        "anonymous_id",
        "email",
        "email_1",
        "user_id",
    ]
    assert {r[0]: r[3:] for r in indexed[1:]}[u1] == ["", "a@x.com", "b@x.com", "u1"]
    e.clock.advance(300)
    spread = table(http.get(base, params={"format": "rows"}).text)
    assert spread[0] == ["key", "value", "external_ids", "anonymous_id", "email", "user_id"]
    mine = [r for r in spread[1:] if r[0] == u1]
    assert [r[3:] for r in mine] == [["", "a@x.com", "u1"], ["", "b@x.com", ""]]
    assert all(r[:3] == mine[0][:3] for r in mine)


def test_an_audience_formatted_and_unformatted_with_traits(
    world: tuple[Engage, TestClient],
) -> None:
    e, http = world
    u1 = e.profile("u1")
    base = "/api/v1/spaces/main/audiences/order_completed_last_30days/download"
    rows = table(http.get(base, params={"traits": "plan"}).text)
    assert rows == [
        ["key", "external_ids", "traits"],
        [u1, '{"email":["a@x.com","b@x.com"],"user_id":["u1"]}', '{"plan":"pro"}'],
    ]
    e.clock.advance(301)
    formatted = table(http.get(base, params={"format": "formatted", "traits": "plan"}).text)
    assert formatted == [
        ["key", "external_ids", "email", "email_1", "user_id", "plan"],
        [u1, '{"email":["a@x.com","b@x.com"],"user_id":["u1"]}', "a@x.com", "b@x.com", "u1", "pro"],
    ]  # the anonymous buyer is no member: no known identifier (§13.3)


def test_a47_a_second_download_within_five_minutes_is_refused(
    world: tuple[Engage, TestClient],
) -> None:
    e, http = world
    base = "/api/v1/spaces/main/audiences/order_completed_last_30days/download"
    assert http.get(base).status_code == 200
    e.clock.advance(299)
    refused = http.get(base)
    assert refused.status_code == 409
    assert "every 5 minutes" in refused.text
    assert (
        http.get(
            base.replace(
                "audiences/order_completed_last_30days", "computed-traits/total_revenue_180_days"
            )
        ).status_code
        == 200
    )
    e.clock.advance(2)
    assert http.get(base).status_code == 200


def test_a_format_that_does_not_fit_is_refused_and_counts_as_no_download(
    world: tuple[Engage, TestClient],
) -> None:
    _, http = world
    base = "/api/v1/spaces/main/audiences/order_completed_last_30days/download"
    refused = http.get(base, params={"format": "indexed"})
    assert refused.status_code == 422 and "unformatted, formatted" in refused.text
    assert http.get(base).status_code == 200
    assert http.get("/api/v1/spaces/main/audiences/nope/download").status_code == 404
