"""A function's errors and logs: Segment's Errors tab, kept in the state database.

Whatever runs a function (a source's requests, a destination's deliveries, an insert
function) records what an invocation did worth seeing: its error class and message, its
console lines (at most 4 KB, as Segment's test console), its outgoing requests, and a sample
of its input. A function keeps **the 100 most recent entries, for 30 days** (§11.1); each
``record`` prunes its function's older rows in the same transaction, and ``prune`` sweeps the
rest. The values of an instance's secret settings are replaced by ``[redacted]`` wherever they
appear (a function that logs ``settings.apiKey`` does not leak it here). A regulation's
deletion reaches these rows through ``functions/erasure.py``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.errors import NotFoundError
from headwater.functions.contract import IncomingRequest, Invocation
from headwater.store import schema
from headwater.store.instances import REDACTED
from headwater.store.workspace import WorkspaceStore

KEEP: Final = 100  # entries a function
KEEP_SECONDS: Final = 30 * 86400
CONSOLE_BYTES: Final = 4096  # Segment's test console output limit
PAYLOAD_BYTES: Final = 16 * 1024
MESSAGE_CHARS: Final = 2000
REQUESTS_KEPT: Final = 20
_SHORTEST_SECRET: Final = 4  # shorter values would redact ordinary words


@dataclass(frozen=True)
class LogEntry:
    id: int
    function_id: str
    version: int
    instance_id: str | None  # the source or destination; None for the test runner
    at: float
    level: str  # error | log
    error: str | None
    message: str
    logs: list[list[str]]  # [level, text]
    requests: list[dict[str, Any]]
    payload: Any  # the input sample (JSON), or its text when it was cut
    duration_ms: float

    def shown(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "instanceId": self.instance_id,
            "at": self.at,
            "level": self.level,
            "error": self.error,
            "message": self.message,
            "logs": self.logs,
            "requests": self.requests,
            "payload": self.payload,
            "durationMs": self.duration_ms,
        }


class FunctionLogs:
    def __init__(self, workspace: WorkspaceStore, clock: Callable[[], float] = time.time) -> None:
        self._workspace = workspace
        self._clock = clock

    def record(
        self,
        function: str,
        version: int,
        instance_id: str | None,
        invocation: Invocation,
        payload: Any,
        *,
        secrets: Iterable[str] = (),
    ) -> None:
        """Keep one invocation (``function``: its id or name); ``secrets``: the instance's
        secret setting values, never written."""
        hidden = sorted(
            {s for s in secrets if isinstance(s, str) and len(s) >= _SHORTEST_SECRET},
            key=len,
            reverse=True,
        )

        def scrub(text: str) -> str:
            for value in hidden:
                text = text.replace(value, REDACTED)
            return text

        t = schema.function_logs
        now = self._clock()
        with self._workspace.writing() as conn:
            function_id = self._function_id(conn, function)
            conn.execute(
                t.insert().values(
                    function_id=function_id,
                    version=version,
                    instance_id=instance_id,
                    at=now,
                    level="error" if invocation.error else "log",
                    error=invocation.error,
                    message=scrub(invocation.message)[:MESSAGE_CHARS],
                    logs=console_lines(
                        [(line.level, scrub(line.text)) for line in invocation.logs]
                    ),
                    requests=[
                        {
                            "method": r.method,
                            "url": scrub(r.url),
                            "status": r.status,
                            "error": scrub(r.error) if r.error else None,
                            "durationMs": r.duration_ms,
                        }
                        for r in invocation.requests[:REQUESTS_KEPT]
                    ],
                    payload=_sample(payload, scrub),
                    duration_ms=invocation.duration_ms,
                )
            )
            self._prune(conn, function_id, now)

    def recent(self, function: str, limit: int = KEEP) -> list[LogEntry]:
        """A function's entries of the last 30 days, newest first."""
        t = schema.function_logs
        with self._workspace.reading() as conn:
            function_id = self._function_id(conn, function)
            rows = conn.execute(
                sa.select(t)
                .where(t.c.function_id == function_id, t.c.at >= self._clock() - KEEP_SECONDS)
                .order_by(t.c.id.desc())
                .limit(max(0, min(limit, KEEP)))
            )
            return [
                LogEntry(
                    id=row.id,
                    function_id=row.function_id,
                    version=row.version,
                    instance_id=row.instance_id,
                    at=row.at,
                    level=row.level,
                    error=row.error,
                    message=row.message,
                    logs=[list(line) for line in row.logs or []],
                    requests=list(row.requests or []),
                    payload=_shown_payload(row.payload),
                    duration_ms=row.duration_ms,
                )
                for row in rows
            ]

    def prune(self) -> int:
        """Delete every entry older than 30 days; the number deleted."""
        t = schema.function_logs
        with self._workspace.writing() as conn:
            result = conn.execute(sa.delete(t).where(t.c.at < self._clock() - KEEP_SECONDS))
            return int(result.rowcount or 0)

    def _prune(self, conn: Connection, function_id: str, now: float) -> None:
        t = schema.function_logs
        conn.execute(
            sa.delete(t).where(t.c.function_id == function_id, t.c.at < now - KEEP_SECONDS)
        )
        oldest_kept = conn.execute(
            sa.select(t.c.id)
            .where(t.c.function_id == function_id)
            .order_by(t.c.id.desc())
            .offset(KEEP - 1)
            .limit(1)
        ).scalar_one_or_none()
        if oldest_kept is not None:
            conn.execute(sa.delete(t).where(t.c.function_id == function_id, t.c.id < oldest_kept))

    def _function_id(self, conn: Connection, function: str) -> str:
        if "\x00" in function:
            raise NotFoundError(f"no function has the id or name {function!r}")
        f = schema.functions
        found = conn.execute(sa.select(f.c.id).where(f.c.id == function)).scalar_one_or_none()
        if found is None:
            found = conn.execute(
                sa.select(f.c.id).where(
                    f.c.workspace_id == self._workspace.workspace_id(conn), f.c.name == function
                )
            ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"no function has the id or name {function!r}")
        return str(found)


def console_lines(lines: Sequence[tuple[str, str]], limit: int = CONSOLE_BYTES) -> list[list[str]]:
    """Console lines up to ``limit`` bytes of text in all; the line that crosses it is cut
    (marked ``…``) and the rest dropped, as Segment's 4 KB test console output."""
    kept: list[list[str]] = []
    left = limit
    for level, text in lines:
        size = len(text.encode("utf-8"))
        if size <= left:
            kept.append([level, text])
            left -= size
            continue
        cut = text.encode("utf-8")[:left].decode("utf-8", "ignore")
        kept.append([level, cut + "…"])
        break
    return kept


def _sample(payload: Any, scrub: Callable[[str], str]) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, IncomingRequest):
        payload = {
            "method": payload.method,
            "url": payload.url,
            "headers": [list(h) for h in payload.headers],
            "body": _body_text(payload.body),
        }
    text = scrub(json.dumps(payload, ensure_ascii=False, default=str))
    encoded = text.encode("utf-8")
    if len(encoded) > PAYLOAD_BYTES:
        return encoded[:PAYLOAD_BYTES].decode("utf-8", "ignore") + "…"
    return text


def _body_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def _shown_payload(stored: str | None) -> Any:
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except ValueError:
        return stored  # cut at the size cap: shown as the text kept
