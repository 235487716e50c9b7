"""A regulation's deletion in source functions' stores: webhook requests waiting to run
(``function_requests``) and objects waiting for the warehouses (``function_objects``).

A vendor's webhook is not a Segment message: the subject's id sits wherever the vendor puts
it (Stripe's ``data.object.customer``, a form's ``email``). So a stored request goes when any
value of its decoded body (JSON, or the form's fields) equals one of the subject's
identifiers, user ids included, or holds a message of the subject: a request waits minutes,
and a wrong guess costs one retry, not someone's history. An object goes when its id is one of
the subject's object ids or its properties hold a distinctive identifier (the rule of
``store/payload_erasure.py``). SQL reads only rows whose text contains an identifier (as JSON
or a form writes it), a hundred identifiers per query.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.privacy.erasure import Erasure, Progress, Target
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.payload_erasure import IDS_PER_QUERY, distinctive, identifiers, mentions

REQUESTS_ID: Final = "function-requests"
OBJECTS_ID: Final = "function-objects"


class FunctionRequestEraser:
    """Deletes a subject's waiting webhook requests."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def target(self) -> Target:
        return Target("internal", REQUESTS_ID)

    def erase(self, erasure: Erasure) -> Progress | None:
        values = identifiers(erasure.subjects)
        if not values:
            return None
        t = schema.function_requests
        text = sa.cast(t.c.request, sa.Text)
        scope = t.c.workspace_id == erasure.workspace_id
        if erasure.source_ids is not None:
            scope = sa.and_(scope, t.c.source_id.in_(sorted(erasure.source_ids)))
        ordered = sorted(values)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            part = ordered[start : start + IDS_PER_QUERY]
            wanted = [text.like(p, escape="\\") for v in part for p in _patterns(v)]
            with write_transaction(self._engine) as conn:
                found = conn.execute(
                    sa.select(t.c.id, t.c.request).where(scope, sa.or_(*wanted))
                ).all()
                doomed = [
                    row.id
                    for row in found
                    if mentions(_body(row.request), erasure.subjects, values)
                ]
                for at in range(0, len(doomed), 500):
                    conn.execute(sa.delete(t).where(t.c.id.in_(doomed[at : at + 500])))
        return None


class FunctionObjectEraser:
    """Deletes a subject's objects not yet loaded into the warehouses."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def target(self) -> Target:
        return Target("internal", OBJECTS_ID)

    def erase(self, erasure: Erasure) -> Progress | None:
        subjects = erasure.subjects
        named = distinctive(subjects) | subjects.object_ids
        if not named:
            return None
        t, s = schema.function_objects, schema.sources
        sources = sa.select(s.c.id).where(s.c.workspace_id == erasure.workspace_id)
        if erasure.source_ids is not None:
            sources = sources.where(s.c.id.in_(sorted(erasure.source_ids)))
        with write_transaction(self._engine) as conn:
            doomed = [
                row.seq
                for row in conn.execute(
                    sa.select(t.c.seq, t.c.object_id, t.c.properties).where(
                        t.c.source_id.in_(sources)
                    )
                )
                if row.object_id in subjects.object_ids
                or mentions(row.properties, subjects, distinctive(subjects))
            ]
            for at in range(0, len(doomed), 500):
                conn.execute(sa.delete(t).where(t.c.seq.in_(doomed[at : at + 500])))
        return None


def _body(request: Mapping[str, Any]) -> Any:
    """A stored request's body as Python: JSON decoded, a form as its fields, else text."""
    if "body_base64" in request:
        raw = base64.b64decode(request["body_base64"]).decode("utf-8", "replace")
    else:
        raw = str(request.get("body", ""))
    try:
        return json.loads(raw)
    except ValueError:
        pass
    fields = parse_qsl(raw, keep_blank_values=True)
    return [value for pair in fields for value in pair] if fields else raw


def _patterns(value: str) -> set[str]:
    """``LIKE`` patterns finding ``value`` in a stored request, as JSON or a form wrote it."""
    forms = {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        *(json.dumps(value, ensure_ascii=flag)[1:-1] for flag in (False, True)),
    }
    # The request column is JSON: a body's quotes and backslashes are escaped once more.
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    return {
        "%" + form.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for form in forms
    }
