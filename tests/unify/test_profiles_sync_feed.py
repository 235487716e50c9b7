"""Profiles Sync's feed in the state database (SQLite and PostgreSQL): what ``record`` keeps,
its own profile pointers (recursive merge rows), idempotence, positions and pruning."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.unify import profiles_sync as feed
from headwater.unify.identifiers import extract
from headwater.unify.profiles_sync import ProfilesSyncFeed, Resolved
from headwater.unify.resolution import Resolution
from headwater.unify.settings import IdentitySettings
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.store import WarehouseStore
from tests.support.unify import Space


class Fed:
    """A space resolved by the real ``Resolver`` (``MemoryGraph``) whose events go to the
    feed, as the identity stage will send them."""

    def __init__(self, engine: Engine, space_id: str = "spa_test") -> None:
        self.engine = engine
        self.space_id = space_id
        self.space = Space()
        self.feed = ProfilesSyncFeed(clock=lambda: 1_000.0)

    def send(self, type_: str = "identify", **fields: Any) -> Resolution:
        event = self.space.event(type_, **fields)
        resolution = self.space.resolve(event)
        self.record(event, resolution, [])
        return resolution

    def record(
        self,
        event: dict[str, Any],
        resolution: Resolution,
        traits: list[tuple[str, dict[str, Any]]],
    ) -> None:
        with write_transaction(self.engine) as conn:
            self.feed.record(conn, self.space_id, "src", event, resolution, traits)

    def entries(self) -> list[feed.OutboxEntry]:
        with self.engine.connect() as conn:
            return feed.pending(conn, self.space_id, 0, 1_000)

    def pointers(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return feed.canonical_ids(conn, self.space_id)


@pytest.fixture
def fed(engine: Engine) -> Fed:
    return Fed(engine)


def test_a_creation_and_its_identifiers_are_kept_in_order(fed: Fed) -> None:
    made = fed.send("page", anonymousId="anon-1")
    (entry,) = fed.entries()

    assert entry.segment_id == made.user
    assert entry.message_id == "msg-1" and entry.source_id == "src"
    assert [op[:4] for op in entry.ops] == [
        ["create", made.user, entry.timestamp],
        ["add", made.user, "anonymous_id", "anon-1"],
    ]
    assert entry.event["anonymousId"] == "anon-1"
    assert fed.pointers() == {made.user: made.user}


def test_a_merge_repoints_every_id_that_pointed_at_the_merged_profile(fed: Fed) -> None:
    z = fed.send(anonymousId="anon-z").user
    a = fed.send(anonymousId="anon-a", traits={"email": "ann@x.io"}).user
    b = fed.send(anonymousId="anon-b").user
    fed.send(anonymousId="anon-b", traits={"email": "ann@x.io"})  # b into a
    assert fed.pointers() == {z: z, a: a, b: a}

    last = fed.send(anonymousId="anon-z", traits={"email": "ann@x.io"})  # a (with b) into z
    assert last.user == z

    merge = fed.entries()[-1].ops
    assert [op[0] for op in merge] == ["merge"]
    assert merge[0][1:3] == [a, z]
    assert merge[0][4] == [a, b]  # itself first, then those merged into it before
    assert fed.pointers() == {z: z, a: z, b: z}
    # The event stays on the profile it merged away (§11.4's event 4).
    assert fed.entries()[-1].segment_id == a


def test_traits_are_kept_against_the_canonical_profile(fed: Fed) -> None:
    a = fed.send(anonymousId="anon-a", traits={"email": "ann@x.io"}).user
    b = fed.send(anonymousId="anon-b").user
    assert a and b
    event = fed.space.event("identify", anonymousId="anon-b", traits={"email": "ann@x.io"})
    resolution = fed.space.resolve(event)
    # A store that still names the merged-away profile: the feed points it at the survivor.
    fed.record(event, resolution, [(b, {"plan": "pro", "city": None})])

    assert fed.entries()[-1].traits == [(a, {"plan": "pro", "city": None})]


@pytest.mark.parametrize("status", ["dropped", "unresolved", "duplicate"])
def test_events_without_a_user_profile_are_not_kept(fed: Fed, status: str) -> None:
    event = fed.space.event("track", anonymousId="anon")
    fed.record(event, Resolution("msg-x", status), [])  # type: ignore[arg-type]

    assert fed.entries() == []


def test_recording_the_same_message_twice_keeps_one_row(fed: Fed) -> None:
    event = fed.space.event("identify", anonymousId="anon-1")
    resolution = fed.space.resolve(event)
    fed.record(event, resolution, [])
    fed.record(event, resolution, [])

    assert len(fed.entries()) == 1
    assert len(fed.pointers()) == 1


def test_spaces_have_separate_outboxes_and_pointers(engine: Engine) -> None:
    one, two = Fed(engine, "spa_one"), Fed(engine, "spa_two")
    first = one.send(anonymousId="anon-1").user
    two.send(anonymousId="anon-1")  # same message id, other space

    assert [e.segment_id for e in one.entries()] == [first]
    assert len(two.entries()) == 1
    assert list(one.pointers()) == [first]


def test_pruning_waits_for_the_space_warehouse_position(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    warehouse = WarehouseStore(workspace).create("wh", "duckdb")
    spaces = SpaceStore(workspace)
    space = spaces.create("Main")
    fed = Fed(engine, space.id)
    for n in range(3):
        fed.send(anonymousId=f"anon-{n}")
    seqs = [e.seq for e in fed.entries()]

    with write_transaction(engine) as conn:  # Profiles Sync off: nothing needs the rows
        feed.advance(conn, space.id, warehouse.id, seqs[1], 0)
    assert len(fed.entries()) == 3

    spaces.update(space.id, profiles_sync=(warehouse.id, None))
    with write_transaction(engine) as conn:
        feed.advance(conn, space.id, warehouse.id, seqs[1], 0)
        assert feed.position(conn, space.id, warehouse.id) == seqs[1]
    assert [e.seq for e in fed.entries()] == seqs[2:]

    fed.send(anonymousId="anon-late")
    with engine.connect() as conn:
        later = feed.pending(conn, space.id, seqs[1], 10)
    assert later[-1].seq > seqs[2]  # a pruned seq is never given again
    with engine.connect() as conn:
        box = schema.unify_sync_outbox
        assert conn.execute(sa.select(sa.func.count()).select_from(box)).scalar_one() == 2


def test_deleting_a_space_or_its_warehouse_drops_their_feed_rows(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    warehouses = WarehouseStore(workspace)
    warehouse = warehouses.create("wh", "duckdb")
    spaces = SpaceStore(workspace)
    space = spaces.create("Main", profiles_sync=(warehouse.id, None))
    kept = spaces.create("Other")
    fed, other = Fed(engine, space.id), Fed(engine, kept.id)
    fed.send(anonymousId="anon-1")
    fed.send(anonymousId="anon-2")
    other.send(anonymousId="anon-1")
    with write_transaction(engine) as conn:
        feed.advance(conn, space.id, warehouse.id, fed.entries()[0].seq, 0)
        feed.advance(conn, kept.id, warehouse.id, 0, 0)

    warehouses.delete(warehouse.id)
    with engine.connect() as conn:
        positions = schema.unify_sync_positions
        assert conn.execute(sa.select(positions)).all() == []
    spaces.delete(space.id)

    assert fed.entries() == [] and fed.pointers() == {}
    assert len(other.entries()) == 1 and len(other.pointers()) == 1


def test_profiles_sync_refuses_a_data_lake(engine: Engine, tmp_path: Any) -> None:
    """A lake has no tables to materialize: the setting is refused with a 4xx-kind error
    rather than an outbox that no sync would ever load."""
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    lake = WarehouseStore(workspace).create(
        "lake", "data-lake", settings={"location": str(tmp_path / "lake")}
    )
    spaces = SpaceStore(workspace)

    with pytest.raises(InvalidError) as refused:
        spaces.create("Main", profiles_sync=(lake.id, None))

    assert refused.value.field == "profiles_sync.warehouse"
    assert "DuckDB or PostgreSQL" in refused.value.message
    assert spaces.list() == []


def test_record_many_keeps_what_record_one_by_one_keeps(engine: Engine) -> None:
    """A run recorded at once (profiles made and merged within it, a message twice) gives
    the same outbox and pointers as the events recorded one by one."""
    one, many = Fed(engine, "spa_one"), Fed(engine, "spa_many")
    resolved: list[Resolved] = []
    runs: list[dict[str, Any]] = [
        {"anonymousId": "anon-z"},
        {"anonymousId": "anon-a", "traits": {"email": "ann@x.io"}},
        {"anonymousId": "anon-b"},
        {"anonymousId": "anon-b", "traits": {"email": "ann@x.io", "plan": "pro"}},  # b into a
        {"anonymousId": "anon-z", "traits": {"email": "ann@x.io"}},  # a (with b) into z
    ]
    for fields in runs:
        event = one.space.event("identify", **fields)
        resolution = one.space.resolve(event)
        traits: dict[str, Any] = fields.get("traits", {})
        told = [(resolution.user, traits)] if resolution.user else []
        resolved.append(Resolved("src", event, resolution, told))
    for item in resolved:
        one.record(dict(item.event), item.resolution, [(s, dict(t)) for s, t in item.traits])

    with write_transaction(engine) as conn:
        many.feed.record_many(conn, many.space_id, [*resolved, resolved[1]])
        many.feed.record_many(conn, many.space_id, resolved[3:])  # already there

    def shape(entries: list[feed.OutboxEntry]) -> list[tuple[Any, ...]]:
        return [(e.message_id, e.segment_id, e.ops, e.traits) for e in entries]

    assert shape(many.entries()) == shape(one.entries())
    assert many.pointers() == one.pointers()
    assert len(set(one.pointers().values())) == 1  # everything ends on z


def test_group_calls_keep_the_account_link_once_and_account_traits_by_group_id(fed: Fed) -> None:
    """A Group call's first link of the user to the account is a ``link`` change naming the
    ``group_id``; the account's traits go to ``accounts`` (not to the user's traits); a
    second Group call links nothing again."""
    first = fed.space.event("group", userId="u1", groupId="acme", traits={"plan": "pro"})
    made = fed.space.resolve(first)
    assert made.user and made.account
    fed.record(first, made, [(made.account, {"plan": "pro"}), (made.user, {"x": 1})])
    again = fed.space.event("group", userId="u1", groupId="acme", traits={"plan": None})
    second = fed.space.resolve(again)
    fed.record(again, second, [(made.account, {"plan": None})])

    one, two = fed.entries()
    assert [op for op in one.ops if op[0] == "link"] == [["link", made.user, "acme", one.timestamp]]
    assert one.accounts == [("acme", {"plan": "pro"})]
    assert one.traits == [(made.user, {"x": 1})]  # the account profile has no user traits
    assert [op[0] for op in two.ops] == []  # linked already
    assert two.accounts == [("acme", {"plan": None})] and two.traits == []
    assert made.account not in fed.pointers()  # accounts have no profile pointers


def test_a_link_names_the_resolved_profile_after_the_event_merges(fed: Fed) -> None:
    """An anonymous visitor's Group call links its profile; when an identified call merges
    it, the outbox says so (the warehouse moves the link) and a later link names the
    survivor."""
    visitor = fed.send("group", anonymousId="anon-v", groupId="acme").user
    known = fed.send("identify", userId="u1").user
    survivor = fed.send("identify", userId="u1", anonymousId="anon-v").user
    assert visitor and known and visitor != known and survivor in (visitor, known)
    gone = known if survivor == visitor else visitor
    fed.send("group", userId="u1", groupId="beta")
    entries = fed.entries()
    assert [op[:3] for op in entries[0].ops if op[0] == "link"] == [["link", visitor, "acme"]]
    assert [op[:3] for op in entries[2].ops if op[0] == "merge"] == [["merge", gone, survivor]]
    assert [op[:3] for op in entries[3].ops if op[0] == "link"] == [["link", survivor, "beta"]]


def test_record_many_names_the_accounts_of_the_events_identifiers(engine: Engine) -> None:
    """Given the event's identifiers (the stage's, blocked values left out), the accounts
    are their ``group_id`` values, not the call's ``groupId``."""
    event = Space().event("group", userId="u1", groupId="acme", traits={"plan": "pro"})
    found = extract(event, IdentitySettings()).identifiers
    assert {(i.collection, i.type) for i in found} == {
        ("users", "user_id"),
        ("accounts", "group_id"),
    }
    unblocked = tuple(i for i in found if i.type != "group_id")  # as if acme were blocked
    for space_id, given in (("spa_all", found), ("spa_blocked", unblocked)):
        fed = Fed(engine, space_id)
        resolution = fed.space.resolve(dict(event))
        assert resolution.user and resolution.account
        told = [(resolution.account, {"plan": "pro"})]
        with write_transaction(engine) as conn:
            fed.feed.record_many(conn, space_id, [Resolved("src", event, resolution, told, given)])
        (entry,) = fed.entries()
        links = [op[:3] for op in entry.ops if op[0] == "link"]
        if given is found:
            assert links == [["link", resolution.user, "acme"]]
            assert entry.accounts == [("acme", {"plan": "pro"})]
        else:
            assert links == [] and entry.accounts == []
        assert entry.traits == []
