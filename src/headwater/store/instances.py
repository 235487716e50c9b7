"""Named instances of a workspace (destinations, warehouses): found by id or name, a name
unique in the workspace, and secrets that are never shown and never lost.

``REDACTED`` stands for a secret in everything shown (API, exports, plans); sending it back, or
leaving the secret out, keeps the stored value, so an exported file applies cleanly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store.workspace import Unset, WorkspaceStore, check_name

REDACTED = "[redacted]"


class Instances:
    """Lookups on one table of named instances (``id``, ``workspace_id``, ``name`` columns)."""

    def __init__(self, workspace: WorkspaceStore, table: sa.Table, noun: str) -> None:
        self._workspace = workspace
        self._table = table
        self._noun = noun

    def find(self, conn: Connection, id_or_name: str) -> Row[Any] | None:
        t = self._table
        row = conn.execute(sa.select(t).where(t.c.id == id_or_name)).first()
        if row is not None:
            return row
        workspace_id = self._workspace.workspace_id(conn)
        return conn.execute(
            sa.select(t).where(t.c.workspace_id == workspace_id, t.c.name == id_or_name)
        ).first()

    def require(self, conn: Connection, id_or_name: str) -> Row[Any]:
        row = self.find(conn, id_or_name)
        if row is None:
            raise NotFoundError(f"no {self._noun} has the id or name {id_or_name!r}")
        return row

    def name_and_enabled(
        self, conn: Connection, row: Row[Any], name: str | Unset, enabled: bool | Unset
    ) -> dict[str, Any]:
        """The column values an update's ``name`` and ``enabled`` change, checked."""
        values: dict[str, Any] = {}
        if not isinstance(name, Unset) and name != row.name:
            check_name(name)
            self.check_name_free(conn, row.workspace_id, name)
            values["name"] = name
        if not isinstance(enabled, Unset):
            if not isinstance(enabled, bool):
                raise InvalidError("must be true or false", "enabled")
            values["enabled"] = enabled
        return values

    def check_name_free(self, conn: Connection, workspace_id: str, name: str) -> None:
        t = self._table
        if (
            conn.execute(
                sa.select(t.c.id).where(t.c.workspace_id == workspace_id, t.c.name == name)
            ).first()
            is not None
        ):
            raise ConflictError(f"a {self._noun} named {name!r} already exists", "name")


def redact(settings: Mapping[str, Any], secrets: Iterable[str]) -> dict[str, Any]:
    """Settings fit to show: every secret that is set becomes ``REDACTED``."""
    hidden = frozenset(secrets)
    return {
        k: (REDACTED if k in hidden and v not in (None, "", {}, []) else v)
        for k, v in settings.items()
    }


def keep_secrets(
    new: Mapping[str, Any], old: Mapping[str, Any], secrets: Iterable[str]
) -> dict[str, Any]:
    """The settings to store: secrets not sent (or sent as ``REDACTED``) keep their value."""
    merged = dict(new)
    for key in secrets:
        if merged.get(key, REDACTED) == REDACTED:
            if key in old:
                merged[key] = old[key]
            else:
                merged.pop(key, None)
    return merged
