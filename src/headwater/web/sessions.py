"""Signed-in browsers. A session is a random cookie whose SHA-256 is kept here with who it is
and the CSRF token its forms must carry; it lasts 7 days (Segment's session) and ends at
sign-out, or after 15 idle minutes in a HIPAA-eligible workspace (§13, A-IAM-7). The cookie
alone never reaches the database, a log or a page."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.iam.access import Principal
from headwater.store import schema
from headwater.store.database import write_transaction

LIFETIME: Final = 7 * 86400
HIPAA_IDLE: Final = 15 * 60
_TOUCH_EVERY: Final = 60.0  # seen_at is written at most once a minute a session…
_TOUCH_EVERY_IDLE: Final = 10.0  # …or every 10 s where idleness ends it


@dataclass(frozen=True)
class Session:
    id: str  # the cookie's digest
    principal_kind: str
    principal_id: str
    csrf: str
    expires_at: float
    # Who is signed in, as of this request (``WebApp.signed_in`` fills it: roles can change).
    principal: Principal | None = None

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent, self.csrf)


class Sessions:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        idle_limit: Callable[[], float | None] = lambda: None,
    ) -> None:
        """``idle_limit``: the seconds without a request after which a session ends (None:
        none), asked at each request so a workspace's change applies at once."""
        self.engine = engine
        self.clock = clock
        self.idle_limit = idle_limit

    def start(self, principal_kind: str, principal_id: str) -> tuple[str, Session]:
        """A new session; the cookie value is returned once, for the answer's Set-Cookie."""
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(
            _digest(cookie), principal_kind, principal_id, secrets.token_urlsafe(24), now + LIFETIME
        )
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.web_sessions.insert().values(
                    id=session.id,
                    principal_kind=principal_kind,
                    principal_id=principal_id,
                    csrf=session.csrf,
                    created_at=now,
                    seen_at=now,
                    expires_at=session.expires_at,
                )
            )
        return cookie, session

    def find(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 200:
            return None
        t = schema.web_sessions.c
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    t.id, t.principal_kind, t.principal_id, t.csrf, t.expires_at, t.seen_at
                ).where(t.id == _digest(cookie), t.expires_at > now)
            ).first()
        if row is None:
            return None
        idle = self.idle_limit()
        if idle is not None and now - row.seen_at > idle:
            with write_transaction(self.engine) as conn:
                conn.execute(schema.web_sessions.delete().where(t.id == row.id))
            return None
        if now - row.seen_at > (_TOUCH_EVERY if idle is None else _TOUCH_EVERY_IDLE):
            with write_transaction(self.engine) as conn:
                conn.execute(schema.web_sessions.update().where(t.id == row.id).values(seen_at=now))
        return Session(row.id, row.principal_kind, row.principal_id, row.csrf, row.expires_at)

    def end(self, session: Session) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(schema.web_sessions.delete().where(schema.web_sessions.c.id == session.id))

    def prune(self) -> int:
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                schema.web_sessions.delete().where(schema.web_sessions.c.expires_at <= self.clock())
            )
        return result.rowcount or 0


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()
