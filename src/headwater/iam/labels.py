"""Labels (§20.4): ``key:value`` pairs on sources and spaces, which permissions can name.

Key and value begin with a letter and hold letters, digits, ``-`` and ``_``. A resource carries
at most one value per key. A label in use — on a source or space, or in a permission — cannot
be deleted, and labels are never renamed. Every workspace has ``environment:dev`` and
``environment:prod`` (migration 35 creates them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.iam.access import Label
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore

LabeledType = Literal["SOURCE", "SPACE"]
DEFAULT_LABELS: Final[tuple[Label, ...]] = (("environment", "dev"), ("environment", "prod"))
MAX_PART: Final = 100
MAX_DESCRIPTION: Final = 1000
_PART = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class LabelInfo:
    key: str
    value: str
    description: str
    created_at: int


def check_label(key: object, value: object, field: str = "label") -> Label:
    """A valid label, else InvalidError (``1env:prod`` and ``env:`` are refused)."""
    for part, name in ((key, "key"), (value, "value")):
        if not isinstance(part, str) or not _PART.fullmatch(part):
            raise InvalidError(
                f"the {name} must begin with a letter and contain only letters, digits, "
                "'-' and '_'",
                f"{field}.{name}",
            )
        if len(part) > MAX_PART:
            raise InvalidError(
                f"the {name} must be at most {MAX_PART} characters", f"{field}.{name}"
            )
    assert isinstance(key, str) and isinstance(value, str)
    return key, value


class LabelStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def list(self) -> list[LabelInfo]:
        t = schema.iam_labels
        with self._workspace.reading() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.key, t.c.value))
            return [LabelInfo(r.key, r.value, r.description, r.created_at) for r in rows]

    def create(self, key: object, value: object, description: str = "") -> LabelInfo:
        key, value = check_label(key, value)
        if len(description) > MAX_DESCRIPTION:
            raise InvalidError(f"must be at most {MAX_DESCRIPTION} characters", "label.description")
        t = schema.iam_labels
        with self._workspace.writing() as conn:
            if _exists(conn, (key, value)):
                raise ConflictError(f"the label {key}:{value} exists already")
            now = self._workspace.now()
            conn.execute(
                t.insert().values(key=key, value=value, description=description, created_at=now)
            )
        return LabelInfo(key, value, description, now)

    def delete(self, key: str, value: str) -> None:
        """Delete a label no source, space or permission uses."""
        label = (key, value)
        with self._workspace.writing() as conn:
            if not _exists(conn, label):
                raise NotFoundError(f"no label {key}:{value}")
            if _in_use(conn, label):
                raise ConflictError(
                    f"the label {key}:{value} is in use (on a source, a space or in a "
                    "permission); remove it from them first"
                )
            t = schema.iam_labels
            conn.execute(t.delete().where(t.c.key == key, t.c.value == value))

    def labels_of(self, type_: LabeledType, resource_id: str) -> tuple[Label, ...]:
        with self._workspace.reading() as conn:
            return labels_of(conn, type_, resource_id)

    def set_labels(
        self, type_: LabeledType, resource_id: str, labels: Sequence[Label]
    ) -> tuple[Label, ...]:
        """Replace a resource's labels: each must exist, one value per key."""
        keys: dict[str, str] = {}
        for i, (key, value) in enumerate(labels):
            check_label(key, value, f"labels.{i}")
            if key in keys and keys[key] != value:
                raise ConflictError(
                    f"a resource carries one value per key: {key}:{keys[key]} and {key}:{value}"
                )
            keys[key] = value
        t = schema.resource_labels
        with self._workspace.writing() as conn:
            for key, value in keys.items():
                if not _exists(conn, (key, value)):
                    raise NotFoundError(f"no label {key}:{value}; create it first")
            conn.execute(
                t.delete().where(t.c.resource_type == type_, t.c.resource_id == resource_id)
            )
            if keys:
                conn.execute(
                    t.insert(),
                    [
                        {"resource_type": type_, "resource_id": resource_id, "key": k, "value": v}
                        for k, v in keys.items()
                    ],
                )
            return labels_of(conn, type_, resource_id)


def labels_of(conn: Connection, type_: str, resource_id: str) -> tuple[Label, ...]:
    t = schema.resource_labels
    rows = conn.execute(
        sa.select(t.c.key, t.c.value)
        .where(t.c.resource_type == type_, t.c.resource_id == resource_id)
        .order_by(t.c.key)
    )
    return tuple((r.key, r.value) for r in rows)


def missing_labels(conn: Connection, labels: Iterable[Label]) -> list[Label]:
    """The labels of ``labels`` that do not exist."""
    return [label for label in labels if not _exists(conn, label)]


def _exists(conn: Connection, label: Label) -> bool:
    t = schema.iam_labels
    found = conn.execute(
        sa.select(t.c.key).where(t.c.key == label[0], t.c.value == label[1])
    ).first()
    return found is not None


def _in_use(conn: Connection, label: Label) -> bool:
    t = schema.resource_labels
    for type_, table in (("SOURCE", schema.sources), ("SPACE", schema.spaces)):
        # Labels of deleted sources and spaces linger in ``resource_labels``: they do not count.
        used = conn.execute(
            sa.select(t.c.resource_id)
            .join(table, table.c.id == t.c.resource_id)
            .where(t.c.resource_type == type_, t.c.key == label[0], t.c.value == label[1])
            .limit(1)
        ).first()
        if used is not None:
            return True
    p = schema.iam_permissions
    return any(
        [label[0], label[1]] in (row.labels or []) for row in conn.execute(sa.select(p.c.labels))
    )
