"""Transformations in the state database, and the compiled set the router and loaders read.

Every change bumps the config version, so each process's ``TransformationCache`` recompiles the
set (the ``if`` statements and the paths) once, not per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.protocols.transformations.apply import Transformations
from headwater.protocols.transformations.model import Transformation, from_api, to_input, updated
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import WorkspaceStore, new_id

T = schema.transformations


def _row_to(row: Row[Any]) -> Transformation:
    body = dict(row.body)
    body.update(
        name=row.name,
        enabled=bool(row.enabled),
        sourceId=row.source_id,
    )
    if row.destination_metadata_id is not None:
        body["destinationMetadataId"] = row.destination_metadata_id
    t = from_api(body)
    return replace(t, id=row.id, created_at=row.created_at, updated_at=row.updated_at)


def _unique_key(t: Transformation) -> tuple[str, str, str]:
    matcher = t.matcher
    event = f"{matcher[0]}:{matcher[1]}" if matcher is not None else "if:" + t.if_.strip()
    return t.source_id, event, t.destination_metadata_id or ""


def _describe(t: Transformation) -> str:
    matcher = t.matcher
    event = (
        f"the {matcher[0]} event {matcher[1]!r}"
        if matcher and matcher[0] == "track"
        else (f"{matcher[0]} calls" if matcher else f"events matching {t.if_!r}")
    )
    scope = (
        f"destination {t.destination_metadata_id!r}"
        if t.destination_metadata_id
        else "the source scope"
    )
    return f"{event} of this source in {scope}"


class TransformationStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def list(self, source: str | None = None) -> list[Transformation]:
        """Every transformation (of ``source`` when given), oldest first."""
        with self._workspace.reading() as conn:
            query = sa.select(T).order_by(T.c.created_at, T.c.id)
            if source is not None:
                query = query.where(T.c.source_id == self._workspace.require(conn, source).id)
            return [_row_to(row) for row in conn.execute(query)]

    def get(self, transformation_id: str) -> Transformation:
        with self._workspace.reading() as conn:
            return self._get(conn, transformation_id)

    def _get(self, conn: Connection, transformation_id: str) -> Transformation:
        row = conn.execute(sa.select(T).where(T.c.id == transformation_id)).first()
        if row is None:
            raise NotFoundError(f"no transformation {transformation_id!r}")
        return _row_to(row)

    def _resolve_source(self, conn: Connection, t: Transformation) -> Transformation:
        try:
            found = self._workspace.require(conn, t.source_id)
        except NotFoundError:
            raise InvalidError(f"no source {t.source_id!r}", "sourceId") from None
        return replace(t, source_id=str(found.id))

    def _check_unique(self, conn: Connection, t: Transformation) -> None:
        key = _unique_key(t)
        rows = conn.execute(
            sa.select(T).where(T.c.source_id == t.source_id, T.c.id != (t.id or ""))
        ).all()
        for row in rows:
            other = _row_to(row)
            if _unique_key(other) == key:
                raise ConflictError(
                    f"a transformation already exists for {_describe(t)}: {other.name!r}"
                    f" ({other.id}); edit that one instead",
                    "if",
                )

    def create(self, body: object) -> Transformation:
        """Store a transformation from a Public API input body."""
        t = from_api(body)
        with self._workspace.writing() as conn:
            return self.create_in(conn, t)

    def create_in(self, conn: Connection, t: Transformation) -> Transformation:
        t = self._resolve_source(conn, t)
        t = replace(t, id="tfm_" + new_id())
        self._check_unique(conn, t)
        now = self._workspace.now()
        conn.execute(
            T.insert().values(
                id=t.id,
                source_id=t.source_id,
                destination_metadata_id=t.destination_metadata_id,
                name=t.name,
                enabled=t.enabled,
                body=_body(t),
                created_at=now,
                updated_at=now,
            )
        )
        self._workspace.bump(conn)
        return replace(t, created_at=now, updated_at=now)

    def update(self, transformation_id: str, body: object) -> Transformation:
        """Apply a PATCH body: name, enabled and the resulting names and values change;
        source, destination and event do not."""
        with self._workspace.writing() as conn:
            current = self._get(conn, transformation_id)
            changed = updated(current, body)
            return self.save_in(conn, changed)

    def save_in(self, conn: Connection, t: Transformation) -> Transformation:
        self._check_unique(conn, t)
        now = self._workspace.now()
        conn.execute(
            T.update()
            .where(T.c.id == t.id)
            .values(name=t.name, enabled=t.enabled, body=_body(t), updated_at=now)
        )
        self._workspace.bump(conn)
        return replace(t, updated_at=now)

    def delete(self, transformation_id: str) -> None:
        with self._workspace.writing() as conn:
            self.delete_in(conn, transformation_id)

    def delete_in(self, conn: Connection, transformation_id: str) -> None:
        deleted = conn.execute(T.delete().where(T.c.id == transformation_id)).rowcount
        if not deleted:
            raise NotFoundError(f"no transformation {transformation_id!r}")
        self._workspace.bump(conn)


def _body(t: Transformation) -> dict[str, Any]:
    body = to_input(t)
    for column in ("name", "enabled", "sourceId", "destinationMetadataId"):
        body.pop(column, None)
    return body


class TransformationCache:
    """The compiled transformations, rebuilt when the config version changes (checked at most
    once a second)."""

    def __init__(
        self,
        store: TransformationStore,
        workspace: WorkspaceStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = ConfigSnapshot(
            workspace.config_version,
            lambda: Transformations(store.list()),
            Transformations(),
            clock=clock,
        )

    def current(self) -> Transformations:
        return self._snapshot.get()

    def refresh(self, force: bool = False) -> None:
        self._snapshot.refresh(force)
