"""Monthly tracked users per source, counted on what goes into the processed stream.

Segment's rule (spec §23.2, `guides/usage-and-billing/mtus-and-throughput`): an MTU is a
distinct `userId`, or a distinct `anonymousId` never associated with a `userId` in the billing
month — a visitor who logs in counts once. The stage runs last in the chain, so what Protocols
blocked is not counted and what it forwarded counts in the target source (A-TP-1, A-SC-1;
10,000 forwarded violations share the user `schema-violations`: one MTU, A-VF-3).

Exact, not estimated: each identity is kept once per source and month as a 63-bit hash
(`mtu_identities`), of three kinds: a userId ("u"), an anonymousId seen alone ("a"), an
anonymousId seen with a userId ("x"); the count is |u| + |a − x|. The stage keeps the month's
hashes of the sources it has seen in memory, so a known identity costs a hash and a set probe
and only new ones are written, in the chain's transaction.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.record import LogRecord

logger = logging.getLogger(__name__)

USER, ANONYMOUS, ASSOCIATED = "u", "a", "x"
KINDS = (USER, ANONYMOUS, ASSOCIATED)
RETENTION_MONTHS = 13


class _Ids(msgspec.Struct):
    userId: Any = None
    anonymousId: Any = None


_ids = msgspec.json.Decoder(_Ids).decode


def identity(value: str) -> int:
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


Sets = dict[str, set[int]]


class MtuStage:
    name = "mtu"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._known: dict[tuple[str, str], Sets] = {}  # (source, month) → kind → hashes
        self._pending: dict[tuple[str, str], Sets] = {}

    def acquire(self, partition: int) -> None:
        """Identities are loaded per source and month when first seen."""

    def release(self, partition: int) -> None:
        self._known = {}  # another process may add to them now

    def process(self, partition: int, records: list[LogRecord]) -> None:
        for record in records:
            if not record.events:
                continue
            slot = (record.source_id, record.received_at[:7])
            known = self._known.get(slot)
            if known is None:
                known = self._known[slot] = self._load(*slot)
            pending = self._pending.get(slot)
            if pending is None:
                pending = self._pending[slot] = {kind: set() for kind in KINDS}
            users, anonymous, associated = known[USER], known[ANONYMOUS], known[ASSOCIATED]
            for raw in record.events:
                try:
                    ids = _ids(raw)
                except msgspec.DecodeError:
                    continue
                user, anon = ids.userId, ids.anonymousId
                if type(user) is str and user:
                    key = identity(user)
                    if key not in users:
                        pending[USER].add(key)
                    if type(anon) is str and anon:
                        key = identity(anon)
                        if key not in associated:
                            pending[ASSOCIATED].add(key)
                elif type(anon) is str and anon:
                    key = identity(anon)
                    if key not in anonymous:
                        pending[ANONYMOUS].add(key)

    def commit_in(self, conn: Connection) -> None:
        rows = [
            {"source_id": source_id, "month": month, "kind": kind, "identity": key}
            for (source_id, month), sets in self._pending.items()
            for kind, keys in sets.items()
            for key in keys
        ]
        if rows:
            conn.execute(_insert_new(conn.dialect.name), rows)

    def committed(self) -> None:
        for slot, sets in self._pending.items():
            known = self._known.get(slot)
            if known is not None:
                for kind, keys in sets.items():
                    known[kind] |= keys
        self._pending = {}

    def abandoned(self) -> None:
        self._pending = {}

    def _load(self, source_id: str, month: str) -> Sets:
        t = schema.mtu_identities
        sets: Sets = {kind: set() for kind in KINDS}
        with self._engine.connect() as conn:
            for kind, key in conn.execute(
                sa.select(t.c.kind, t.c.identity).where(
                    t.c.source_id == source_id, t.c.month == month
                )
            ):
                sets[kind].add(int(key))
        return sets


def _insert_new(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(schema.mtu_identities).on_conflict_do_nothing()
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(schema.mtu_identities).on_conflict_do_nothing()


class MtuStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def count(self, source_id: str, month: str) -> dict[str, Any]:
        """A source's MTUs in ``month`` (YYYY-MM): userIds, and anonymousIds never seen with one."""
        t = schema.mtu_identities
        x = t.alias("x")
        scope = (t.c.source_id == source_id, t.c.month == month)
        associated = sa.exists().where(
            x.c.source_id == source_id,
            x.c.month == month,
            x.c.kind == ASSOCIATED,
            x.c.identity == t.c.identity,
        )
        with self._engine.connect() as conn:
            users = conn.execute(
                sa.select(sa.func.count()).where(*scope, t.c.kind == USER)
            ).scalar_one()
            anonymous = conn.execute(
                sa.select(sa.func.count()).where(*scope, t.c.kind == ANONYMOUS, ~associated)
            ).scalar_one()
        return {
            "sourceId": source_id,
            "month": month,
            "mtu": int(users) + int(anonymous),
            "userIds": int(users),
            "anonymousIds": int(anonymous),
        }

    def purge(self) -> int:
        """Forget months older than the retention; the rows deleted."""
        now = time.gmtime(self._clock())
        index = now.tm_year * 12 + now.tm_mon - 1 - RETENTION_MONTHS
        oldest = f"{index // 12:04d}-{index % 12 + 1:02d}"
        t = schema.mtu_identities
        with write_transaction(self._engine) as conn:
            return conn.execute(sa.delete(t).where(t.c.month < oldest)).rowcount or 0
