"""The ``GraphStore`` contract, through the protocol's methods only, so that a SQL store is
held to it by adding its factory to ``STORES``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.unify.graph import (
    AddIdentifier,
    Change,
    CreateProfile,
    GraphStore,
    LinkProfiles,
    MergeProfiles,
)
from headwater.unify.memory import MemoryGraph
from headwater.unify.sql_graph import SqlGraph
from tests.support.graph_db import migrated_engine

# name → the store on a migrated engine of that name (None: the store needs no database)
STORES: dict[str, Callable[[Engine | None], GraphStore]] = {
    "memory": lambda _engine: MemoryGraph(),
    "sqlite": lambda engine: SqlGraph(_needed(engine), "spa_graph"),
    "postgresql": lambda engine: SqlGraph(_needed(engine), "spa_graph"),
}
T0 = 1_700_000_000.0


def _needed(engine: Engine | None) -> Engine:
    assert engine is not None
    return engine


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    name = request.param
    if name not in ("sqlite", "postgresql"):
        yield STORES[name](None)
        return
    with migrated_engine(request, tmp_path, name) as engine:
        yield STORES[name](engine)


def _profile(store: GraphStore, pid: str, *ids: tuple[str, str], at: float = T0) -> None:
    collection = "accounts" if pid.startswith("acc") else "users"
    store.apply(
        f"made-{pid}",
        [
            CreateProfile(pid, collection, at, "src", f"made-{pid}"),
            *(AddIdentifier(pid, collection, t, v, at, "src", f"made-{pid}") for t, v in ids),
        ],
    )


def _merge(store: GraphStore, gone: str, into: str, message_id: str, at: float = T0) -> None:
    store.apply(message_id, [MergeProfiles(gone, into, "users", at, "src", message_id, "track")])


def test_an_empty_graph(store: GraphStore) -> None:
    assert store.find("users", "user_id", "u1") is None
    assert store.find_many([("users", "user_id", "u1")]) == {}
    assert not store.applied("m1")
    assert store.canonical("use_x") is None


def test_profiles_and_identifiers(store: GraphStore) -> None:
    _profile(store, "p1", ("user_id", "u1"), ("anonymous_id", "a1"), ("anonymous_id", "a2"))
    _profile(store, "p2", ("user_id", "u2"), at=T0 + 5)
    assert store.applied("made-p1") and not store.applied("made-p3")
    assert store.find("users", "anonymous_id", "a2") == "p1"
    assert store.find("accounts", "anonymous_id", "a2") is None
    assert store.find_many(
        [("users", "user_id", "u2"), ("users", "user_id", "u9"), ("users", "anonymous_id", "a1")]
    ) == {("users", "user_id", "u2"): "p2", ("users", "anonymous_id", "a1"): "p1"}
    p1, p2 = store.profile("p1"), store.profile("p2")
    assert (p1.collection, p1.created_at, p1.merges, p1.mappings) == ("users", T0, 0, 3)
    assert p1.seq < p2.seq
    rows = store.identifiers("p1")
    assert [(r.type, r.value) for r in rows] == [
        ("user_id", "u1"),
        ("anonymous_id", "a1"),
        ("anonymous_id", "a2"),
    ]
    assert {(r.first_seen, r.source_id, r.message_id) for r in rows} == {(T0, "src", "made-p1")}
    assert [r.value for r in store.identifiers("p1", ["anonymous_id"])] == ["a1", "a2"]
    assert store.identifiers("p1", []) == []
    assert store.canonical("p1") == "p1"


def test_an_event_without_changes_is_remembered(store: GraphStore) -> None:
    store.apply("m-empty", [])
    assert store.applied("m-empty")


def test_a_merge_moves_identifiers_links_and_lineage(store: GraphStore) -> None:
    _profile(store, "p1", ("user_id", "u1"))
    _profile(store, "p2", ("anonymous_id", "a2"), at=T0 + 10)
    _profile(store, "p3", ("anonymous_id", "a3"), at=T0 + 20)
    _profile(store, "acc1", ("group_id", "g1"))
    store.apply("link", [LinkProfiles("p2", "acc1", T0 + 30, "src", "link")])
    assert store.linked("p2", "acc1") and store.links("acc1") == ["p2"]
    _merge(store, "p3", "p2", "m1")
    assert store.canonical("p3") == "p2"
    assert store.profile("p2").merges == 1
    _merge(store, "p2", "p1", "m2")
    assert store.applied("m2")
    assert store.find("users", "anonymous_id", "a3") == "p1"
    assert {store.canonical(p) for p in ("p1", "p2", "p3")} == {"p1"}
    record = store.profile("p1")
    assert (record.merges, record.mappings) == (2, 3)
    rows = {(r.type, r.value): r for r in store.identifiers("p1")}
    assert rows[("anonymous_id", "a3")].first_seen == T0 + 20  # first seen, not moved at
    assert store.linked("p1", "acc1") and store.links("acc1") == ["p1"]
    assert store.links("p1") == ["acc1"]
    with pytest.raises(KeyError):
        store.profile("p2")


def test_an_identifier_is_on_one_profile_only_and_apply_is_all_or_nothing(
    store: GraphStore,
) -> None:
    _profile(store, "p1", ("user_id", "u1"))
    changes: list[Change] = [
        CreateProfile("p2", "users", T0, "src", "dup"),
        AddIdentifier("p2", "users", "anonymous_id", "a2", T0, "src", "dup"),
        AddIdentifier("p2", "users", "user_id", "u1", T0, "src", "dup"),
    ]
    with pytest.raises(Exception):  # noqa: B017 - each store raises its own error
        store.apply("dup", changes)
    assert store.find("users", "user_id", "u1") == "p1"
    assert store.find("users", "anonymous_id", "a2") is None
    assert store.canonical("p2") is None
    assert not store.applied("dup")
