"""Erasing a subject's profiles (issue 16, §10.3): the graph expands the subject to every
identifier its profiles hold, and the ``profiles`` eraser deletes them with their traits,
timeline, Profiles Sync and Insights rows, subscription states and Engage state (real-time
values, audience memberships, undelivered messages, batch results, SQL trait values, journey
instances), through the real identity stage and Engage stage, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.engage.erasure import profiles_eraser
from headwater.privacy.erasure import Erasure, Subjects, Target
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.unify.erasure import GraphExpander
from headwater.unify.profile_api import ProfileAPI
from headwater.unify.settings import IdentifierSetting, IdentitySettings
from headwater.unify.spaces import SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.warehouse.store import WarehouseStore
from tests.engage.journey_world import DAY, HOOK, HOUR, MINUTE, World
from tests.support.clock import Clock

TOKEN = "profile-token-0123456789"
MARK = "q7zk"  # in every identifier of u2, and nowhere else
U2, A2, E2 = f"u2-{MARK}", f"a2-{MARK}", f"u2-{MARK}@example.com"
U3, A3, E3 = "u3-plain", "a3-plain", "u3-plain@example.com"
PHONES = {U2: "+1 555 000 2222", U3: "+1 555 000 3333"}
U2_PHONE = ("000 2222", "5550002222")  # as sent, as a contact key
PHONE = IdentitySettings().with_identifier(IdentifierSetting(type="phone"))

# Every table that holds a profile, an identifier or a message about one.
TABLES = (
    schema.unify_profiles,
    schema.unify_identities,
    schema.unify_links,
    schema.unify_merges,
    schema.unify_profile_traits,
    schema.unify_profile_events,
    schema.unify_profile_metadata,
    schema.unify_profile_consent,
    schema.unify_sync_outbox,
    schema.unify_sync_profiles,
    schema.unify_insights,
    schema.unify_subscriptions,
    schema.unify_group_subscriptions,
    schema.unify_upload_errors,
    schema.engage_profiles,
    schema.engage_batch_staged,
    schema.engage_outbox,
    schema.engage_sql_trait_values,
    schema.engage_journey_members,
    schema.engage_journey_log,
)


class Privacy(World):
    """The journeys' world with two spaces on source ``web`` (``main`` with Profiles Sync,
    an audience, a computed trait and a journey; ``other`` with nothing else), a Profile API
    token, and u2 and u3 with a profile each in both."""

    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        super().__init__(engine, tmp_path, clock)
        spaces = SpaceStore(self.computations._ws)
        warehouse = WarehouseStore(self.computations._ws).create("wh", "duckdb")
        spaces.update(self.space.id, profiles_sync=(warehouse.id, None), identity=PHONE)
        self.other = spaces.create("other", sources=["web"])
        spaces.create_access_token("main", "site", TOKEN)
        self.spaces = spaces
        hook = [{"name": HOOK, "send_track": True, "send_identify": True}]
        self.computations.create(
            "main", "audience", "Buyers", "event('Bought').count() >= 1", destinations=hook
        )
        self.trait = self.computations.create(
            "main", "trait", "Purchases", "event('Bought').count()", destinations=hook
        )
        self.journeys_made = self.journey(
            "Welcome",
            {
                "entry": {"audience": "buyers"},
                "steps": [{"name": "Wait a week", "delay": {"days": 7}}],
            },
        )
        self.send(event="Warm Up", userId="nobody")  # the vectors start here (``since``)
        self.later(MINUTE)

    def person(self, user: str, anonymous: str, email: str) -> None:
        """A user seen first by userId, then anonymously, then both (a merge), with an email,
        a subscription state and a purchase."""
        self.send("identify", userId=user, traits={"plan": "pro"})
        self.send("page", anonymousId=anonymous, name="Home")
        self.send(
            "identify",
            userId=user,
            anonymousId=anonymous,
            traits={"email": email, "phone": PHONES[user]},
            context={
                "messaging_subscriptions": [
                    {"key": email, "type": "EMAIL", "status": "SUBSCRIBED"},
                    {"key": PHONES[user], "type": "SMS", "status": "SUBSCRIBED"},
                ],
                "consent": {"categoryPreferences": {"Advertising": True}},
            },
        )
        self.send(event="Bought", userId=user, properties={"total": 10})

    def ids_of(self, space_id: str, user: str) -> set[str]:
        """The profile a user id is on and every profile merged into it."""
        prof = schema.unify_profiles
        with self.engine.connect() as conn:
            found = SqlGraph(self.engine, space_id, cache_size=0).find("users", "user_id", user)
            assert found is not None
            seq = conn.execute(
                sa.select(prof.c.seq).where(prof.c.space_id == space_id, prof.c.segment_id == found)
            ).scalar_one()
            return set(
                conn.execute(
                    sa.select(prof.c.segment_id).where(
                        sa.or_(prof.c.seq == seq, prof.c.canonical == seq)
                    )
                ).scalars()
            )

    def seqs(self, profile_ids: set[str]) -> set[int]:
        prof = schema.unify_profiles
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(prof.c.seq).where(prof.c.segment_id.in_(profile_ids))
                ).scalars()
            )

    def by_seq(self, seqs: set[int]) -> dict[str, int]:
        """The rows of the graph's seq-keyed tables that point at these profiles."""
        found: dict[str, int] = {}
        for table, columns in (
            (schema.unify_identities, ("profile",)),
            (schema.unify_merges, ("from_profile", "into_profile")),
            (schema.unify_links, ("user_profile", "account_profile")),
        ):
            where = sa.or_(*(table.c[c].in_(seqs) for c in columns))
            with self.engine.connect() as conn:
                found[table.name] = conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(where)
                ).scalar_one()
        return found

    def contacts(self) -> set[tuple[str, str]]:
        """The contact vectors with a subscription state in ``main``."""
        subs = schema.unify_subscriptions
        with self.engine.connect() as conn:
            return {
                (r.channel, r.key)
                for r in conn.execute(
                    sa.select(subs.c.channel, subs.c.key).where(subs.c.space_id == self.space.id)
                )
            }

    def rows(self, table: sa.Table) -> list[str]:
        """Every row of a table as text (JSON, MessagePack and bytes decoded)."""
        with self.engine.connect() as conn:
            return [_text(row) for row in conn.execute(sa.select(table)).all()]

    def profile_api(self, user: str) -> int:
        app = ProfileAPI(
            self.spaces,
            self.engine,
            lambda space: SqlGraph(self.engine, space.id, cache_size=0),
            clock=Clock(0.0),
            wall_clock=self.clock,
        )

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.get(
                    f"/v1/spaces/{self.space.id}/collections/users/profiles/user_id:{user}/traits",
                    auth=(TOKEN, ""),
                )

        return asyncio.run(send()).status_code

    def erasure(self, subjects: Subjects, source_ids: frozenset[str] | None = None) -> Erasure:
        return Erasure("reg-1", self.workspace_id, subjects, self.clock(), source_ids)


def _text(row: Any) -> str:
    parts: list[str] = []
    for value in row:
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                parts.append(json.dumps(msgspec.msgpack.decode(raw)))
            except msgspec.DecodeError:
                parts.append(raw.decode("utf-8", "replace"))
        else:
            parts.append(json.dumps(value, default=str))
    return " ".join(parts)


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> Privacy:
    w = Privacy(engine, tmp_path, clock)
    w.person(U2, A2, E2)
    w.person(U3, A3, E3)
    trait_id = "tra_sqltrait000000000000"
    with write_transaction(engine) as conn:
        # A SQL trait's last values (its runs need a warehouse: the rows are what one leaves)
        # and a subscription CSV's error report naming both users.
        conn.execute(
            schema.engage_sql_traits.insert(),
            [
                {
                    "id": trait_id,
                    "space_id": w.space.id,
                    "key": "ltv",
                    "name": "LTV",
                    "warehouse_id": "wh",
                    "query": "select 1",
                    "level": "users",
                    "every_hours": 24,
                    "status": "success",
                    "created_at": 0,
                    "updated_at": 0,
                }
            ],
        )
        conn.execute(
            schema.engage_sql_trait_values.insert(),
            [
                {"trait_id": trait_id, "id_type": "user_id", "id_value": u, "row": '{"traits":{}}'}
                for u in (U2, U3)
            ]
            + [
                {
                    "trait_id": trait_id,
                    "id_type": "email",
                    "id_value": E2,
                    "row": '{"traits":{"ltv":5}}',
                }
            ],
        )
        conn.execute(
            schema.unify_upload_errors.insert(),
            [
                {
                    "upload_id": "upl_0000000000000000000001",
                    "row_number": n,
                    "space_id": w.space.id,
                    "code": "INVALID_STATUS",
                    "message": "bad status",
                    "cells": [email, "maybe"],
                }
                for n, email in ((1, E2), (2, E3))
            ],
        )
        # A batch run's results, staged for the identity pass (not run yet).
        conn.execute(
            schema.engage_batch_staged.insert(),
            [
                {
                    "space_id": w.space.id,
                    "profile_id": w.profile(user),
                    "kind": "value",
                    "target": w.trait.id,
                    "body": msgspec.msgpack.encode(7),
                }
                for user in (U2, U3)
            ],
        )
    return w


def _subjects(world: Privacy) -> Subjects:
    return GraphExpander(world.engine).expand(world.erasure(Subjects(user_ids=frozenset({U2}))))


def test_the_expander_finds_every_identifier_on_the_subjects_profiles_in_every_space(
    world: Privacy,
) -> None:
    w = world
    main, other = w.ids_of(w.space.id, U2), w.ids_of(w.other.id, U2)
    assert len(main) == 2 and len(other) == 2  # each space merged two profiles of u2
    subjects = _subjects(w)
    assert subjects.user_ids == {U2}
    assert subjects.anonymous_ids == {A2}
    # Phone is an identifier in ``main`` only; u3's identifiers are not there.
    assert subjects.external_ids == {("email", E2), ("phone", PHONES[U2])}
    assert subjects.profile_ids == main | other  # the merged-away ids too
    # Known by its anonymous id alone, the subject widens to the same identifiers.
    by_anonymous = GraphExpander(w.engine).expand(
        w.erasure(Subjects(anonymous_ids=frozenset({A2})))
    )
    assert by_anonymous == subjects
    # A source's regulation is no profile's: it is not widened.
    scoped = w.erasure(Subjects(user_ids=frozenset({U2})), frozenset({w.web}))
    assert GraphExpander(w.engine).expand(scoped) == scoped.subjects


def test_erasing_deletes_every_row_of_the_subjects_profiles_and_keeps_everyone_elses(
    world: Privacy,
) -> None:
    w = world
    old = w.ids_of(w.space.id, U2) | w.ids_of(w.other.id, U2)
    u3_ids = w.ids_of(w.space.id, U3)
    before = {t.name: w.rows(t) for t in TABLES}
    for name in (
        "unify_profiles",
        "unify_identities",
        "unify_profile_traits",
        "unify_profile_events",
        "unify_profile_metadata",
        "unify_profile_consent",
        "unify_sync_outbox",
        "unify_sync_profiles",
        "unify_insights",
        "unify_subscriptions",
        "unify_upload_errors",
        "engage_profiles",
        "engage_batch_staged",
        "engage_outbox",
        "engage_sql_trait_values",
        "engage_journey_members",
        "engage_journey_log",
    ):  # the world put both users in each of these
        rows = before[name]
        assert any(MARK in r or any(p in r for p in old) for r in rows), name
        assert any(U3 in r or E3 in r or any(p in r for p in u3_ids) for r in rows), name
    old_seqs, u3_seqs = w.seqs(old), w.seqs(u3_ids)
    assert w.by_seq(old_seqs)["unify_merges"] == 2  # one merge in each space
    assert w.by_seq(u3_seqs)["unify_merges"] == 1 and w.by_seq(old_seqs)["unify_identities"] > 0
    u3_graph, old_graph = w.by_seq(u3_seqs), w.by_seq(old_seqs)
    assert w.contacts() == {
        ("EMAIL", E2.lower()),
        ("EMAIL", E3),
        ("SMS", "+15550002222"),
        ("SMS", "+15550003333"),
    }
    assert w.profile_api(U2) == 200
    eraser = profiles_eraser(w.engine)
    assert eraser.target == Target("internal", "profiles", "Profiles and Engage")

    assert eraser.erase(w.erasure(_subjects(w))) is None

    for table in TABLES:
        for row in w.rows(table):
            assert MARK not in row, (table.name, row)
            assert not any(m in row for m in U2_PHONE), (table.name, row)
            assert not any(p in row for p in old), (table.name, row)
    after = {t.name: w.rows(t) for t in TABLES}
    for name, rows in before.items():  # everything u3's or nobody's is still there
        if name in old_graph:  # rows naming profiles by seq: counted below
            assert len(after[name]) == len(rows) - old_graph[name], name
            continue
        kept = [
            r
            for r in rows
            if MARK not in r and not any(m in r for m in U2_PHONE) and not any(p in r for p in old)
        ]
        assert after[name] == kept, name
    assert w.ids_of(w.space.id, U3) == u3_ids
    assert w.by_seq(old_seqs) == {"unify_identities": 0, "unify_merges": 0, "unify_links": 0}
    assert w.by_seq(u3_seqs) == u3_graph
    assert w.contacts() == {("EMAIL", E3), ("SMS", "+15550003333")}
    assert w.profile_api(U2) == 404
    assert w.profile_api(U3) == 200
    # Idempotent: a second run (the runner repeats after a crash) finds nothing and is done.
    assert eraser.erase(w.erasure(_subjects(w))) is None
    assert {t.name: w.rows(t) for t in TABLES} == after


def test_after_erasure_the_stage_makes_a_new_profile_and_sends_no_exit(world: Privacy) -> None:
    w = world
    old = w.ids_of(w.space.id, U2) | w.ids_of(w.other.id, U2)
    w.messages(journeys_only=False)  # what the world's events queued so far
    profiles_eraser(w.engine).erase(w.erasure(_subjects(w)))
    w.later(8 * DAY)  # the journey's delay and every window pass: no exit of u2 is made
    assert not [m for m in w.messages(journeys_only=False) if MARK in json.dumps(m)]

    w.send(event="Bought", userId=U2)  # the same user again: a new profile, not the cache's
    new = w.ids_of(w.space.id, U2)
    assert len(new) == 1 and not new & old
    assert w.traits(U2)["purchases"] == 1  # counted afresh: nothing of the old state
    entered = [m for m in w.messages(journeys_only=False) if m.get("userId") == U2]
    assert any(m.get("event") == "Audience Entered" for m in entered), entered
    for table in TABLES:
        for row in w.rows(table):
            assert not any(p in row for p in old), (table.name, row)


def test_a_batch_result_staged_for_an_erased_profile_is_dropped(world: Privacy) -> None:
    w = world
    gone = w.profile(U2)
    profiles_eraser(w.engine).erase(w.erasure(_subjects(w)))
    # A batch run that read the warehouse before the erasure stages u2's value after it.
    with write_transaction(w.engine) as conn:
        conn.execute(
            schema.engage_batch_staged.insert(),
            [
                {
                    "space_id": w.space.id,
                    "profile_id": gone,
                    "kind": "value",
                    "target": w.trait.id,
                    "body": msgspec.msgpack.encode(7),
                }
            ],
        )
    w.later(HOUR)
    for name in ("engage_batch_staged", "engage_profiles", "unify_profile_traits"):
        assert not [r for r in w.rows(getattr(schema, name)) if gone in r], name
    assert not [m for m in w.messages(journeys_only=False) if MARK in json.dumps(m)]


def test_a_source_scoped_erasure_leaves_profiles_alone(world: Privacy) -> None:
    w = world
    before = {t.name: w.rows(t) for t in TABLES}
    scoped = w.erasure(Subjects(user_ids=frozenset({U2})), frozenset({w.web}))
    assert profiles_eraser(w.engine).erase(scoped) is None
    assert {t.name: w.rows(t) for t in TABLES} == before
    assert w.profile_api(U2) == 200
