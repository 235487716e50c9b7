"""``SqlGraph`` beyond the protocol's contract: batches on the caller's transaction (and what a
rollback leaves), the cache through merges, restart and replay, the merge history and the
profile listing; on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store.database import write_transaction
from headwater.store.schema import (
    unify_applied,
    unify_identities,
    unify_links,
    unify_merges,
    unify_profiles,
)
from headwater.unify.graph import AddIdentifier, MergeProfiles
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.resolution import Resolver
from headwater.unify.sql_graph import SqlGraph
from tests.support.graph_db import migrated_engine
from tests.support.unify import DAY, Space

SPACE = "spa_main"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request, tmp_path, request.param) as engine:
        yield engine


def _events() -> list[dict[str, Any]]:
    """A visitor, who signs up, comes back on a second device, logs in there (a merge), and
    joins an account; and someone else."""
    space = Space()
    sent = [
        space.event("page", anonymousId="a1"),
        space.event("identify", anonymousId="a1", userId="u1", traits={"email": "u1@x.com"}),
        space.event("page", anonymousId="a2"),
        space.event("track", anonymousId="a2", context={"device": {"type": "ios", "id": "d2"}}),
        space.event("identify", anonymousId="a2", userId="u1"),
        space.event("group", userId="u1", groupId="g1"),
        space.event("page", anonymousId="a3", userId="u3"),
        space.event("group", userId="u3", groupId="g1"),
    ]
    for n, event in enumerate(sent):
        event["timestamp"] = event["receivedAt"] = f"2025-01-01T00:00:{n:02d}.000Z"
    return sent


def _tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the graph's tables (apart from when an event was applied)."""
    with engine.connect() as conn:
        return {
            table.name: sorted(
                tuple(row)
                for row in conn.execute(
                    sa.select(*(c for c in table.c if c.name != "applied_at"))
                ).all()
            )
            for table in (
                unify_profiles,
                unify_identities,
                unify_links,
                unify_merges,
                unify_applied,
            )
        }


def _resolve_all(graph: SqlGraph, events: list[dict[str, Any]], seed: int = 3) -> list[str]:
    resolver = Resolver(graph, ids=ProfileIds(seed))
    return [resolver.resolve(event, "web").status for event in events]


def test_a_batch_reads_its_own_changes_and_commits_with_the_callers_transaction(
    db: Engine,
) -> None:
    graph = SqlGraph(db, SPACE)
    events = _events()
    resolver = Resolver(graph, ids=ProfileIds(3))
    with write_transaction(db) as conn, graph.batch(conn):
        assert graph.applied_many([e["messageId"] for e in events]) == set()
        done = [resolver.resolve(event, "web") for event in events]
        assert graph.applied(events[0]["messageId"])
        # the second event found the profile the first one made, in the same transaction
        assert done[0].user == done[1].user
        # the login on the second device merged its profile into the first one
        assert done[4].user == done[0].user
        assert [type(c) for c in done[4].changes] == [MergeProfiles]
    fresh = SqlGraph(db, SPACE)
    user = fresh.find("users", "user_id", "u1")
    assert user is not None and user == done[0].user
    assert fresh.find("users", "ios.id", "d2") == user
    assert fresh.applied_many([e["messageId"] for e in events]) == {e["messageId"] for e in events}
    assert fresh.links(user) == [fresh.find("accounts", "group_id", "g1")]


@pytest.mark.parametrize("where", ["inside the batch", "after the batch, before the commit"])
def test_a_batch_that_fails_leaves_nothing_in_the_tables_or_the_cache(
    db: Engine, where: str
) -> None:
    graph = SqlGraph(db, SPACE)
    _resolve_all(graph, _events()[:2])  # committed: u1 with a1 and an email
    before = _tables(db)
    user = graph.find("users", "user_id", "u1")
    space = Space()
    space.sent = 100  # messageIds after _events()'
    later = [
        space.event("page", anonymousId="b1"),
        space.event("identify", anonymousId="b1", userId="u9"),
        space.event("identify", anonymousId="b1", userId="u1"),  # refused: one user_id each
        space.event("track", anonymousId="a9", userId="u1"),  # a9 joins u1
        space.event("group", userId="u1", groupId="g7"),
    ]
    resolver = Resolver(graph, ids=ProfileIds(4))

    def fail() -> None:
        with write_transaction(db) as conn:
            with graph.batch(conn):
                for event in later:
                    resolver.resolve(event, "web")
                assert graph.find("users", "anonymous_id", "a9") == user
                assert graph.find("users", "user_id", "u9") is not None
                if where == "inside the batch":
                    raise RuntimeError("pipeline failed")
            raise RuntimeError("pipeline failed")

    with pytest.raises(RuntimeError, match="pipeline failed"):
        fail()
    assert _tables(db) == before
    # nothing the batch added answers from the cache either
    assert graph.find("users", "anonymous_id", "a9") is None
    assert graph.find("users", "user_id", "u9") is None
    assert graph.find("accounts", "group_id", "g7") is None
    assert graph.links(user or "") == []
    assert not graph.applied(later[0]["messageId"])
    assert graph.find("users", "user_id", "u1") == user
    # and the same events resolve again, now for good
    with write_transaction(db) as conn, graph.batch(conn):
        assert {resolver.resolve(e, "web").status for e in later} == {"resolved"}
    assert SqlGraph(db, SPACE).find("users", "anonymous_id", "a9") == user


def test_an_apply_that_fails_in_a_batch_spoils_it(db: Engine) -> None:
    graph = SqlGraph(db, SPACE)
    _resolve_all(graph, _events()[:1])
    profile = graph.find("users", "anonymous_id", "a1")
    assert profile is not None

    def swallow() -> None:
        with write_transaction(db) as conn, graph.batch(conn):
            graph.apply("fine", [_add(profile, "a8", "fine")])
            with pytest.raises(KeyError):
                graph.apply("bad", [_add("use_gone", "a9", "bad")])
            # the caller swallowed the error and carried on: the batch refuses to commit

    with pytest.raises(RuntimeError, match="roll its transaction back"):
        swallow()
    assert not graph.applied("fine")
    assert graph.find("users", "anonymous_id", "a8") is None
    assert graph.profile(profile).mappings == 1


def _add(profile: str, value: str, message_id: str) -> AddIdentifier:
    return AddIdentifier(profile, "users", "anonymous_id", value, 0.0, "web", message_id)


def test_a_restarted_graph_continues_and_a_replayed_range_changes_nothing(db: Engine) -> None:
    """Restart-resume and replay (issue 14's "Tests that must exist"): a new ``SqlGraph`` (an
    empty cache) over the same tables answers the same, and resolving the applied range again
    (a crash before the stage's position moved) changes no row."""
    events = _events()
    graph = SqlGraph(db, SPACE)
    assert _resolve_all(graph, events[:5]) == ["resolved"] * 5
    keys = [
        ("users", "anonymous_id", "a1"),
        ("users", "anonymous_id", "a2"),
        ("users", "user_id", "u1"),
        ("users", "email", "u1@x.com"),
        ("users", "ios.id", "d2"),
    ]
    found = graph.find_many(keys)
    restarted = SqlGraph(db, SPACE)
    assert restarted.find_many(keys) == found
    assert len(set(found.values())) == 1
    before = _tables(db)
    with write_transaction(db) as conn, restarted.batch(conn):
        restarted.applied_many([e["messageId"] for e in events])
        statuses = _resolve_all(restarted, events, seed=99)
    assert statuses == ["duplicate"] * 5 + ["resolved"] * 3
    after = _tables(db)
    assert {k: v for k, v in after.items() if k != "unify_applied"} != {
        k: v for k, v in before.items() if k != "unify_applied"
    }  # the three new events did change it
    replay = _tables(db)
    assert _resolve_all(SqlGraph(db, SPACE), events, seed=100) == ["duplicate"] * len(events)
    assert _tables(db) == replay
    # once the applied messageIds are pruned, a replay still finds everything in place
    assert SqlGraph(db, SPACE).prune(before=4_000_000_000) == len(events)
    assert set(_resolve_all(SqlGraph(db, SPACE), events, seed=101)) == {"resolved"}
    assert {k: v for k, v in _tables(db).items() if k != "unify_applied"} == {
        k: v for k, v in replay.items() if k != "unify_applied"
    }


def test_merge_history_and_lineage_with_the_cache_kept_right(db: Engine) -> None:
    """A-UE-18: P2 merged into P1 answers by either's identifiers, with both merges in
    P1's history, oldest first; a merged-away id resolves to where it went."""
    graph = SqlGraph(db, SPACE)
    space = Space()
    events = [
        space.event("page", anonymousId="a1"),
        space.event("page", anonymousId="a2"),
        space.event("page", anonymousId="a3"),
        space.event("identify", anonymousId="a2", traits={"email": "e@x.com"}),
        space.event("identify", anonymousId="a3", traits={"email": "e@x.com"}),
        space.event("identify", anonymousId="a1", traits={"email": "e@x.com"}),
    ]
    resolver = Resolver(graph, ids=ProfileIds(8))
    made = [resolver.resolve(e, "web").user for e in events[:3]]
    # every identifier is in the cache now; the merges must re-point them
    for event in events[3:]:
        resolver.resolve(event, "web")
    p1, p2, p3 = made
    assert p1 and p2 and p3
    assert {graph.find("users", "anonymous_id", a) for a in ("a1", "a2", "a3")} == {p1}
    assert graph.canonical(p3) == p1 and graph.canonical(p2) == p1
    history = graph.merge_history(p1)
    assert [(m.from_id, m.into_id) for m in history] == [(p3, p2), (p2, p1)]
    assert history[0].message_id == events[4]["messageId"]
    assert history[1].event_type == "identify"
    assert graph.profile(p1).merges == 2
    assert {(r.type, r.value) for r in graph.identifiers(p1)} == {
        ("anonymous_id", "a1"),
        ("anonymous_id", "a2"),
        ("anonymous_id", "a3"),
        ("email", "e@x.com"),
    }
    with pytest.raises(KeyError):
        graph.identifiers(p2)
    assert SqlGraph(db, SPACE).canonical(p3) == p1


def test_profiles_are_listed_in_creation_order_a_page_at_a_time(db: Engine) -> None:
    graph = SqlGraph(db, SPACE)
    space = Space()
    for n in range(7):
        space.later(DAY)
        space.send("page", anonymousId=f"a{n}")
    resolver = Resolver(graph, ids=ProfileIds(9))
    users = [resolver.resolve(e, "web").user for e, _ in space.history]
    resolver.resolve(space.event("group", anonymousId="a0", groupId="g"), "web")
    # a6 merges into a2's profile
    resolver.resolve(space.event("identify", anonymousId="a2", userId="u2"), "web")
    resolver.resolve(space.event("identify", anonymousId="a6", traits={"email": "x@y.z"}), "web")
    resolver.resolve(space.event("identify", userId="u2", traits={"email": "x@y.z"}), "web")
    assert graph.canonical(users[6] or "") == users[2]
    expected = users[:6]
    pages, after = [], None
    while True:
        page = graph.profiles("users", after=after, limit=4)
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert pages == [expected[:4], expected[4:]]
    assert graph.profiles("accounts") == [graph.find("accounts", "group_id", "g")]
    assert SqlGraph(db, "spa_other").profiles("users") == []


def test_spaces_do_not_share_a_graph(db: Engine) -> None:
    one, two = SqlGraph(db, "spa_one"), SqlGraph(db, "spa_two")
    events = _events()
    _resolve_all(one, events)
    assert one.find("users", "user_id", "u1") is not None
    assert two.find("users", "user_id", "u1") is None
    assert not two.applied(events[0]["messageId"])
    assert _resolve_all(two, events, seed=5) == ["resolved"] * len(events)
    assert two.find("users", "user_id", "u1") != one.find("users", "user_id", "u1")


def test_a_small_cache_stays_bounded_and_right(db: Engine) -> None:
    graph = SqlGraph(db, SPACE, cache_size=4)
    space = Space()
    for n in range(20):
        space.send("identify", anonymousId=f"a{n}", userId=f"u{n}")
    resolver = Resolver(graph, ids=ProfileIds(10))
    users = [resolver.resolve(e, "web").user for e, _ in space.history]
    assert len(set(users)) == 20
    for n in range(20):
        assert graph.find("users", "anonymous_id", f"a{n}") == users[n]
    assert len(graph._index) <= 4 and len(graph._profiles) <= 4
    graph.forget()
    assert not graph._index and not graph._profiles
    assert graph.find("users", "user_id", "u7") == users[7]


def test_the_callers_own_statements_in_a_batch_see_the_graphs_writes(db: Engine) -> None:
    """The stage writes its own rows (positions, counters) in the batch's transaction: on
    PostgreSQL they end the graph's pipeline first, and the graph starts a new one after."""
    graph = SqlGraph(db, SPACE)
    events = _events()
    resolver = Resolver(graph, ids=ProfileIds(3))
    with write_transaction(db) as conn, graph.batch(conn):
        resolver.resolve(events[0], "web")
        count = sa.select(sa.func.count()).select_from(unify_profiles)
        assert conn.execute(count).scalar_one() == 1
        touched = conn.execute(
            sa.update(unify_profiles)
            .where(unify_profiles.c.space_id == SPACE)
            .values(merges=unify_profiles.c.merges)
        )
        assert touched.rowcount == 1
        resolver.resolve(events[2], "web")
        assert conn.execute(count).scalar_one() == 2
    assert SqlGraph(db, SPACE).applied_many([e["messageId"] for e in events[:3]]) == {
        events[0]["messageId"],
        events[2]["messageId"],
    }
