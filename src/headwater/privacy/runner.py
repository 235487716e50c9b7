"""The deletion runner: carries out regulations in the worker, resumable after a crash anywhere.

A pass takes every regulation that is due. A suppression (``SUPPRESS_*``) takes effect here:
its subjects go into ``suppressed_subjects`` and the suppression version moves, in one
transaction; ``UNSUPPRESS`` takes them out. A deletion then runs as ``privacy/erasure.py``
says: the subjects are widened by every ``Expander`` and STORED before any eraser runs (so
a crash after the identity graph was erased still knows every identifier), one step row per
eraser whose kind the type reaches is written with them, and each pass calls the steps that
are due, in the order the server gave the erasers (internal, archive, warehouse,
destination). Each step's outcome is committed as soon as it is known:

- ``None``: the step is FINISHED and never called again;
- ``Progress``: the step is RUNNING and called again after ``retry_after``;
- an exception: retried with back-off, FAILED with the error's text after ``max_attempts``.

The steps run one after another: a step that answered ``Progress`` or is waiting to be retried
holds back the steps after it, since each may be refilled by the ones before it (events still
in the log reach the debugger and the archive; the archive feeds the warehouses). The log's
step comes first and lasts about a minute (it seals the log's newest segment). The regulation
is FINISHED when every step finished and FAILED when any failed (§10.2: FAILED even when only
an unsupported destination did). A step whose store or destination was removed from the
configuration before it finished is NOT_SUPPORTED, and the regulation, when nothing failed,
PARTIAL_SUCCESS. A crash repeats the step it was in (erasers are idempotent) and nothing that
was recorded as done.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from headwater.privacy.erasure import (
    KINDS_OF,
    Eraser,
    Erasure,
    Expander,
    NotSupported,
    Progress,
    Subjects,
)
from headwater.privacy.regulations import (
    DELETE_ARCHIVE_ONLY,
    DELETING,
    FAILED,
    FINISHED,
    INITIALIZED,
    INVALID,
    NOT_SUPPORTED,
    PARTIAL_SUCCESS,
    RUNNING,
    SUPPRESSING,
    SUPPRESSION_VERSION_KEY,
    UNSUPPRESS,
    USER_ID,
    Regulation,
    Regulations,
    regulation_from_row,
)
from headwater.store import schema
from headwater.store.database import write_transaction

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
DONE = (FINISHED, FAILED, NOT_SUPPORTED)
BACKOFF_SECONDS = 30.0  # the first retry's wait; each later one waits four times longer
MAX_ERROR_LENGTH = 500

# What an exception's text may carry that a status must not show.
_SECRETS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(\w+://)[^/\s:@]*:[^/\s@]*@"), r"\1[redacted]@"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|secret(?:[_-]?key)?|token|password|passwd|authorization|"
            r"access[_-]?key)(\s*[=:]\s*|\"\s*:\s*\")([^\s&,\"']+)"
        ),
        r"\1\2[redacted]",
    ),
)


def error_text(exc: BaseException) -> str:
    """An eraser's failure as a status shows it: the type and message, secrets removed."""
    text = f"{type(exc).__name__}: {exc}"
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text[:MAX_ERROR_LENGTH]


class DeletionRunner:
    def __init__(
        self,
        engine: Engine,
        expanders: Sequence[Expander],
        erasers: Sequence[Eraser],
        *,
        clock: Callable[[], float] = time.time,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: float = BACKOFF_SECONDS,
        source_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self._engine = engine
        self._expanders = expanders  # server.py may add to its lists after this
        self._erasers = erasers
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._source_exists = source_exists
        self.regulations = Regulations(engine, clock=clock)

    def run_due(self) -> int:
        """Work on every regulation due now; how many were looked at."""
        now = self._clock()
        r = schema.regulations
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(r)
                .where(r.c.due_at.is_not(None), r.c.due_at <= now)
                .order_by(r.c.created_at, r.c.id)
            ).all()
        for row in rows:
            self.run(regulation_from_row(row._mapping))
        return len(rows)

    def run(self, regulation: Regulation) -> None:
        if regulation.status == INITIALIZED:
            if (
                regulation.source_id is not None
                and self._source_exists is not None
                and not self._source_exists(regulation.source_id)
            ):
                self._finish(regulation.id, INVALID, "the source no longer exists")
                return
            self._suppress(regulation)
        if regulation.regulation_type not in DELETING:
            self._finish(regulation.id, FINISHED)
            return
        if regulation.expanded is None:
            regulation = self._expand(regulation)
        assert regulation.expanded is not None
        erasure = Erasure(
            regulation_id=regulation.id,
            workspace_id=regulation.workspace_id,
            subjects=regulation.expanded,
            created_at=regulation.created_at,
            source_ids=None if regulation.source_id is None else frozenset({regulation.source_id}),
        )
        steps = {(s.kind, s.target_id): s for s in self.regulations.steps(regulation.id)}
        present = {(e.target.kind, e.target.id) for e in self._erasers}
        for key, gone in steps.items():
            if key not in present and gone.status not in (FINISHED, FAILED, NOT_SUPPORTED):
                self._unsupported(regulation.id, gone.kind, gone.target_id)
        for eraser in self._erasers:
            target = eraser.target
            step = steps.get((target.kind, target.id))
            if step is None or step.status in (FINISHED, FAILED, NOT_SUPPORTED):
                continue
            if step.due_at is not None and step.due_at > self._clock():
                break
            if self._call(regulation.id, eraser, erasure, step.attempts) not in DONE:
                break  # the steps after it wait: each may be refilled by the ones before
        self._settle(regulation.id)

    # --- suppression --------------------------------------------------------------------------

    def _suppress(self, regulation: Regulation) -> None:
        """Start or end the subjects' suppression, and mark the regulation as taken up."""
        type_ = regulation.regulation_type
        s = schema.suppressed_subjects
        scope = regulation.source_id or ""
        with write_transaction(self._engine) as conn:
            if type_ in SUPPRESSING and regulation.subject_type == USER_ID:
                insert = _insert(conn, s)
                rows = [
                    {
                        "workspace_id": regulation.workspace_id,
                        "scope": scope,
                        "subject_id": subject,
                        "regulation_id": regulation.id,
                        "regulation_type": type_,
                        "since": self._clock(),
                    }
                    for subject in regulation.subjects
                ]
                for start in range(0, len(rows), 1000):
                    conn.execute(
                        insert.on_conflict_do_update(
                            index_elements=[s.c.workspace_id, s.c.scope, s.c.subject_id],
                            set_={
                                "regulation_id": insert.excluded.regulation_id,
                                "regulation_type": insert.excluded.regulation_type,
                            },
                        ),
                        rows[start : start + 1000],
                    )
                _bump(conn)
            elif type_ == UNSUPPRESS:
                where = [s.c.workspace_id == regulation.workspace_id]
                if regulation.source_id is not None:  # a workspace UNSUPPRESS ends every scope's
                    where.append(s.c.scope == scope)
                subjects = list(regulation.subjects)
                for start in range(0, len(subjects), 500):
                    conn.execute(
                        s.delete().where(*where, s.c.subject_id.in_(subjects[start : start + 500]))
                    )
                _bump(conn)
            r = schema.regulations
            conn.execute(r.update().where(r.c.id == regulation.id).values(status=RUNNING))

    # --- deletion -----------------------------------------------------------------------------

    def _expand(self, regulation: Regulation) -> Regulation:
        """Widen the subjects and store them with one step per eraser, before any erasing."""
        subjects = regulation.requested()
        if regulation.regulation_type != DELETE_ARCHIVE_ONLY:  # exactly the ids named
            base = Erasure(
                regulation.id,
                regulation.workspace_id,
                subjects,
                regulation.created_at,
                None if regulation.source_id is None else frozenset({regulation.source_id}),
            )
            widened: Subjects = subjects
            for expander in self._expanders:
                widened = widened.union(expander.expand(base))
            subjects = widened
        kinds = KINDS_OF[regulation.regulation_type]
        t = schema.regulation_steps
        r = schema.regulations
        with write_transaction(self._engine) as conn:
            conn.execute(t.delete().where(t.c.regulation_id == regulation.id))
            rows = [
                {
                    "regulation_id": regulation.id,
                    "kind": eraser.target.kind,
                    "target_id": eraser.target.id,
                    "position": position,
                    "name": eraser.target.name or eraser.target.id,
                    "status": INITIALIZED,
                    "attempts": 0,
                    "due_at": None,
                    "detail": "",
                    "finished_at": None,
                }
                for position, eraser in enumerate(self._erasers)
                if eraser.target.kind in kinds
            ]
            if rows:
                conn.execute(t.insert(), rows)
            conn.execute(
                r.update()
                .where(r.c.id == regulation.id)
                .values(status=RUNNING, expanded=subjects.to_json())
            )
        found = self.regulations.get(regulation.id)
        assert found is not None
        return found

    def _call(self, regulation_id: str, eraser: Eraser, erasure: Erasure, attempts: int) -> str:
        """Run one step; its new status."""
        target = eraser.target
        t = schema.regulation_steps
        key = (
            t.c.regulation_id == regulation_id,
            t.c.kind == target.kind,
            t.c.target_id == target.id,
        )
        with write_transaction(self._engine) as conn:
            conn.execute(t.update().where(*key).values(status=RUNNING))
        try:
            outcome = eraser.erase(erasure)
        except NotSupported as exc:
            # A destination with no deletion API: failed at once, no retries. Segment reports
            # such a destination as a failure, and so the regulation as FAILED though every
            # other step finished (§10.2): the user must ask that vendor.
            values = {
                "status": FAILED,
                "detail": error_text(exc),
                "due_at": None,
                "finished_at": self._clock(),
            }
        except Exception as exc:
            attempts += 1
            text = error_text(exc)
            logger.warning(
                "regulation %s: %s %s failed (attempt %d of %d): %s",
                regulation_id,
                target.kind,
                target.id,
                attempts,
                self._max_attempts,
                text,
            )
            if attempts >= self._max_attempts:
                values = {
                    "status": FAILED,
                    "attempts": attempts,
                    "detail": text,
                    "due_at": None,
                    "finished_at": self._clock(),
                }
            else:
                wait = self._backoff * 4 ** (attempts - 1)
                values = {
                    "status": RUNNING,
                    "attempts": attempts,
                    "detail": text,
                    "due_at": self._clock() + wait,
                }
        else:
            if isinstance(outcome, Progress):
                values = {
                    "status": RUNNING,
                    "detail": outcome.detail[:MAX_ERROR_LENGTH],
                    "due_at": self._clock() + max(0.0, outcome.retry_after),
                }
            else:
                values = {
                    "status": FINISHED,
                    "detail": "",
                    "due_at": None,
                    "finished_at": self._clock(),
                }
        with write_transaction(self._engine) as conn:
            conn.execute(t.update().where(*key).values(**values))
        return str(values["status"])

    def _settle(self, regulation_id: str) -> None:
        """The overall status from the steps, and when the regulation is next due."""
        t = schema.regulation_steps
        r = schema.regulations
        with write_transaction(self._engine) as conn:
            steps = conn.execute(
                sa.select(t.c.status, t.c.due_at).where(t.c.regulation_id == regulation_id)
            ).all()
            done = (FINISHED, FAILED, NOT_SUPPORTED)
            open_ = [due for status, due in steps if status not in done]
            if open_:
                due = min((d for d in open_ if d is not None), default=self._clock())
                conn.execute(r.update().where(r.c.id == regulation_id).values(due_at=due))
                return
            failed = any(status == FAILED for status, _ in steps)
            partly = any(status == NOT_SUPPORTED for status, _ in steps)
            conn.execute(
                r.update()
                .where(r.c.id == regulation_id)
                .values(
                    status=FAILED if failed else PARTIAL_SUCCESS if partly else FINISHED,
                    finished_at=self._clock(),
                    due_at=None,
                    error="a step failed; see streamStatus" if failed else None,
                )
            )

    def _unsupported(self, regulation_id: str, kind: str, target_id: str) -> None:
        """A step whose store or destination is gone from the configuration: nothing can erase
        there any more, so it is NOT_SUPPORTED (the regulation ends PARTIAL_SUCCESS)."""
        t = schema.regulation_steps
        with write_transaction(self._engine) as conn:
            conn.execute(
                t.update()
                .where(
                    t.c.regulation_id == regulation_id,
                    t.c.kind == kind,
                    t.c.target_id == target_id,
                )
                .values(
                    status=NOT_SUPPORTED,
                    detail="no longer configured: nothing here can be erased any more",
                    due_at=None,
                    finished_at=self._clock(),
                )
            )

    def _finish(self, regulation_id: str, status: str, error: str | None = None) -> None:
        r = schema.regulations
        with write_transaction(self._engine) as conn:
            conn.execute(
                r.update()
                .where(r.c.id == regulation_id)
                .values(status=status, finished_at=self._clock(), due_at=None, error=error)
            )


def _insert(conn: Connection, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


def _bump(conn: Connection) -> None:
    """Move the suppression version: the ingest stage reloads its sets."""
    meta = schema.meta
    insert = _insert(conn, meta)
    conn.execute(
        insert.values(key=SUPPRESSION_VERSION_KEY, value="1").on_conflict_do_update(
            index_elements=[meta.c.key],
            set_={"value": sa.cast(sa.cast(meta.c.value, sa.BigInteger) + 1, sa.Text)},
        )
    )
