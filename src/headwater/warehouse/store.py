"""Warehouse instances: where events are loaded, how often, and what Selective Sync leaves out.

As destination instances: a name unique in the workspace, settings validated by the kind's
model, secrets never shown again (``[redacted]`` keeps the stored value on update). Sources are
stored by id (names are resolved when saved), and each source's schema name — its slug in
snake_case unless overridden — must be unique within the warehouse (Segment: two sources
cannot share a schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.instances import Instances, keep_secrets
from headwater.store.instances import redact as redact_secrets
from headwater.store.workspace import (
    UNSET,
    Unset,
    WorkspaceStore,
    check_name,
    check_settings,
    new_id,
)
from headwater.warehouse.naming import check_schema_name, default_schema_name
from headwater.warehouse.settings import KINDS, SECRETS, WarehouseOptions, parse_settings


@dataclass(frozen=True)
class WarehouseInfo:
    id: str
    workspace_id: str
    name: str
    type: str
    enabled: bool
    settings: Mapping[str, Any]  # with secrets: for connecting only, never for display
    options: WarehouseOptions
    created_at: int
    updated_at: int

    def shown_settings(self) -> dict[str, Any]:
        return redact(self.type, self.settings)


def redact(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings fit to show: every secret that is set becomes ``REDACTED``."""
    return redact_secrets(settings, SECRETS.get(kind, frozenset()))


class WarehouseStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace
        self._rows = Instances(workspace, schema.warehouses, "warehouse")

    @property
    def workspace(self) -> WorkspaceStore:
        return self._workspace

    def list(self) -> list[WarehouseInfo]:
        w = schema.warehouses
        with self._workspace.reading() as conn:
            workspace_id = self._workspace.workspace_id(conn)
            if workspace_id is None:
                return []
            return [
                _info(r)
                for r in conn.execute(
                    sa.select(w).where(w.c.workspace_id == workspace_id).order_by(w.c.name)
                )
            ]

    def get(self, id_or_name: str) -> WarehouseInfo | None:
        with self._workspace.reading() as conn:
            row = self._rows.find(conn, id_or_name)
            return _info(row) if row is not None else None

    def require(self, id_or_name: str) -> WarehouseInfo:
        with self._workspace.reading() as conn:
            return _info(self._rows.require(conn, id_or_name))

    def create(
        self,
        name: str,
        type: str,
        *,
        enabled: bool = True,
        settings: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> WarehouseInfo:
        check_name(name)
        stored = _validated(type, check_settings(settings or {}), {})
        with self._workspace.writing() as conn:
            workspace_id = self._workspace.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._rows.check_name_free(conn, workspace_id, name)
            checked = self._options(conn, options or {})
            now = self._workspace.now()
            warehouse_id = "wh_" + new_id()
            conn.execute(
                schema.warehouses.insert().values(
                    id=warehouse_id,
                    workspace_id=workspace_id,
                    name=name,
                    type=type,
                    enabled=bool(enabled),
                    settings=stored,
                    options=checked,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._workspace.bump(conn)
            return _info(self._rows.require(conn, warehouse_id))

    def update(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        settings: Mapping[str, Any] | Unset = UNSET,
        options: Mapping[str, Any] | Unset = UNSET,
    ) -> WarehouseInfo:
        with self._workspace.writing() as conn:
            row = self._rows.require(conn, id_or_name)
            values = self._rows.name_and_enabled(conn, row, name, enabled)
            if not isinstance(settings, Unset):
                values["settings"] = _validated(
                    row.type, check_settings(settings), dict(row.settings or {})
                )
            if not isinstance(options, Unset):
                values["options"] = self._options(conn, options)
            if values:
                values["updated_at"] = self._workspace.now()
                conn.execute(
                    sa.update(schema.warehouses)
                    .where(schema.warehouses.c.id == row.id)
                    .values(**values)
                )
                self._workspace.bump(conn)
            return _info(self._rows.require(conn, row.id))

    def delete(self, id_or_name: str) -> None:
        """Refused while a SQL trait queries the warehouse (its warehouse is fixed at
        creation: the trait would fail every run); a deleted trait does not count."""
        with self._workspace.writing() as conn:
            row = self._rows.require(conn, id_or_name)
            traits = _sql_traits(conn, row.id)
            if traits:
                one = len(traits) == 1
                raise ConflictError(
                    f"warehouse {row.name!r} is queried by the SQL trait{'' if one else 's'} "
                    f"{', '.join(traits)}: delete {'it' if one else 'them'} first",
                    "warehouse",
                )
            for table in (
                schema.warehouse_positions,
                schema.warehouse_syncs,
                schema.unify_sync_positions,
            ):
                conn.execute(sa.delete(table).where(table.c.warehouse_id == row.id))
            conn.execute(sa.delete(schema.warehouses).where(schema.warehouses.c.id == row.id))
            self._workspace.bump(conn)

    def schema_names(self, warehouse: WarehouseInfo) -> dict[str, str]:
        """Each source's schema in this warehouse, by source id."""
        with self._workspace.reading() as conn:
            return self._schema_names(conn, warehouse.options)

    # --- helpers -------------------------------------------------------------------------------

    def _options(self, conn: Connection, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Options with source names resolved to ids, checked (schema names distinct)."""
        given = check_settings(raw, "options")
        try:
            options = WarehouseOptions.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            message = (
                str(error["ctx"]["error"]) if "error" in error.get("ctx", {}) else error["msg"]
            )
            raise InvalidError(
                f"{where}: {message}" if where else message,
                f"options.{where}" if where else "options",
            ) from None
        for name in options.schema_names.values():
            try:
                check_schema_name(name)
            except ValueError as exc:
                raise InvalidError(str(exc), "options.schema_names") from None
        resolved = options.model_copy(
            update={
                "sources": None
                if options.sources is None
                else [self._source_id(conn, s, "options.sources") for s in options.sources],
                "schema_names": {
                    self._source_id(conn, s, "options.schema_names"): name
                    for s, name in options.schema_names.items()
                },
                "selective_sync": {
                    self._source_id(conn, s, "options.selective_sync"): rules
                    for s, rules in options.selective_sync.items()
                },
            }
        )
        self._schema_names(conn, resolved)
        return resolved.model_dump(exclude_defaults=True)

    def _schema_names(self, conn: Connection, options: WarehouseOptions) -> dict[str, str]:
        s = schema.sources
        workspace_id = self._workspace.workspace_id(conn)
        found: dict[str, str] = {}
        taken: dict[str, str] = {}
        for row in conn.execute(
            sa.select(s.c.id, s.c.slug)
            .where(s.c.workspace_id == workspace_id)
            .order_by(s.c.created_at, s.c.id)
        ):
            name = options.schema_names.get(row.id) or default_schema_name(row.slug)
            if name in taken:
                raise InvalidError(
                    f"two sources cannot share the schema {name!r}", "options.schema_names"
                )
            taken[name] = row.id
            found[row.id] = name
        return found

    def _source_id(self, conn: Connection, id_or_name: str, field: str) -> str:
        try:
            return str(self._workspace.require(conn, id_or_name).id)
        except NotFoundError as exc:
            raise NotFoundError(exc.message, field) from None


def _validated(kind: object, new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidError(
            f"unknown warehouse type {kind!r}; known types: {', '.join(sorted(KINDS))}", "type"
        )
    merged = keep_secrets(new, old, SECRETS[kind])
    try:
        parse_settings(kind, merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        raise InvalidError(
            f"{path}: {error['msg']}" if path else error["msg"],
            f"settings.{path}" if path else "settings",
        ) from None
    return merged


def _info(row: Row[Any]) -> WarehouseInfo:
    return WarehouseInfo(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        type=row.type,
        enabled=bool(row.enabled),
        settings=dict(row.settings or {}),
        options=WarehouseOptions.model_validate(row.options or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _sql_traits(conn: Connection, warehouse_id: str) -> list[str]:
    """The live SQL traits that query a warehouse, as ``space/key``."""
    traits, spaces = schema.engage_sql_traits, schema.spaces
    rows = conn.execute(
        sa.select(spaces.c.name, traits.c.key)
        .join(spaces, spaces.c.id == traits.c.space_id)
        .where(traits.c.warehouse_id == warehouse_id, traits.c.deleted_at.is_(None))
        .order_by(spaces.c.name, traits.c.key)
    )
    return [f"{space}/{key}" for space, key in rows]
