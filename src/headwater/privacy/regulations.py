"""Regulations: Segment's deletion and suppression requests, their limits, and their state.

A regulation is made by the REST API (any process) in ``INITIALIZED`` and carried out by the
worker (``runner.py``): a suppression takes effect when the worker processes it, by writing
``suppressed_subjects`` and moving the ``suppression_version`` the ingest stage watches
(``suppression.py``); a deletion widens its subjects and runs every store's eraser, each
eraser's outcome kept as a step (the regulation's ``streamStatus``).

The request rules are Segment's (spec/protocols-privacy-api.md §10.1, §10.2, §10.5): which
types and subject types each scope takes, 5,000 subjects a call, 110,000 subjects per 30 days
per category (Segment-only, Segment & Destination), 600 creations a minute, a workspace
suppression that a source's ``UNSUPPRESS`` cannot lift, and no deletion while a replay runs.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from headwater.errors import InvalidError, RegulationRefused
from headwater.privacy.erasure import KINDS_OF, Subjects
from headwater.store import schema
from headwater.store.database import write_transaction

# --- Segment's words ---------------------------------------------------------------------------

SUPPRESS_ONLY = "SUPPRESS_ONLY"
UNSUPPRESS = "UNSUPPRESS"
SUPPRESS_WITH_DELETE = "SUPPRESS_WITH_DELETE"
DELETE_INTERNAL = "DELETE_INTERNAL"
SUPPRESS_WITH_DELETE_INTERNAL = "SUPPRESS_WITH_DELETE_INTERNAL"
DELETE_ONLY = "DELETE_ONLY"
DELETE_ARCHIVE_ONLY = "DELETE_ARCHIVE_ONLY"
REGULATION_TYPES = (
    SUPPRESS_ONLY,
    UNSUPPRESS,
    SUPPRESS_WITH_DELETE,
    DELETE_INTERNAL,
    SUPPRESS_WITH_DELETE_INTERNAL,
    DELETE_ONLY,
    DELETE_ARCHIVE_ONLY,
)
SUPPRESSING = frozenset({SUPPRESS_ONLY, SUPPRESS_WITH_DELETE, SUPPRESS_WITH_DELETE_INTERNAL})
DELETING = frozenset(t for t, kinds in KINDS_OF.items() if kinds)

USER_ID, ANONYMOUS_ID, OBJECT_ID = "USER_ID", "ANONYMOUS_ID", "OBJECT_ID"
SUBJECT_TYPES = (USER_ID, ANONYMOUS_ID, OBJECT_ID)

# The overall and per-step statuses, exactly these (A-DS-7).
INITIALIZED = "INITIALIZED"
INVALID = "INVALID"
NOT_SUPPORTED = "NOT_SUPPORTED"
RUNNING = "RUNNING"
PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
FAILED = "FAILED"
FINISHED = "FINISHED"
STATUSES = (INITIALIZED, INVALID, NOT_SUPPORTED, RUNNING, PARTIAL_SUCCESS, FAILED, FINISHED)
DONE = frozenset({INVALID, NOT_SUPPORTED, PARTIAL_SUCCESS, FAILED, FINISHED})

# The two rate-limit buckets of §10.1.
SEGMENT_ONLY = "Segment-only"
SEGMENT_AND_DESTINATION = "Segment & Destination"
CATEGORY = {
    **dict.fromkeys(
        (DELETE_INTERNAL, SUPPRESS_WITH_DELETE_INTERNAL, SUPPRESS_ONLY, UNSUPPRESS),
        SEGMENT_ONLY,
    ),
    DELETE_ARCHIVE_ONLY: SEGMENT_ONLY,
    DELETE_ONLY: SEGMENT_AND_DESTINATION,
    SUPPRESS_WITH_DELETE: SEGMENT_AND_DESTINATION,
}

# What each scope takes (§10.5): the workspace every type but DELETE_ARCHIVE_ONLY; a source
# every type, ANONYMOUS_ID only with DELETE_ARCHIVE_ONLY; a cloud source its objects, deleted.
WORKSPACE, SOURCE, CLOUD_SOURCE = "workspace", "source", "cloudsource"
TYPES_OF_SCOPE: Mapping[str, tuple[str, ...]] = {
    WORKSPACE: tuple(t for t in REGULATION_TYPES if t != DELETE_ARCHIVE_ONLY),
    SOURCE: REGULATION_TYPES,
    CLOUD_SOURCE: tuple(t for t in REGULATION_TYPES if t in DELETING and t != DELETE_ARCHIVE_ONLY),
}
SUBJECT_TYPES_OF_SCOPE: Mapping[str, tuple[str, ...]] = {
    WORKSPACE: (USER_ID, OBJECT_ID),
    SOURCE: (USER_ID, ANONYMOUS_ID),
    CLOUD_SOURCE: (OBJECT_ID,),
}

# --- limits ------------------------------------------------------------------------------------

MAX_SUBJECTS_PER_CALL = 5_000
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_SUBJECT_LENGTH = 1_000
SUBJECTS_PER_PERIOD = 110_000
PERIOD_SECONDS = 30 * 24 * 3600
CREATES_PER_MINUTE = 600
REPLAY_STALE_SECONDS = 600.0  # a replay not heard from for this long died with its process

SUPPRESSION_VERSION_KEY = "suppression_version"


@dataclass(frozen=True)
class Regulation:
    id: str
    workspace_id: str
    source_id: str | None
    collection: str | None
    regulation_type: str
    subject_type: str
    subjects: tuple[str, ...]
    status: str
    created_at: float
    finished_at: float | None
    expanded: Subjects | None
    due_at: float | None
    error: str | None

    @property
    def scope(self) -> str:
        if self.source_id is None:
            return WORKSPACE
        return SOURCE if self.collection is None else CLOUD_SOURCE

    def requested(self) -> Subjects:
        """The subjects as the request named them, before the identity graph widens them."""
        ids = frozenset(self.subjects)
        if self.subject_type == ANONYMOUS_ID:
            return Subjects(anonymous_ids=ids)
        if self.subject_type == OBJECT_ID:
            return Subjects(object_ids=ids)
        return Subjects(user_ids=ids)


@dataclass(frozen=True)
class Step:
    """One eraser's outcome for one regulation."""

    kind: str
    target_id: str
    name: str
    position: int
    status: str
    attempts: int
    due_at: float | None
    detail: str
    finished_at: float | None


@dataclass(frozen=True)
class Created:
    regulation: Regulation
    remaining: int  # subjects left this period in the regulation's category
    reset_at: float  # when the oldest regulation counted leaves the period


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    next_cursor: str | None
    previous_cursor: str | None


def new_regulation_id() -> str:
    return "reg_" + secrets.token_hex(12)


def http_date(epoch: float) -> str:
    """RFC 5322's date, as ``X-RateLimit-Reset`` carries it (``Tue, 31 Dec 2024 23:59:59 GMT``)."""
    return formatdate(epoch, usegmt=True)


def check_request(
    scope: str,
    regulation_type: object,
    subject_type: object,
    subject_ids: object,
    collection: object = None,
) -> tuple[str, str, tuple[str, ...], str | None]:
    """The request's values, or ``RegulationRefused`` (400) naming the field."""
    if not isinstance(regulation_type, str) or regulation_type not in REGULATION_TYPES:
        raise RegulationRefused(
            f"regulationType must be one of {', '.join(TYPES_OF_SCOPE[scope])}",
            field="regulationType",
        )
    if regulation_type not in TYPES_OF_SCOPE[scope]:
        where = {
            WORKSPACE: "a workspace (use /regulations/sources/{sourceId})",
            SOURCE: "a source",
            CLOUD_SOURCE: "a cloud source",
        }[scope]
        raise RegulationRefused(
            f"regulationType {regulation_type} is not allowed on {where}", field="regulationType"
        )
    if not isinstance(subject_type, str) or subject_type not in SUBJECT_TYPES_OF_SCOPE[scope]:
        raise RegulationRefused(
            f"subjectType must be one of {', '.join(SUBJECT_TYPES_OF_SCOPE[scope])}",
            field="subjectType",
        )
    if subject_type == ANONYMOUS_ID and regulation_type != DELETE_ARCHIVE_ONLY:
        raise RegulationRefused(
            "subjectType ANONYMOUS_ID is only allowed with regulationType DELETE_ARCHIVE_ONLY",
            field="subjectType",
        )
    if subject_type == OBJECT_ID and regulation_type not in DELETING:
        raise RegulationRefused(
            "subjectType OBJECT_ID is only allowed with a regulationType that deletes",
            field="subjectType",
        )
    if not isinstance(subject_ids, list) or not subject_ids:
        raise RegulationRefused("subjectIds must be a non-empty array", field="subjectIds")
    if len(subject_ids) > MAX_SUBJECTS_PER_CALL:
        raise RegulationRefused(
            f"subjectIds must contain less than or equal to {MAX_SUBJECTS_PER_CALL} items",
            field="subjectIds",
        )
    ids: dict[str, None] = {}
    for index, value in enumerate(subject_ids):
        if not isinstance(value, str) or not value.strip():
            raise RegulationRefused(
                f"subjectIds[{index}] must be a non-empty string", field="subjectIds"
            )
        if len(value) > MAX_SUBJECT_LENGTH or "\x00" in value or not _unicode(value):
            raise RegulationRefused(
                f"subjectIds[{index}] must be Unicode text of at most {MAX_SUBJECT_LENGTH} "
                "characters without NUL",
                field="subjectIds",
            )
        ids[value] = None
    found_collection: str | None = None
    if scope == CLOUD_SOURCE:
        if not isinstance(collection, str) or not collection.strip() or len(collection) > 200:
            raise RegulationRefused(
                "collection must be the cloud source's collection (a string of at most 200 "
                "characters)",
                field="collection",
            )
        if "\x00" in collection or not _unicode(collection):
            raise RegulationRefused("collection must be Unicode text", field="collection")
        found_collection = collection
    elif collection is not None:
        raise RegulationRefused("collection is only for cloud sources", field="collection")
    return regulation_type, subject_type, tuple(ids), found_collection


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "o" or not number.isdigit() or len(number) > 12:
        raise InvalidError("not a cursor this API gave", "pagination.cursor")
    return int(number)


def _page(items: list[Any], total: int, offset: int, count: int) -> Page:
    return Page(
        items,
        total,
        encode_cursor(offset + count) if offset + count < total else None,
        encode_cursor(max(0, offset - count)) if offset > 0 else None,
    )


class Regulations:
    """The regulations of a state database, as the REST API and the runner read them."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    # --- creating -----------------------------------------------------------------------------

    def create(
        self,
        workspace_id: str,
        scope: str,
        regulation_type: object,
        subject_type: object,
        subject_ids: object,
        *,
        source_id: str | None = None,
        collection: object = None,
    ) -> Created:
        """A new ``INITIALIZED`` regulation, or ``RegulationRefused`` saying why not."""
        type_, subject_type_, ids, collection_ = check_request(
            scope, regulation_type, subject_type, subject_ids, collection
        )
        now = self._clock()
        category = CATEGORY[type_]
        with write_transaction(self._engine) as conn:
            if conn.dialect.name == "postgresql":
                # Two creates at once must not both pass the limits below (SQLite's writes
                # are serial already): one workspace's creates take turns.
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": f"regulations:{workspace_id}"},
                )
            self._check_rate(conn, workspace_id, now)
            used, oldest = self._used(conn, workspace_id, category, now)
            reset_at = (oldest if oldest is not None else now) + PERIOD_SECONDS
            if used + len(ids) > SUBJECTS_PER_PERIOD:
                raise RegulationRefused(
                    f"{category} regulations are limited to {SUBJECTS_PER_PERIOD} subjects per "
                    f"30 days; {max(0, SUBJECTS_PER_PERIOD - used)} remain until "
                    f"{http_date(reset_at)}",
                    status=429,
                    headers={
                        "X-RateLimit-Remaining": str(max(0, SUBJECTS_PER_PERIOD - used)),
                        "X-RateLimit-Reset": http_date(reset_at),
                    },
                )
            if type_ == UNSUPPRESS and scope == SOURCE:
                held = self._workspace_suppressed(conn, workspace_id, ids)
                if held:
                    raise RegulationRefused(
                        f"subject {held!r} is suppressed for the whole workspace; a source's "
                        "UNSUPPRESS cannot lift it (send UNSUPPRESS to /regulations)",
                        field="subjectIds",
                    )
            if type_ in DELETING:
                replay = self._replay_running(conn, now)
                if replay is not None:
                    raise RegulationRefused(
                        "a replay is running (destination "
                        f"{replay}); no deletion may be submitted until it ends, since "
                        "it would send the deleted data again",
                        status=409,
                    )
            regulation = Regulation(
                id=new_regulation_id(),
                workspace_id=workspace_id,
                source_id=source_id,
                collection=collection_,
                regulation_type=type_,
                subject_type=subject_type_,
                subjects=ids,
                status=INITIALIZED,
                created_at=now,
                finished_at=None,
                expanded=None,
                due_at=now,
                error=None,
            )
            conn.execute(
                schema.regulations.insert().values(
                    id=regulation.id,
                    workspace_id=workspace_id,
                    source_id=source_id,
                    collection=collection_,
                    regulation_type=type_,
                    subject_type=subject_type_,
                    subjects=list(ids),
                    subject_count=len(ids),
                    status=INITIALIZED,
                    created_at=now,
                    due_at=now,
                )
            )
        return Created(regulation, SUBJECTS_PER_PERIOD - used - len(ids), reset_at)

    def _check_rate(self, conn: Connection, workspace_id: str, now: float) -> None:
        r = schema.regulations
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(r.c.created_at)).where(
                r.c.workspace_id == workspace_id, r.c.created_at > now - 60
            )
        ).one()
        if row[0] >= CREATES_PER_MINUTE:
            reset_at = float(row[1]) + 60
            raise RegulationRefused(
                f"regulations may be created {CREATES_PER_MINUTE} times a minute; "
                f"retry after {http_date(reset_at)}",
                status=429,
                headers={
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": http_date(reset_at),
                    "Retry-After": str(max(1, int(reset_at - now + 0.999))),
                },
            )

    def _used(
        self, conn: Connection, workspace_id: str, category: str, now: float
    ) -> tuple[int, float | None]:
        r = schema.regulations
        types = [t for t, c in CATEGORY.items() if c == category]
        row = conn.execute(
            sa.select(sa.func.sum(r.c.subject_count), sa.func.min(r.c.created_at)).where(
                r.c.workspace_id == workspace_id,
                r.c.regulation_type.in_(types),
                r.c.created_at > now - PERIOD_SECONDS,
            )
        ).one()
        return int(row[0] or 0), (float(row[1]) if row[1] is not None else None)

    def usage(self, workspace_id: str) -> dict[str, tuple[int, float]]:
        """Subjects remaining this period per category, and when each resets."""
        now = self._clock()
        out: dict[str, tuple[int, float]] = {}
        with self._engine.connect() as conn:
            for category in (SEGMENT_ONLY, SEGMENT_AND_DESTINATION):
                used, oldest = self._used(conn, workspace_id, category, now)
                reset_at = (oldest if oldest is not None else now) + PERIOD_SECONDS
                out[category] = (max(0, SUBJECTS_PER_PERIOD - used), reset_at)
        return out

    def _workspace_suppressed(
        self, conn: Connection, workspace_id: str, ids: Sequence[str]
    ) -> str | None:
        """A subject suppressed workspace-wide, in effect or waiting for the worker."""
        s = schema.suppressed_subjects
        for chunk in _chunks(ids, 500):
            found = conn.execute(
                sa.select(s.c.subject_id)
                .where(s.c.workspace_id == workspace_id, s.c.scope == "", s.c.subject_id.in_(chunk))
                .limit(1)
            ).scalar_one_or_none()
            if found is not None:
                return str(found)
        wanted = set(ids)
        r = schema.regulations
        pending = conn.execute(
            sa.select(r.c.subjects).where(
                r.c.workspace_id == workspace_id,
                r.c.source_id.is_(None),
                r.c.status == INITIALIZED,
                r.c.regulation_type.in_(sorted(SUPPRESSING)),
            )
        ).scalars()
        for subjects in pending:
            hit = wanted.intersection(subjects)
            if hit:
                return sorted(hit)[0]
        return None

    # --- reading ------------------------------------------------------------------------------

    def get(self, regulation_id: str) -> Regulation | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.regulations).where(schema.regulations.c.id == regulation_id)
            ).one_or_none()
        return regulation_from_row(row._mapping) if row is not None else None

    def steps(self, regulation_id: str) -> list[Step]:
        t = schema.regulation_steps
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.regulation_id == regulation_id).order_by(t.c.position)
            ).all()
        return [_step(row._mapping) for row in rows]

    def list(
        self,
        workspace_id: str,
        *,
        source_id: str | None = None,
        statuses: Iterable[str] = (),
        types: Iterable[str] = (),
        cursor: str | None = None,
        count: int = 100,
    ) -> Page:
        """Newest first; ``source_id`` narrows to that source's (and its cloud collections')."""
        offset = decode_cursor(cursor)
        r = schema.regulations
        where = [r.c.workspace_id == workspace_id]
        if source_id is not None:
            where.append(r.c.source_id == source_id)
        statuses, types = list(statuses), list(types)
        if statuses:
            where.append(r.c.status.in_(statuses))
        if types:
            where.append(r.c.regulation_type.in_(types))
        with self._engine.connect() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one())
            rows = conn.execute(
                sa.select(r)
                .where(*where)
                .order_by(r.c.created_at.desc(), r.c.id.desc())
                .offset(offset)
                .limit(count)
            ).all()
        return _page([regulation_from_row(row._mapping) for row in rows], total, offset, count)

    def suppressed(
        self,
        workspace_id: str,
        *,
        scope: str = "",
        types: Sequence[str] = (SUPPRESS_ONLY,),
        cursor: str | None = None,
        count: int = 1000,
    ) -> Page:
        """Subjects suppressed now in ``scope`` ('' the workspace, else a source id) by one of
        ``types``: the Suppressed Users list shows SUPPRESS_ONLY's only (§10.4)."""
        offset = decode_cursor(cursor)
        s = schema.suppressed_subjects
        where = [
            s.c.workspace_id == workspace_id,
            s.c.scope == scope,
            s.c.regulation_type.in_(list(types)),
        ]
        with self._engine.connect() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one())
            ids = conn.execute(
                sa.select(s.c.subject_id)
                .where(*where)
                .order_by(s.c.subject_id)
                .offset(offset)
                .limit(count)
            ).scalars()
            return _page([str(i) for i in ids], total, offset, count)

    # --- suppression, as the ingest stage reads it ----------------------------------------------

    def suppression_version(self) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == SUPPRESSION_VERSION_KEY)
            ).scalar_one_or_none()
        return int(value) if value else 0

    def suppression_sets(self) -> dict[tuple[str, str], frozenset[str]]:
        """Every suppressed subject, by (workspace, scope)."""
        s = schema.suppressed_subjects
        found: dict[tuple[str, str], set[str]] = {}
        with self._engine.connect() as conn:
            for workspace_id, scope, subject in conn.execute(
                sa.select(s.c.workspace_id, s.c.scope, s.c.subject_id)
            ):
                found.setdefault((workspace_id, scope), set()).add(subject)
        return {key: frozenset(ids) for key, ids in found.items()}

    # --- replays (§10.3) ----------------------------------------------------------------------

    def deletion_pending(self, workspace_id: str | None = None) -> Regulation | None:
        """A deleting regulation not yet done, if any."""
        r = schema.regulations
        where: list[sa.ColumnElement[bool]] = [
            r.c.status.in_([INITIALIZED, RUNNING]),
            r.c.regulation_type.in_(sorted(DELETING)),
        ]
        if workspace_id is not None:
            where.append(r.c.workspace_id == workspace_id)
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(r).where(*where).order_by(r.c.created_at).limit(1)
            ).one_or_none()
        return regulation_from_row(row._mapping) if row is not None else None

    def begin_replay(self, destination_id: str) -> str:
        """Record a replay as running, or refuse (409) while a deletion waits or runs."""
        now = self._clock()
        replay_id = "rpl_" + secrets.token_hex(8)
        with write_transaction(self._engine) as conn:
            r = schema.regulations
            waiting = conn.execute(
                sa.select(r.c.id)
                .where(
                    r.c.status.in_([INITIALIZED, RUNNING]),
                    r.c.regulation_type.in_(sorted(DELETING)),
                )
                .limit(1)
            ).scalar_one_or_none()
            if waiting is not None:
                raise RegulationRefused(
                    f"a deletion ({waiting}) is pending; replays wait until every deletion "
                    "has finished, so deleted data is never sent again",
                    status=409,
                )
            conn.execute(
                schema.replays_running.insert().values(
                    id=replay_id, destination_id=destination_id, started_at=now, beat_at=now
                )
            )
        return replay_id

    def beat_replay(self, replay_id: str) -> None:
        t = schema.replays_running
        with write_transaction(self._engine) as conn:
            conn.execute(t.update().where(t.c.id == replay_id).values(beat_at=self._clock()))

    def end_replay(self, replay_id: str) -> None:
        t = schema.replays_running
        with write_transaction(self._engine) as conn:
            conn.execute(t.delete().where(t.c.id == replay_id))

    def _replay_running(self, conn: Connection, now: float) -> str | None:
        t = schema.replays_running
        found = conn.execute(
            sa.select(t.c.destination_id).where(t.c.beat_at > now - REPLAY_STALE_SECONDS).limit(1)
        ).scalar_one_or_none()
        return None if found is None else str(found)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def regulation_from_row(row: RowMapping) -> Regulation:
    expanded = row["expanded"]
    return Regulation(
        id=row["id"],
        workspace_id=row["workspace_id"],
        source_id=row["source_id"],
        collection=row["collection"],
        regulation_type=row["regulation_type"],
        subject_type=row["subject_type"],
        subjects=tuple(row["subjects"]),
        status=row["status"],
        created_at=float(row["created_at"]),
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        expanded=None if expanded is None else Subjects.from_json(expanded),
        due_at=None if row["due_at"] is None else float(row["due_at"]),
        error=row["error"],
    )


def _step(row: RowMapping) -> Step:
    return Step(
        kind=row["kind"],
        target_id=row["target_id"],
        name=row["name"],
        position=int(row["position"]),
        status=row["status"],
        attempts=int(row["attempts"]),
        due_at=None if row["due_at"] is None else float(row["due_at"]),
        detail=row["detail"] or "",
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
    )
