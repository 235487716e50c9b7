"""Monthly tracked users per source, counted on what goes into the processed stream.

Segment's rule (spec §23.2, `guides/usage-and-billing/mtus-and-throughput`): an MTU is a
distinct `userId`, or a distinct `anonymousId` never associated with a `userId` in the billing
month — a visitor who logs in counts once. The stage runs last in the chain, so what Protocols
blocked is not counted and what it forwarded counts in the target source (A-TP-1, A-SC-1;
10,000 forwarded violations share the user `schema-violations`: one MTU, A-VF-3).

Exact, not estimated: each identity is kept per source and month as a 63-bit hash, of three
kinds: a userId ("u"), an anonymousId seen alone ("a"), an anonymousId seen with a userId
("x"); the count is |u| + |a − x|. The stage keeps the month's hashes of the sources it has
seen in memory (and the strings of those it met again, so a returning user costs a set probe,
not a hash), and writes only a pass's new ones, packed, in the chain's transaction.
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
from headwater.store.dedup import pack, unpack
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
# Identities per kind, as strings: those known committed (probed before hashing, the common
# case of a returning user) and a pass's new ones with their hashes.
Strings = dict[str, set[str]]
Pending = dict[str, dict[str, int]]
SEEN_STRINGS = 1_000_000  # per source and month; past it, known identities are hashed again


class MtuStage:
    name = "mtu"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._known: dict[tuple[str, str], Sets] = {}  # (source, month) → kind → hashes
        self._seen: dict[tuple[str, str], Strings] = {}
        self._pending: dict[tuple[str, str], Pending] = {}

    def acquire(self, partition: int) -> None:
        """Identities are loaded per source and month when first seen."""

    def release(self, partition: int) -> None:
        self._known = {}  # another process may add to them now
        self._seen = {}

    def process(self, partition: int, records: list[LogRecord]) -> None:
        for record in records:
            if not record.events:
                continue
            slot = (record.source_id, record.received_at[:7])
            known = self._known.get(slot)
            if known is None:
                known = self._known[slot] = self._load(*slot)
                self._seen[slot] = {kind: set() for kind in KINDS}
            seen = self._seen[slot]
            pending = self._pending.get(slot)
            if pending is None:
                pending = self._pending[slot] = {kind: {} for kind in KINDS}
            for raw in record.events:
                try:
                    ids = _ids(raw)
                except msgspec.DecodeError:
                    continue
                user, anon = ids.userId, ids.anonymousId
                if type(user) is str and user:
                    _note(user, known[USER], seen[USER], pending[USER])
                    if type(anon) is str and anon:
                        _note(anon, known[ASSOCIATED], seen[ASSOCIATED], pending[ASSOCIATED])
                elif type(anon) is str and anon:
                    _note(anon, known[ANONYMOUS], seen[ANONYMOUS], pending[ANONYMOUS])

    def commit_in(self, conn: Connection) -> None:
        rows = [
            {"source_id": source_id, "month": month, "kind": kind, "packed": pack(keys.values())}
            for (source_id, month), sets in self._pending.items()
            for kind, keys in sets.items()
            if keys
        ]
        if rows:
            conn.execute(schema.mtu_identities.insert(), rows)

    def committed(self) -> None:
        for slot, sets in self._pending.items():
            known, seen = self._known.get(slot), self._seen.get(slot)
            if known is None or seen is None:
                continue
            for kind, keys in sets.items():
                known[kind].update(keys.values())
                strings = seen[kind]
                if len(strings) + len(keys) > SEEN_STRINGS:
                    strings.clear()
                strings.update(keys)
        self._pending = {}

    def abandoned(self) -> None:
        self._pending = {}

    def _load(self, source_id: str, month: str) -> Sets:
        with self._engine.connect() as conn:
            return load(conn, source_id, month)


def load(conn: Connection, source_id: str, month: str) -> Sets:
    """A source's identities of ``month``, by kind."""
    t = schema.mtu_identities
    sets: Sets = {kind: set() for kind in KINDS}
    query = sa.select(t.c.kind, t.c.packed).where(t.c.source_id == source_id, t.c.month == month)
    for kind, blob in conn.execute(query):
        sets[kind].update(unpack(bytes(blob)))
    return sets


def _note(value: str, known: set[int], seen: set[str], pending: dict[str, int]) -> None:
    """Add ``value`` to the pass's new identities unless it is known."""
    if value in seen or value in pending:
        return
    key = identity(value)
    if key not in known:
        pending[value] = key
    elif len(seen) < SEEN_STRINGS:
        seen.add(value)


class MtuStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def count(self, source_id: str, month: str) -> dict[str, Any]:
        """A source's MTUs in ``month`` (YYYY-MM): userIds, and anonymousIds never seen with one."""
        with self._engine.connect() as conn:
            sets = load(conn, source_id, month)
        users = len(sets[USER])
        anonymous = len(sets[ANONYMOUS] - sets[ASSOCIATED])
        return {
            "sourceId": source_id,
            "month": month,
            "mtu": users + anonymous,
            "userIds": users,
            "anonymousIds": anonymous,
        }

    def purge(self) -> int:
        """Forget months older than the retention; the rows deleted."""
        now = time.gmtime(self._clock())
        index = now.tm_year * 12 + now.tm_mon - 1 - RETENTION_MONTHS
        oldest = f"{index // 12:04d}-{index % 12 + 1:02d}"
        t = schema.mtu_identities
        with write_transaction(self._engine) as conn:
            return conn.execute(sa.delete(t).where(t.c.month < oldest)).rowcount or 0
