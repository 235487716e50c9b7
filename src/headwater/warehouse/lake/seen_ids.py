"""The data lake's memory of written messageIds, for Segment's 7-day dedupe.

Data Lakes drop a messageId seen in the last 7 days. A ``SeenIds`` store remembers the
``receivedAt`` of each written messageId; the writer drops a copy received less than 7 days
from it. Ids are remembered only once their partition is written, so a run that failed half
way can be given the same events again: what was written is skipped, what failed is written.
The store is a three-call protocol (lookup, remember, expire) shaped like a state-database
table; ``SqliteSeenIds`` (a file) backs it until the sync keeps it there, ``MemorySeenIds``
serves tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

DEDUPE_WINDOW: Final = timedelta(days=7)


class SeenIds(Protocol):
    """The messageIds a source has written, with the ``receivedAt`` of the written copy.

    Three calls, so that a state-database table ``(source_id, message_id, received_at)`` with
    a primary key on the first two can stand behind it as well as SQLite does here.
    """

    def lookup(self, source_id: str, message_ids: Collection[str]) -> dict[str, datetime]: ...

    def remember(self, source_id: str, entries: Mapping[str, datetime]) -> None:
        """Record (or replace) each id's time: the copy just written is the one to compare
        later copies with."""
        ...

    def expire(self, before: datetime) -> int:
        """Forget ids received before ``before``; how many went."""
        ...


class MemorySeenIds:
    """For tests and one-off exports: forgets everything when the process ends."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], datetime] = {}

    def lookup(self, source_id: str, message_ids: Collection[str]) -> dict[str, datetime]:
        found = {}
        for message_id in message_ids:
            at = self._ids.get((source_id, message_id))
            if at is not None:
                found[message_id] = at
        return found

    def remember(self, source_id: str, entries: Mapping[str, datetime]) -> None:
        for message_id, at in entries.items():
            self._ids[(source_id, message_id)] = at

    def expire(self, before: datetime) -> int:
        old = [key for key, at in self._ids.items() if at < before]
        for key in old:
            del self._ids[key]
        return len(old)


class SqliteSeenIds:
    """A SQLite file: survives restarts, holds a week of ids of every source on disk rather
    than in memory, and has the table shape the state database will take over."""

    _CHUNK = 500  # ids per IN (...) query, under SQLite's variable limit

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS lake_seen_ids (source_id TEXT NOT NULL, "
            "message_id TEXT NOT NULL, received_us INTEGER NOT NULL, "
            "PRIMARY KEY (source_id, message_id)) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS lake_seen_ids_received ON lake_seen_ids (received_us)"
        )

    def lookup(self, source_id: str, message_ids: Collection[str]) -> dict[str, datetime]:
        ids = list(message_ids)
        found: dict[str, datetime] = {}
        for start in range(0, len(ids), self._CHUNK):
            chunk = ids[start : start + self._CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT message_id, received_us FROM lake_seen_ids WHERE source_id = ? "
                f"AND message_id IN ({marks})",
                [source_id, *chunk],
            )
            for message_id, micros in rows:
                found[message_id] = _from_micros(micros)
        return found

    def remember(self, source_id: str, entries: Mapping[str, datetime]) -> None:
        with self._db:  # one transaction: a partition's ids are remembered together or not
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO lake_seen_ids (source_id, message_id, received_us) VALUES (?, ?, ?) "
                "ON CONFLICT (source_id, message_id) DO UPDATE SET "
                "received_us = excluded.received_us",
                [(source_id, message_id, _micros(at)) for message_id, at in entries.items()],
            )

    def expire(self, before: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM lake_seen_ids WHERE received_us < ?", [_micros(before)]
        )
        return cursor.rowcount

    def close(self) -> None:
        self._db.close()


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
