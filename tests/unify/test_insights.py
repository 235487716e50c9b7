"""Profiles Insights on real resolutions (a ``Resolver`` over ``MemoryGraph``), stored in the
state database (SQLite and PostgreSQL) and read back through the REST API and the CLI:
errors (A-UE-10), violations (A-UE-9, A-UE-13, A-UE-15), merges and mappings (A-UE-18), the
filters of §2.7, the bound of 500 records per kind and 30 days."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.api.app import create_api
from headwater.cli import main
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.unify.commands import since_time
from headwater.unify.insights import Entry, Insights, Query
from headwater.unify.settings import SUGGESTED_BLOCKED, IdentifierSetting, IdentitySettings
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock
from tests.support.threaded import serving_in_thread
from tests.support.unify import DAY, Space

TOKEN = "test-admin-token"


@pytest.fixture
def world(engine: Engine, clock: Clock) -> Iterator[tuple[Engine, Clock, str, TestClient]]:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    space = SpaceStore(store).create("main")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield engine, clock, space.id, http


def _record(
    engine: Engine,
    insights: Insights,
    space_id: str,
    space: Space,
    type_: str = "track",
    **fields: Any,
) -> None:
    event = space.event(type_, **fields)
    resolution = space.resolve(event)
    with write_transaction(engine) as conn:
        insights.record(conn, space_id, "src_web", event, resolution, space.resolver.settings)


def _get(http: TestClient, space: str, **params: str) -> list[dict[str, Any]]:
    answer = http.get(f"/api/v1/spaces/{space}/insights", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["data"]["insights"]
    return found


def test_a_ue_10_an_event_without_identifiers_is_an_error_with_its_payload(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, "track", event="Clicked", properties={"a": 1})
    [error] = _get(http, "main", kind="errors")
    assert error["kind"] == "error"
    assert error["name"] == "No matching identifiers on event"
    assert error["profileId"] is None and error["externalId"] is None
    assert error["payload"]["event"] == "Clicked"
    assert error["payload"]["properties"] == {"a": 1}
    assert error["sourceId"] == "src_web" and error["messageId"] == "msg-1"
    assert error["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert _get(http, "main", kind="violations") == []


def test_a_ue_9_a_blocked_value_is_a_violation_and_the_event_still_resolves(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    settings = IdentitySettings().with_identifier(
        IdentifierSetting(type="user_id", limit=1, priority=1, blocked=SUGGESTED_BLOCKED)
    )
    insights, space = Insights(clock=clock), Space(settings)
    _record(engine, insights, space_id, space, "identify", userId="anonymous", anonymousId="a1")
    [blocked] = _get(http, space_id, kind="violations")
    assert blocked["name"] == "ID value blocked"
    assert blocked["externalId"] == {"type": "user_id", "id": "anonymous"}
    profile = space.profile_of("anonymous_id", "a1")
    assert profile is not None and blocked["profileId"] == profile
    [mapping] = _get(http, space_id, kind="mappings")
    assert mapping["externalId"] == {"type": "anonymous_id", "id": "a1"}
    assert mapping["newProfile"] is True and mapping["profileId"] == profile


def test_a_ue_13_a_demoted_identifier_is_a_limit_violation(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    """The priority example: email demoted, a new profile with the new user_id."""
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, "identify", userId="abc123", traits={"email": "j@x"})
    _record(engine, insights, space_id, space, "identify", userId="abc456", traits={"email": "j@x"})
    [violation] = _get(http, space_id, violation="Identifier value limit exceeded")
    assert violation["externalId"] == {"type": "email", "id": "j@x"}
    assert violation["profileId"] == space.profile_of("user_id", "abc456")
    assert violation["payload"]["userId"] == "abc456"
    assert _get(http, space_id, violation="ID value blocked") == []


def test_a_ue_15_sixth_anonymous_id_is_a_limit_violation(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    for n in range(1, 7):
        _record(engine, insights, space_id, space, userId="u1", anonymousId=f"a{n}")
    [violation] = _get(http, space_id, kind="violations")
    assert violation["name"] == reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED
    assert violation["externalId"] == {"type": "anonymous_id", "id": "a6"}
    mapped = _get(http, space_id, kind="mappings", idType="anonymous_id")
    assert [m["externalId"]["id"] for m in mapped] == ["a5", "a4", "a3", "a2", "a1"]  # newest first


def test_a_ue_18_merges_and_mappings_are_success_logs_found_by_external_id(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, anonymousId="a1")
    clock.advance(60)
    _record(engine, insights, space_id, space, anonymousId="a2")
    p2 = space.profile_of("anonymous_id", "a2")
    clock.advance(60)
    _record(engine, insights, space_id, space, "identify", anonymousId="a1", traits={"email": "e"})
    clock.advance(60)
    _record(engine, insights, space_id, space, "identify", anonymousId="a2", traits={"email": "e"})
    p1 = space.profile_of("anonymous_id", "a1")
    [merge] = _get(http, space_id, kind="merges")
    assert p1 != p2 and (merge["profileId"], merge["mergedProfileId"]) == (p1, p2)
    assert merge["payload"]["anonymousId"] == "a2"
    assert {(e["type"], e["id"]) for e in merge["externalIds"]} == {
        ("anonymous_id", "a2"),
        ("email", "e"),
    }
    # The external id search finds the merge (the event carried it) and the mapping of it.
    by_email = _get(http, space_id, externalId="email:e")
    assert [r["kind"] for r in by_email] == ["merge", "mapping"]
    by_a2 = _get(http, space_id, externalId="anonymous_id:a2")
    assert [r["kind"] for r in by_a2] == ["merge", "mapping"]
    assert by_a2[1]["newProfile"] is True
    assert _get(http, space_id, externalId="anonymous_id:a9") == []
    # The time range: the last two minutes hold the email mapping and the merge only.
    recent = _get(http, space_id, start="2023-11-14T22:15:00Z")
    assert [r["kind"] for r in recent] == ["merge", "mapping"]
    assert recent[1]["externalId"] == {"type": "email", "id": "e"}
    early = _get(http, space_id, end="2023-11-14T22:14:00Z")
    assert [r["externalId"]["id"] for r in early] == ["a1"]


def test_pagination_walks_every_record_once(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    for n in range(7):
        _record(engine, insights, space_id, space, anonymousId=f"a{n}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"pagination.count": "3"}
        if cursor:
            params["pagination.cursor"] = cursor
        data = http.get(f"/api/v1/spaces/{space_id}/insights", params=params).json()["data"]
        seen += [r["externalId"]["id"] for r in data["insights"]]
        assert data["pagination"]["totalEntries"] == 7
        cursor = data["pagination"].get("next")
        if not cursor:
            break
    assert seen == [f"a{n}" for n in reversed(range(7))]


def test_dropped_and_duplicate_events_are_not_insights(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    """Segment: no Insights error for an event dropped before identity resolution."""
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, "group", groupId="", userId="u1")
    event = space.event(anonymousId="a1")
    with write_transaction(engine) as conn:
        first = insights.record(conn, space_id, "s", event, space.resolve(event))
        again = insights.record(conn, space_id, "s", event, space.resolve(event))
    assert (first, again) == (1, 0)
    assert [r["kind"] for r in _get(http, space_id)] == ["mapping"]


def test_known_users_produce_no_records(world: tuple[Engine, Clock, str, TestClient]) -> None:
    engine, clock, space_id, _ = world
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, userId="u1")
    for _ in range(5):
        _record(engine, insights, space_id, space, userId="u1")
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(schema.unify_insights))
        assert count.scalar_one() == 1


def test_at_most_500_records_per_kind_and_30_days(
    world: tuple[Engine, Clock, str, TestClient],
) -> None:
    engine, clock, space_id, http = world
    insights, space = Insights(clock=clock), Space()
    events = [space.event(properties={"n": n}) for n in range(600)]
    batch = [Entry(space_id, "src", e, space.resolve(e)) for e in events]
    batch.append(Entry(space_id, "src", e := space.event(anonymousId="a1"), space.resolve(e)))
    with write_transaction(engine) as conn:
        assert insights.record_many(conn, batch) == 501
    errors = _get(http, space_id, kind="errors", **{"pagination.count": "1000"})
    assert len(errors) == 500
    assert errors[0]["payload"]["properties"]["n"] == 599
    assert errors[-1]["payload"]["properties"]["n"] == 100
    # More, one event at a time: trimmed back to the bound as they come (every 50).
    for n in range(600, 700):
        _record(engine, insights, space_id, space, properties={"n": n})
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.unify_insights)
            .where(schema.unify_insights.c.kind == "error")
        ).scalar_one()
    assert stored == 500
    assert len(_get(http, space_id, kind="mappings")) == 1
    # 30 days on, nothing is shown, and the maintenance deletes it all.
    clock.advance(30 * DAY + 1)
    assert _get(http, space_id) == []
    assert insights.purge(engine) == 501


def test_purge_trims_to_the_bound(engine: Engine, clock: Clock) -> None:
    writer = Insights(clock=clock, prune_every=10_000)  # never trims on its own
    space = Space()
    with write_transaction(engine) as conn:
        for n in range(30):
            event = space.event(properties={"n": n})
            writer.record(conn, "spa_x", "src", event, space.resolve(event))
    assert Insights(clock=clock, max_records=20).purge(engine) == 10
    with engine.connect() as conn:
        left = Insights(clock=clock).search(conn, "spa_x", Query(kinds=("error",)))
    assert len(left) == 20


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "warnings"}, "kind"),
        ({"violation": "Something else"}, "violation"),
        ({"externalId": "email"}, "externalId"),
        ({"externalId": ":x"}, "externalId"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2025-13-45"}, "end"),
        ({"pagination.count": "0"}, "pagination.count"),
    ],
)
def test_bad_filters_are_422(
    world: tuple[Engine, Clock, str, TestClient], params: dict[str, str], field: str
) -> None:
    _, _, space_id, http = world
    answer = http.get(f"/api/v1/spaces/{space_id}/insights", params=params)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == field


def test_unknown_space_is_404(world: tuple[Engine, Clock, str, TestClient]) -> None:
    _, _, _, http = world
    answer = http.get("/api/v1/spaces/nope/insights")
    assert answer.status_code == 404
    assert "nope" in answer.json()["errors"][0]["message"]


# --- the CLI, against the API on a real port ----------------------------------------------------


@pytest.fixture
def served(world: tuple[Engine, Clock, str, TestClient]) -> Iterator[str]:
    with serving_in_thread(world[3].app) as url:
        yield url


def test_cli_lists_and_searches_insights(
    world: tuple[Engine, Clock, str, TestClient],
    served: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, clock, space_id, _ = world
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    insights, space = Insights(clock=clock), Space()
    _record(engine, insights, space_id, space, properties={"x": 1})
    for n in range(1, 7):
        _record(engine, insights, space_id, space, userId="u1", anonymousId=f"a{n}")

    with pytest.raises(SystemExit) as done:
        main(["insights", "main", "--kind", "violations", "--url", served])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "main: 1 records"
    assert "Identifier value limit exceeded: anonymous_id:a6" in out

    with pytest.raises(SystemExit):
        main(["insights", space_id, "--external-id", "anonymous_id:a2", "--json", "--url", served])
    listed = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["externalId"]["id"]) for r in listed] == [("mapping", "a2")]

    with pytest.raises(SystemExit):
        main(["insights", "main", "--since", "2023-11-14", "--kind", "errors", "--url", served])
    assert "No matching identifiers on event" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["insights", "main", "--since", "2023-11-15", "--url", served])
    assert capsys.readouterr().out == "main: 0 records\n"

    with pytest.raises(SystemExit) as refused:
        main(["insights", "nope", "--url", served])
    assert "404" in str(refused.value.code) and "nope" in str(refused.value.code)


def test_since_takes_a_time_or_a_duration() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert since_time("24h", now) == "2023-11-13T22:13:20.000Z"
    assert since_time("7d", now) == "2023-11-07T22:13:20.000Z"
    assert since_time("30m", now) == "2023-11-14T21:43:20.000Z"
    assert since_time("2023-11-01T10:00:00+01:00") == "2023-11-01T09:00:00.000Z"
    with pytest.raises(SystemExit, match="--since 'soon'"):
        since_time("soon")
