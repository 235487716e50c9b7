"""Transactions that nest: several changes made through different stores commit together.

``headwater apply`` changes sources, destinations and warehouses in one transaction, each
through its own store; every store asks here for "the transaction in progress on this thread,
or a new one", so one ``atomic()`` block spans them all and either everything happens or
nothing does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from headwater.errors import ConflictError
from headwater.store.database import write_transaction


class Transactions:
    """One engine's transactions, nested per thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run several changes in one transaction: all of them happen, or none."""
        with self.writing():
            yield

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """The current ``atomic`` transaction, or a new write transaction."""
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        try:
            with write_transaction(self.engine) as conn:
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None
        except sa.exc.IntegrityError as exc:
            # Our own checks run first; this is a concurrent writer winning a race.
            raise ConflictError(f"the change conflicts with another one: {exc.orig}") from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """The current ``atomic`` transaction, or a connection for reading."""
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table: sa.Table) -> Any:
        """An INSERT with the dialect's ``ON CONFLICT`` clauses (SQLite and PostgreSQL)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)
