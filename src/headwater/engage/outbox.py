"""Engage's outbox: messages decided in a transaction, appended to the ingest log after it.

A computation's change and the messages that tell destinations about it must commit together,
but the ingest log is not in the state database's transaction. So Engage writes its messages
here, in the transaction that decided them, and the worker's drain appends them to the ingest
log from the space's Engage source (``drain``) and deletes them. Every message carries its
``messageId`` already: a crash between the append and the delete appends them again, and the
dedup stage drops the copies (Principle 2: at least once, idempotent on ``messageId``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.database import write_transaction

logger = logging.getLogger(__name__)

DRAIN_BATCH = 500  # messages per append: one ingest log record each


class Appender(Protocol):
    """``ingest.internal.InternalAppend`` as the drain uses it (a layer above this one)."""

    def append(
        self, workspace_id: str, source_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> list[str]: ...


def message_id(*parts: object) -> str:
    """A ``personas_…`` messageId (Segment's shape: ``personas_`` + 21 characters of
    ``[a-z2-7]``) made from what the message says, so deciding the same thing twice gives the
    same id."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=13).digest()
    return "personas_" + base64.b32encode(digest).decode()[:21].lower()


def add(conn: Connection, space_id: str, messages: Sequence[Mapping[str, Any]], now: int) -> None:
    """Queue ``messages`` (complete Segment messages with their messageIds) of a space."""
    if not messages:
        return
    encode = msgspec.json.encode
    if conn.dialect.name == "postgresql":  # one statement, the bodies as an array in binary
        conn.exec_driver_sql(_ADD_PG, (space_id, now, [encode(m) for m in messages]))
        return
    conn.execute(
        schema.engage_outbox.insert(),
        [{"space_id": space_id, "created_at": now, "body": encode(m)} for m in messages],
    )


# In the messages' order (``seq`` follows the rows as the INSERT takes them).
_ADD_PG = (
    "INSERT INTO engage_outbox (space_id, created_at, body) SELECT %s, %s, u.body "
    "FROM unnest(%b::bytea[]) WITH ORDINALITY AS u(body, n) ORDER BY u.n"
)


def waiting(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(schema.engage_outbox)).scalar_one()
        )


class Drain:
    """Appends the outbox to the ingest log, oldest first, a batch per space at a time."""

    def __init__(
        self,
        engine: Engine,
        appender: Appender,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._appender = appender
        self._clock = clock

    def __call__(self) -> int:
        """Append one batch; the messages appended (0: nothing waits)."""
        box, sources, spaces = schema.engage_outbox, schema.engage_sources, schema.spaces
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(box.c.seq, box.c.space_id, box.c.body)
                .order_by(box.c.seq)
                .limit(DRAIN_BATCH)
            ).all()
            if not rows:
                return 0
            space_id = rows[0].space_id
            target = conn.execute(
                sa.select(sources.c.source_id, spaces.c.workspace_id)
                .join(spaces, spaces.c.id == sources.c.space_id)
                .where(sources.c.space_id == space_id)
            ).first()
        batch = [r for r in rows if r.space_id == space_id]
        if target is not None:  # else the space is gone: its messages go with it
            messages = [msgspec.json.decode(r.body) for r in batch]
            try:
                self._appender.append(target.workspace_id, target.source_id, messages)
            except InvalidError:
                # One message the Spec refuses must not hold the rest back for ever: append
                # them one by one and leave out (and log) the refused.
                for message in messages:
                    try:
                        self._appender.append(target.workspace_id, target.source_id, [message])
                    except InvalidError as exc:
                        logger.error("Engage: a message left out of the outbox: %s", exc)
        with write_transaction(self._engine) as conn:
            conn.execute(box.delete().where(box.c.seq.in_([r.seq for r in batch])))
        return len(batch)
