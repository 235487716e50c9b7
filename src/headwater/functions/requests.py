"""Source functions' webhook requests, kept until they ran (§11.2).

A request the endpoint accepts is written here before the caller gets its answer, so an
acknowledged request survives any crash; the worker claims due requests, runs the source's
function on them and deletes each once it ran, failed for good, or used up its attempts. Only
``RetryError`` and timeouts come back (``retry_gap``): six attempts in all, the first retry
after a random one to three minutes, each gap twice the one before and never over 20 minutes
(§21.7). A claim lasts ``CLAIM_SECONDS``: a worker that dies mid-run leaves its requests to the
next one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.database import write_transaction

MAX_ATTEMPTS: Final = 6  # Segment's "up to six times", the first one included
FIRST_GAP: Final = (60.0, 180.0)  # "a random value between one and three minutes"
MAX_GAP: Final = 20 * 60.0  # "the maximum wait time between attempts can reach 20 minutes"
CLAIM_SECONDS: Final = 60.0  # the 5 s deadline, the emitted events' appends, and slack
PENDING: Final = "pending"


def first_gap(rng: random.Random) -> float:
    """The wait before a request's first retry, drawn once per request."""
    return rng.uniform(*FIRST_GAP)


def retry_gap(first: float, failed_attempts: int) -> float:
    """The wait after attempt ``failed_attempts`` (1-based) failed: ``first``, doubling after
    each failure, at most 20 minutes."""
    return min(MAX_GAP, first * 2.0 ** (failed_attempts - 1))


@dataclass(frozen=True)
class StoredRequest:
    id: int
    workspace_id: str
    source_id: str
    received_at: float
    request: Mapping[str, Any]  # method, url, headers [[name, value]…], body or body_base64
    attempts: int  # how many ran already
    next_attempt_at: float
    first_gap: float | None
    last_error: str | None


class FunctionRequests:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, workspace_id: str, source_id: str, request: Mapping[str, Any], now: float) -> int:
        """Keep an accepted request, due now; return its id."""
        t = schema.function_requests
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                t.insert().values(
                    workspace_id=workspace_id,
                    source_id=source_id,
                    received_at=now,
                    request=dict(request),
                    attempts=0,
                    next_attempt_at=now,
                    state=PENDING,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def claim(self, now: float, limit: int = 20) -> list[StoredRequest]:
        """Due requests no live worker holds, oldest first, held for ``CLAIM_SECONDS``."""
        t = schema.function_requests
        with write_transaction(self._engine) as conn:
            rows = conn.execute(
                sa.select(t)
                .where(
                    t.c.state == PENDING,
                    t.c.next_attempt_at <= now,
                    sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < now),
                )
                .order_by(t.c.next_attempt_at, t.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)  # PostgreSQL: two workers never share one
            ).all()
            if rows:
                conn.execute(
                    t.update()
                    .where(t.c.id.in_([r.id for r in rows]))
                    .values(claimed_until=now + CLAIM_SECONDS)
                )
        return [_stored(r) for r in rows]

    def retry_at(
        self, request_id: int, *, attempts: int, at: float, first_gap: float, error: str
    ) -> None:
        """``attempts`` ran and the last one asked for a retry: due again at ``at``."""
        t = schema.function_requests
        with write_transaction(self._engine) as conn:
            conn.execute(
                t.update()
                .where(t.c.id == request_id)
                .values(
                    attempts=attempts,
                    next_attempt_at=at,
                    first_gap=first_gap,
                    last_error=error,
                    claimed_until=None,
                )
            )

    def done(self, request_id: int) -> None:
        """The request ran, failed for good or was dropped: it goes."""
        t = schema.function_requests
        with write_transaction(self._engine) as conn:
            conn.execute(sa.delete(t).where(t.c.id == request_id))

    def any_pending(self) -> bool:
        t = schema.function_requests
        with self._engine.connect() as conn:
            return conn.execute(sa.select(t.c.id).limit(1)).first() is not None

    def pending(self, source_id: str | None = None) -> list[StoredRequest]:
        """Requests still waiting to run (all sources when ``source_id`` is None)."""
        t = schema.function_requests
        query = sa.select(t).order_by(t.c.id)
        if source_id is not None:
            query = query.where(t.c.source_id == source_id)
        with self._engine.connect() as conn:
            return [_stored(r) for r in conn.execute(query)]


def _stored(row: Any) -> StoredRequest:
    return StoredRequest(
        id=row.id,
        workspace_id=row.workspace_id,
        source_id=row.source_id,
        received_at=row.received_at,
        request=row.request,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        first_gap=row.first_gap,
        last_error=row.last_error,
    )
