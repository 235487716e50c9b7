"""``SqlGraph`` against ``MemoryGraph`` over random event sequences (hypothesis), on SQLite and
PostgreSQL (whose writes differ: rows sent late as arrays, a merge as one statement).

The same events, resolved with the same profile ids into both stores, give the same resolution
for every event (status, profile, violations, changes) and the same graph, compared through the
protocol: every identifier on the same profile, the same records, links, lineage and merge
history. The SQL side resolves in batches of random size, each warmed as the pipeline stage
warms it (one ``applied_many``, one ``find_many``), so its cache and negative lookups are held to
the reference too; and the rules of test_properties.py hold on it directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from headwater.store.database import database_url, open_engine, write_transaction
from headwater.store.migrations import migrate
from headwater.unify.identifiers import extract
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.resolution import Resolver
from headwater.unify.settings import IdentitySettings
from headwater.unify.sql_graph import SqlGraph
from tests.support.postgres import new_database
from tests.support.unify import Space
from tests.unify.test_properties import SETTINGS, Step, _event, steps


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def graph_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One database for every example: each example is a space of its own."""
    tmp = Path(tmp_path_factory.mktemp("graph"))
    postgres = None
    if request.param == "postgresql":
        postgres = new_database(request.getfixturevalue("postgres_url"))
    engine = open_engine(database_url(tmp, postgres))
    migrate(engine)
    yield engine
    engine.dispose()


def _compare(memory: MemoryGraph, sql: SqlGraph, profile_ids: set[str]) -> None:
    for profile_id in profile_ids:
        assert sql.canonical(profile_id) == memory.canonical(profile_id)
    for collection in ("users", "accounts"):
        listed = memory.profiles(collection)
        assert sql.profiles(collection, limit=len(listed) + 1) == listed
        for profile_id in listed:
            want, got = memory.profile(profile_id), sql.profile(profile_id)
            assert got._replace(seq=0) == want._replace(seq=0)
            rows = memory.identifiers(profile_id)
            assert sorted(sql.identifiers(profile_id)) == sorted(rows)
            keys = [(collection, r.type, r.value) for r in rows]
            assert sql.find_many(keys) == dict.fromkeys(keys, profile_id)
            assert sql.links(profile_id) == memory.links(profile_id)
            lineage = {p for p in profile_ids if memory.canonical(p) == profile_id}
            assert sql.merge_history(profile_id) == [
                m for m in memory.merges if m.into_id in lineage
            ]


def _check_rules(sql: SqlGraph, rules: IdentitySettings, at: float) -> None:
    for collection in ("users", "accounts"):
        for profile_id in sql.profiles(collection, limit=10_000):
            record = sql.profile(profile_id)
            rows = sql.identifiers(profile_id)
            assert record.mappings == len(rows) <= rules.max_mappings
            assert record.merges <= rules.max_merges
            for setting in rules.identifiers:
                values = [r for r in rows if r.type == setting.type]
                if setting.merge_protected:
                    assert len(values) <= 1, (profile_id, values)
                since = float("-inf") if setting.window is None else at - setting.window
                assert len([r for r in values if r.first_seen > since]) <= setting.limit


@settings(max_examples=200, deadline=None, database=None)
@given(
    name=st.sampled_from(sorted(SETTINGS)),
    sequence=st.lists(steps, min_size=20, max_size=60),
    batches=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8),
    cache=st.sampled_from([16, 100_000]),
)
def test_sql_graph_resolves_as_the_memory_graph_does(
    graph_engine: Engine, name: str, sequence: list[Step], batches: list[int], cache: int
) -> None:
    rules = SETTINGS[name]
    space = Space(rules, seed=11)  # the reference: MemoryGraph
    sql = SqlGraph(graph_engine, f"spa_{uuid.uuid4().hex[:12]}", cache_size=cache)
    resolver = Resolver(sql, rules, ids=ProfileIds(11))

    events: list[tuple[dict[str, Any], str]] = []
    for step in sequence:
        space.later(step.gap)
        if step.repeat is not None and space.history:
            events.append(space.history[step.repeat % len(space.history)])
        else:
            events.append((_event(space, step), "src"))
            space.history.append(events[-1])

    profile_ids: set[str] = set()
    sizes, at = cycle(batches), 0
    while at < len(events):
        chunk = events[at : at + next(sizes)]
        at += len(chunk)
        with write_transaction(graph_engine) as conn, sql.batch(conn):
            sql.applied_many([e["messageId"] for e, _ in chunk])
            sql.warm([extract(e, rules).identifiers for e, _ in chunk])
            for event, source in chunk:
                want = space.resolver.resolve(event, source)
                got = resolver.resolve(event, source)
                assert got == want
                profile_ids.update(p for p in (got.user, got.account) if p is not None)

    _compare(space.graph, sql, profile_ids)
    _check_rules(sql, rules, space.at)
    # a restart (an empty cache) answers the same, and the whole range again changes nothing
    restarted = SqlGraph(graph_engine, sql.space_id)
    _compare(space.graph, restarted, profile_ids)
    again = Resolver(restarted, rules, ids=ProfileIds(12))
    assert {again.resolve(e, s).status for e, s in events} == {"duplicate"}
    _compare(space.graph, restarted, profile_ids)
