"""One way to open the state database, whichever engine backs it.

SQLite is the embedded default (one file in the data directory); PostgreSQL is used when a
``postgresql://`` URL is given. Every role opens its engines through ``open_engine`` so the
pragmas that make SQLite safe for several writers (WAL, busy timeout) are never forgotten.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

Durability = Literal["normal", "full"]
STATE_FILE = "state.db"

logger = logging.getLogger(__name__)

# SQLite has one writer at a time. Threads of one process queue on a Python lock instead of
# SQLite's busy handler, which sleeps in steps of up to 100 ms and would put those sleeps
# straight into the Tracking API's latency.
_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def database_url(data_dir: Path, url: str | None) -> str:
    """The state database URL: the given one, or ``state.db`` inside the data directory.

    The state database holds destination and warehouse secrets, so a data directory created
    here is 0700 and ``state.db`` is created 0600 (SQLite gives its -wal and -shm files the
    database file's mode), whatever the umask. Existing ones are left as the operator set them.
    """
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            # Use psycopg 3, the driver we ship, whatever the user wrote.
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    return f"sqlite:///{path}"


def readable_by_others(data_dir: Path) -> str | None:
    """A warning when an existing ``state.db`` (it holds secrets) is open to other users."""
    path = data_dir / STATE_FILE
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"Warning: {path} holds destination secrets but is readable by other users "
        f"(mode {mode:04o}); run `chmod 600 {path}*` to fix it."
    )


def _json_text(value: Any) -> str:
    # msgspec is several times faster than the json module, and writes msgspec.Raw (events
    # kept undecoded by the pipeline) as they are.
    return msgspec.json.encode(value).decode()


def open_engine(
    url: str,
    *,
    durability: Durability = "normal",
    pool_size: int = 5,
    background_checkpoint: bool = False,
) -> Engine:
    """Create an engine with the settings Headwater relies on for its dialect.

    With ``background_checkpoint`` SQLite never checkpoints its WAL inside a commit (which
    would stall the commit, and every request waiting on it, for the checkpoint's writes and
    fsync); the caller runs a ``WalCheckpointer`` instead.
    """
    json_options: dict[str, Any] = {
        "json_serializer": _json_text,
        "json_deserializer": msgspec.json.decode,
    }
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            **json_options,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=pool_size,
            max_overflow=pool_size * 2,
        )
        synchronous = "FULL" if durability == "full" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # A deleted row's bytes are overwritten, not left in a free page, so a deletion
            # (a regulation, a purge) really removes what it deletes.
            cursor.execute("PRAGMA secure_delete=ON")
            if background_checkpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # The driver runs in autocommit mode so that we issue BEGIN ourselves. A transaction
            # that reads before it writes takes the write lock up front (IMMEDIATE): two
            # deferred transactions upgrading at once would fail without waiting.
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        _write_locks[engine] = threading.Lock()
        return engine
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True, **json_options
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: every write of Headwater's own stages goes through here.

    On SQLite it holds the database's write lock from the start (``BEGIN IMMEDIATE``), after
    queueing on the process's lock, so a transaction never waits inside SQLite.
    """
    lock = _write_locks.get(engine)
    with (
        lock if lock is not None else nullcontext(),
        engine.connect().execution_options(write=True) as conn,
        conn.begin(),
    ):
        yield conn


def forget_deleted(engine: Engine) -> bool:
    """Make deleted rows unreadable on disk: on SQLite, copy the WAL (whose frames still hold
    pages as they were before a delete) into the database and truncate it to nothing. False
    when a reader kept the checkpoint from finishing; call again later. Run after an erasure;
    ``secure_delete`` has already zeroed the rows' bytes in the pages it wrote."""
    if not is_sqlite(engine):
        return True  # PostgreSQL reuses dead tuples' space; VACUUM is the operator's
    lock = _write_locks.get(engine)
    with lock if lock is not None else nullcontext(), engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return not busy


class WalCheckpointer:
    """Copies SQLite's WAL back into the database file from its own thread.

    PASSIVE checkpoints run alongside readers and the writer, so commits never wait for them.
    But under steady writes a PASSIVE checkpoint never finds the WAL idle, so the file is never
    reset and grows; a large WAL slows every page read (SQLite searches its index block by
    block). So once the WAL passes ``max_wal_bytes`` the checkpointer takes the write lock and
    truncates it: by then PASSIVE has copied nearly everything, so the pause is short.
    """

    def __init__(
        self, engine: Engine, interval: float = 0.1, max_wal_bytes: int = 256 << 20
    ) -> None:
        self._engine = engine
        self._wal = Path(f"{engine.url.database}-wal")
        self._interval = interval
        self._max_wal_bytes = max_wal_bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def checkpoint(self) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        try:
            size = self._wal.stat().st_size
        except FileNotFoundError:
            return
        if size > self._max_wal_bytes:
            lock = _write_locks.get(self._engine)
            with lock if lock is not None else nullcontext(), self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception:  # a busy or broken database: try again next time
                logger.exception("WAL checkpoint failed; will try again")
