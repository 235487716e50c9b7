"""The ingest log on SQLite: numbered segment files that only appenders write.

``<data dir>/log/000001.db``, ``000002.db``, … each hold ``records(offset, appended_at,
payload)``. Offsets are global and dense: a segment's first offset follows its predecessor's
last. Appenders (the Tracking API's group commit, the internal append path, from any process)
are the only writers; the stage chain reads; retention deletes whole segments. So nothing but
an append ever takes a segment's write lock, and dropping old records is an ``unlink``.

A new log's first offset is the time of its first append in microseconds, so a log that
replaces another (a deleted directory, a restored backup) continues above every position a
reader kept of the old one.

Rotation. A segment is *sealed* once its successor exists. An appender creates the successor
while it holds the current segment's write lock, and every appender checks — under that same
lock — that no successor exists before it writes. So nothing is written to a sealed segment,
and a reader that saw the successor can read the segment to its end. A successor appears
already holding its first batch (written under a temporary name with a rollback journal, then
linked into place), so its first offset is stored in its first row; so is the first segment's.

Sealing on request. A deletion cannot rewrite a segment, so it waits for retention to drop
every segment holding records from before it; the newest segment always stays, so it asks
for a seal (``request_seal`` writes ``.seal``): the next append, from any process, rotates as
if the segment were full, then removes the request; if none comes, retention drops the newest
segment itself once the chain has passed it, under the appenders' lock, and the next append
starts a new log (whose first offset, the time in microseconds, lies above the old ones).

Checkpoints. Appends never checkpoint (``wal_autocheckpoint=0``): a segment's WAL grows to the
rotation size and is then left alone. SQLite copies it back when a segment's last connection
closes; the appender hands its old connections to a closer thread so that work never runs in
an acknowledgement's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from headwater.store.database import Durability

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20  # rotate once a segment's WAL passes this
_NAME = re.compile(r"^(\d{6,})\.db$")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    '"offset" INTEGER PRIMARY KEY, appended_at INTEGER NOT NULL, payload BLOB NOT NULL)'
)
_INSERT = "INSERT INTO records (appended_at, payload) VALUES (?, ?)"
_INSERT_AT = 'INSERT INTO records ("offset", appended_at, payload) VALUES (?, ?, ?)'


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Active:
    """The segment this process appends to, with the paths each append checks."""

    number: int
    conn: sqlite3.Connection
    path: str
    successor: str
    wal: str


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is (device, inode), or None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class _Dropped(Exception):
    """A segment was dropped (by the chain's retention) between listing and opening it."""


class SegmentLog:
    """One partition (0) of segment files in ``directory``."""

    partitions = (0,)

    def __init__(
        self,
        directory: Path,
        *,
        durability: Durability = "normal",
        segment_bytes: int = SEGMENT_BYTES,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._segment_bytes = segment_bytes
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()  # appends of this process, one at a time
        self._append_lock: int | None = None  # the lock file's descriptor (see _appending)
        self._seal = str(directory / ".seal")
        self._active: _Active | None = None
        self._readers: dict[int, sqlite3.Connection] = {}
        self._reader_lock = threading.Lock()
        self._first_offsets: dict[int, int] = {}  # sealed segments' first offsets never change
        self._identities: dict[int, tuple[int, int] | None] = {}  # the files readers opened
        self._closing: queue.SimpleQueue[sqlite3.Connection | None] = queue.SimpleQueue()
        self._closer: threading.Thread | None = None

    # --- appending ----------------------------------------------------------------------------

    def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Commit ``(workspace id, payload)`` records; return once they are durable."""
        if not records:
            return
        now = int(self._clock())
        rows = [(now, payload) for _, payload in records]
        with self._lock, self._appending():
            while True:
                active = self._active_segment()
                if active is None:  # a new log: its first segment is born holding this batch
                    if self._create_first(rows):
                        return
                    continue  # another appender made it first
                conn = active.conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not os.path.exists(active.path) or os.path.exists(active.successor):
                        conn.execute("ROLLBACK")
                        self._retire_active()  # sealed (or dropped) meanwhile: find the newest
                        continue
                    if _size(active.wal) >= self._segment_bytes or os.path.exists(self._seal):
                        last = conn.execute('SELECT max("offset") FROM records').fetchone()[0]
                        if not self._create(active.number + 1, last + 1, rows):
                            raise RuntimeError(
                                f"segment {active.number + 1} appeared while segment "
                                f"{active.number}'s write lock was held"
                            )
                        conn.execute("ROLLBACK")
                        self._retire_active()
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._seal)
                        return
                    conn.executemany(_INSERT, rows)
                    conn.execute("COMMIT")
                    return
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    @contextlib.contextmanager
    def _appending(self) -> Iterator[None]:
        """Appenders of every process take turns here, before SQLite's write lock: a blocked
        ``flock`` wakes when the lock is free, where SQLite's busy handler sleeps 1, 2, 5, 10 …
        milliseconds between tries (with the event loop waiting)."""
        if self._append_lock is None:
            self._append_lock = os.open(
                self.directory / ".append.lock", os.O_RDWR | os.O_CREAT, 0o600
            )
        fcntl.flock(self._append_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._append_lock, fcntl.LOCK_UN)

    def _active_segment(self) -> _Active | None:
        """The newest segment, opened for appending; None while the log has none."""
        while self._active is None:
            numbers = self._numbers()
            if not numbers:
                return None
            number = numbers[-1]
            try:
                path = str(self._path(number))
                self._active = _Active(
                    number,
                    self._connect(number, writer=True),
                    path,
                    str(self._path(number + 1)),
                    f"{path}-wal",
                )
            except sqlite3.OperationalError:
                if self._path(numbers[-1]).exists():
                    raise
                # dropped since we listed the directory: a newer one exists, look again
        return self._active

    def _retire_active(self) -> None:
        if self._active is not None:
            self._close_later(self._active.conn)
            self._active = None

    def _create_first(self, rows: list[tuple[int, bytes]]) -> bool:
        """Create segment 1 holding ``rows`` if the log has no segment; False if it has one.

        Appenders in other processes may be creating it too, and a slow one could otherwise
        bring segment 1 back after the log moved on and dropped it: so the check and the
        creation happen under a lock file.
        """
        descriptor = os.open(self.directory / ".create.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if self._numbers():
                return False
            return self._create(1, time.time_ns() // 1000, rows)
        finally:
            os.close(descriptor)  # releases the lock

    def _create(self, number: int, first_offset: int, rows: list[tuple[int, bytes]]) -> bool:
        """Create segment ``number`` holding ``rows``; it appears whole or not at all. False
        when another appender created it first (then ``rows`` are not in the log)."""
        final = self._path(number)
        temporary = final.with_name(f"{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.unlink(missing_ok=True)
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            os.chmod(temporary, 0o600)
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("BEGIN")
            conn.execute(_SCHEMA)
            conn.executemany(
                _INSERT_AT, [(first_offset + i, at, p) for i, (at, p) in enumerate(rows)]
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")  # in the header: every opener uses WAL
        finally:
            conn.close()
        try:
            os.link(temporary, final)  # unlike rename, never replaces a segment another made
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        if self._synchronous == "FULL":
            descriptor = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        return True

    def probe(self) -> None:
        """Raise unless the log can be written now: its directory takes a file, and the newest
        segment's write lock can be had."""
        path = self.directory / f".probe-{os.getpid()}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, b"\0" * 4096)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            path.unlink(missing_ok=True)
        with self._lock:
            active = self._active_segment()
            if active is not None:
                active.conn.execute("BEGIN IMMEDIATE")
                active.conn.execute("ROLLBACK")

    # --- reading ------------------------------------------------------------------------------

    def read(self, partition: int, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Records with offsets above ``after``, ascending, at most ``limit``."""
        return self._retrying(lambda: self._read(after, limit))

    def _retrying(self, read: Callable[[], _T]) -> _T:
        """Run ``read`` again when a segment it listed was dropped before it opened it."""
        for _ in range(10):
            try:
                return read()
            except _Dropped:
                continue
        return read()

    def _read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        with self._reader_lock:
            numbers = self._listed()
            index = self._segment_index(numbers, after + 1)
            while index < len(numbers) and len(out) < limit:
                number = numbers[index]
                sealed = index + 1 < len(numbers) or self._path(number + 1).exists()
                conn = self._reader(number)
                out += conn.execute(
                    'SELECT "offset", payload FROM records WHERE "offset" > ? '
                    'ORDER BY "offset" LIMIT ?',
                    (after, limit - len(out)),
                ).fetchall()
                if not sealed:
                    break
                if index + 1 >= len(numbers):
                    numbers = self._listed()
                index += 1
        return out

    def end(self, partition: int) -> int:
        """The highest offset appended (0 for an empty log)."""
        return self._retrying(self._end)

    def _end(self) -> int:
        with self._reader_lock:
            numbers = self._listed()
            for number in reversed(numbers):
                last = self._reader(number).execute('SELECT max("offset") FROM records').fetchone()
                if last[0] is not None:
                    return int(last[0])
        return 0

    def appended_at(self, partition: int, offset: int) -> int | None:
        """When the record at ``offset`` was appended (epoch seconds), if it is still here."""
        return self._retrying(lambda: self._appended_at(offset))

    def _appended_at(self, offset: int) -> int | None:
        with self._reader_lock:
            numbers = self._listed()
            index = self._segment_index(numbers, offset)
            if index >= len(numbers):
                return None
            row = (
                self._reader(numbers[index])
                .execute('SELECT appended_at FROM records WHERE "offset" = ?', (offset,))
                .fetchone()
            )
        return None if row is None else int(row[0])

    def _segment_index(self, numbers: list[int], offset: int) -> int:
        """The index in ``numbers`` of the segment that holds (or will hold) ``offset``."""
        index = 0
        for i in range(1, len(numbers)):
            if self._first_offset(numbers[i]) <= offset:
                index = i
            else:
                break
        return index

    def _first_offset(self, number: int) -> int:
        """Every segment is born holding its first row, which stays."""
        first = self._first_offsets.get(number)
        if first is None:
            row = self._reader(number).execute('SELECT min("offset") FROM records').fetchone()
            first = self._first_offsets[number] = int(row[0])
        return first

    def _reader(self, number: int) -> sqlite3.Connection:
        conn = self._readers.get(number)
        if conn is None:
            try:
                conn = self._readers[number] = self._connect(number, writer=False)
                self._identities[number] = _identity(self._path(number))
            except sqlite3.OperationalError:
                if self._path(number).exists():
                    raise
                raise _Dropped(number) from None
        return conn

    # --- retention ----------------------------------------------------------------------------

    def oldest_appended_at(self) -> int | None:
        """When the oldest record kept was appended (epoch seconds); None for an empty log."""

        def oldest() -> int | None:
            with self._reader_lock:
                for number in self._listed():
                    row = (
                        self._reader(number)
                        .execute('SELECT appended_at FROM records ORDER BY "offset" LIMIT 1')
                        .fetchone()
                    )
                    if row is not None:
                        return int(row[0])
            return None

        return self._retrying(oldest)

    def request_seal(self, before: float) -> None:
        """Ask the next append to start a new segment when the newest one holds a record
        appended at or before ``before``, so that retention can drop it."""

        def newest_first() -> int | None:
            with self._reader_lock:
                numbers = self._listed()
                if not numbers:
                    return None
                row = (
                    self._reader(numbers[-1])
                    .execute('SELECT appended_at FROM records ORDER BY "offset" LIMIT 1')
                    .fetchone()
                )
            return None if row is None else int(row[0])

        first = self._retrying(newest_first)
        if first is None or first > before:
            return
        temporary = f"{self._seal}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.write(str(self._clock()).encode())
        os.replace(temporary, self._seal)

    def drop_through(self, partition: int, offset: int) -> int:
        """Delete every segment whose records all lie at or below ``offset``; the newest
        segment stays, unless a seal was asked for and no append has come to do it (see
        ``_drop_sealed``). Returns how many segments were deleted."""
        dropped = 0
        with self._reader_lock:
            numbers = self._listed()
            for number, successor in itertools.pairwise(numbers):
                if self._first_offset(successor) > offset + 1:
                    break
                self._forget(number)
                dropped += 1
            if numbers and os.path.exists(self._seal):
                dropped += self._drop_sealed(numbers[-1], offset)
        return dropped

    def _drop_sealed(self, number: int, offset: int) -> int:
        """Drop the newest segment once every record in it lies at or below ``offset``, under
        the appenders' lock (a descriptor of our own, so this process's appenders wait too):
        no append can be committing into it. The next append starts a new log, whose first
        offset (the time in microseconds) lies above every offset of this one."""
        descriptor = os.open(self.directory / ".append.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if self._numbers()[-1:] != [number]:
                return 0  # an append rotated meanwhile: the successor holds its records
            last = self._reader(number).execute('SELECT max("offset") FROM records').fetchone()
            if last[0] is not None and int(last[0]) > offset:
                return 0
            self._forget(number)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._seal)
            return 1
        finally:
            os.close(descriptor)  # releases the lock

    def _forget(self, number: int) -> None:
        """Unlink a segment and forget what this process kept of it (the reader lock held)."""
        conn = self._readers.pop(number, None)
        self._first_offsets.pop(number, None)
        self._identities.pop(number, None)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path(number)}{suffix}").unlink(missing_ok=True)
        if conn is not None:
            self._close_later(conn)

    def close(self) -> None:
        with self._lock:
            self._retire_active()
            if self._append_lock is not None:
                os.close(self._append_lock)
                self._append_lock = None
        with self._reader_lock:
            for conn in self._readers.values():
                self._close_later(conn)
            self._readers.clear()
        if self._closer is not None:
            self._closing.put(None)
            self._closer.join(timeout=60)
            self._closer = None

    # --- files --------------------------------------------------------------------------------

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:06d}.db"

    def _numbers(self) -> list[int]:
        """The segments on disk, oldest first."""
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def _listed(self) -> list[int]:
        """``_numbers()`` for readers (holding the reader lock): readers of segments dropped
        or replaced meanwhile, maybe by another process, are closed."""
        numbers = self._numbers()
        for number in list(self._readers):
            if _identity(self._path(number)) != self._identities.get(number):
                self._close_later(self._readers.pop(number))
                self._first_offsets.pop(number, None)
                self._identities.pop(number, None)
        return numbers

    def _connect(self, number: int, *, writer: bool) -> sqlite3.Connection:
        """Open an existing segment; never create one (a dropped segment must stay gone)."""
        conn = sqlite3.connect(
            f"file:{self._path(number)}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA secure_delete=ON")  # segments go whole; should a row ever go too
        if writer:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _close_later(self, conn: sqlite3.Connection) -> None:
        """Close on the closer thread: the last close of a segment copies its WAL back."""
        if self._closer is None:
            self._closer = threading.Thread(target=self._close_loop, name="log-close", daemon=True)
            self._closer.start()
        self._closing.put(conn)

    def _close_loop(self) -> None:
        while True:
            conn = self._closing.get()
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                conn.close()
