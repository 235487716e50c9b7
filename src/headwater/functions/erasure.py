"""A regulation's deletion in the functions' error logs (``function_logs``).

A log entry keeps a sample of a function's input, its console lines and its error message,
any of which may name the subject. An entry goes when its input sample holds a message of the
subject or one of its distinctive identifiers (the rule of ``store/payload_erasure.py``), or
when its console lines, error message or outgoing request URLs contain one of the subject's
identifiers as a whole word (``user 12345 failed`` names ``12345``; ``order 123456`` does
not). SQL keeps it cheap: only entries whose text contains an identifier are read, a hundred
identifiers per query. A regulation scoped to sources reaches the entries of those sources and
of their destinations' functions; a workspace-wide one, every entry of the workspace's
functions (the test runner's too).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.payload_erasure import IDS_PER_QUERY, distinctive, identifiers, mentions

ERASER_ID: Final = "function-logs"


class FunctionLogEraser:
    """Deletes a subject's entries from every function's error log."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def target(self) -> Target:
        return Target("internal", ERASER_ID)

    def erase(self, erasure: Erasure) -> Progress | None:
        subjects = erasure.subjects
        values = identifiers(subjects)
        if not values:
            return None
        named = distinctive(subjects)
        t = schema.function_logs
        texts = [
            sa.cast(t.c.payload, sa.Text),
            sa.cast(t.c.logs, sa.Text),
            sa.cast(t.c.message, sa.Text),
            sa.cast(t.c.requests, sa.Text),
        ]
        ordered = sorted(values)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            part = ordered[start : start + IDS_PER_QUERY]
            words = _words(part)
            wanted = [
                text.like(pattern, escape="\\")
                for value in part
                for pattern in _patterns(value)
                for text in texts
            ]
            with write_transaction(self._engine) as conn:
                found = conn.execute(
                    sa.select(t.c.id, t.c.payload, t.c.logs, t.c.message, t.c.requests)
                    .where(_scope(erasure), sa.or_(*wanted))
                    .order_by(t.c.id)
                ).all()
                doomed = [
                    row.id
                    for row in found
                    if _holds(row.payload, subjects, named)
                    or words.search(
                        "\n".join(
                            [
                                row.message or "",
                                *(str(line[-1]) for line in row.logs or [] if line),
                                *(str(r.get("url", "")) for r in row.requests or []),
                            ]
                        )
                    )
                ]
                for at in range(0, len(doomed), 500):
                    conn.execute(sa.delete(t).where(t.c.id.in_(doomed[at : at + 500])))
        return None


def _holds(payload: str | None, subjects: Subjects, named: frozenset[str]) -> bool:
    if payload is None:
        return False
    try:
        value: Any = json.loads(payload)
    except ValueError:  # a sample cut at the size cap: its text is all there is
        return any(v in payload for v in named | subjects.user_ids | subjects.anonymous_ids)
    return mentions(value, subjects, named)


def _words(values: list[str]) -> re.Pattern[str]:
    """Any of ``values`` with no letter, digit or ``_`` right before or after it."""
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])")


def _patterns(value: str) -> set[str]:
    """``LIKE`` patterns finding ``value`` in text or in JSON text, however it was escaped."""
    forms = {value, *(json.dumps(value, ensure_ascii=flag)[1:-1] for flag in (False, True))}
    return {
        "%" + form.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for form in forms
    }


def _scope(erasure: Erasure) -> ColumnElement[bool]:
    t, f = schema.function_logs, schema.functions
    in_workspace = t.c.function_id.in_(
        sa.select(f.c.id).where(f.c.workspace_id == erasure.workspace_id)
    )
    if erasure.source_ids is None:
        return in_workspace
    sources = sorted(erasure.source_ids)
    d = schema.destinations
    return sa.and_(
        in_workspace,
        sa.or_(
            t.c.instance_id.in_(sources),
            t.c.instance_id.in_(sa.select(d.c.id).where(d.c.source_id.in_(sources))),
        ),
    )
