"""Deduplication on ``messageId`` per workspace (Segment: at least 24 hours of ids).

A message's identity is a 63-bit hash of (workspace id, messageId). Storing the hash instead
of the string keeps the index small and its inserts fast (an integer primary key). Two
different ids colliding needs ~3·10⁹ ids inside one window before the chance reaches 50 %;
at 10⁸ ids a window the chance of any collision is about 0.05 %, and a collision drops one
message as a duplicate. That is well inside Segment's own "99 % deduplicated" promise.

Keys are claimed inside the caller's transaction (the group commit that also appends to the
event log), so a message is marked as seen exactly when it is committed. On PostgreSQL several
ingest processes claim at once, so the claim is ``INSERT … ON CONFLICT DO NOTHING RETURNING``.
On SQLite the caller already holds the only write lock, so a lookup and a plain insert of the
new keys is just as exact and skips the per-row statement machinery on the hot path.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from headwater.store.database import write_transaction
from headwater.store.schema import dedup

_SQLITE_CHUNK = 30_000  # SQLite allows 32,766 parameters a statement


def dedup_key(workspace_id: str, message_id: str) -> int:
    digest = hashlib.blake2b(f"{workspace_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Deduplicator:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._claim = postgresql.insert(dedup).on_conflict_do_nothing().returning(dedup.c.key)

    def claim_in(self, conn: Connection, keys: Iterable[int], now: int | None = None) -> set[int]:
        """Record the keys as seen; return those that were not seen before."""
        seen_at = int(now if now is not None else time.time())
        if self._sqlite:
            return self._claim_sqlite(conn, list(dict.fromkeys(keys)), seen_at)
        params = [{"key": key, "seen_at": seen_at} for key in keys]
        if not params:
            return set()
        return set(conn.execute(self._claim, params).scalars())

    @staticmethod
    def _claim_sqlite(conn: Connection, keys: list[int], seen_at: int) -> set[int]:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            seen: set[int] = set()
            for i in range(0, len(keys), _SQLITE_CHUNK):
                chunk = keys[i : i + _SQLITE_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"SELECT key FROM dedup WHERE key IN ({marks})", chunk)
                seen.update(row[0] for row in cursor.fetchall())
            fresh = [key for key in keys if key not in seen]
            cursor.executemany(
                "INSERT INTO dedup (key, seen_at) VALUES (?, ?)", [(key, seen_at) for key in fresh]
            )
        finally:
            cursor.close()
        return set(fresh)

    def expire(self, older_than: int) -> int:
        """Forget keys first seen before ``older_than`` (epoch seconds)."""
        with write_transaction(self._engine) as conn:
            result = conn.execute(sa.delete(dedup).where(dedup.c.seen_at < older_than))
            return result.rowcount or 0
