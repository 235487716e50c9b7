"""Destination instances: a destination of the catalog connected to one source.

``headwater apply`` and the REST API both write through here, inside the workspace store's
transactions, so the rules hold whichever door a change comes in by: a name unique in the
workspace (the CLI and API address instances by name as well as id), a known type, and
settings that the destination's own settings model accepts. Secrets are stored as given and
never shown again: ``shown_settings`` replaces them with ``REDACTED``, and a ``REDACTED`` (or
missing) secret in an update keeps the stored value, so an exported file applies cleanly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection, Row

from headwater.destinations.actions import (
    ActionMapping,
    Mappings,
    check_mappings,
    restore_secrets,
    shown_mapping,
)
from headwater.destinations.definition import OAUTH_SETTING, DestinationDefinition
from headwater.destinations.filters import (
    Apply,
    DestinationFilter,
    check_filters,
    compile_filters,
)
from headwater.destinations.presets import preset_mappings
from headwater.destinations.registry import get
from headwater.errors import InvalidError, ListError, NotFoundError, UnknownDestinationType
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


class DeliveryOptions(BaseModel):
    """How Headwater delivers to one instance; unset values take the destination's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry_window_hours: float = Field(default=4.0, gt=0, le=72)  # Segment: four hours
    concurrency: int | None = Field(default=None, ge=1, le=64)  # requests in flight
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1)  # at most the destination's own limit


@dataclass(frozen=True)
class DestinationInfo:
    id: str
    workspace_id: str
    source_id: str
    name: str
    type: str
    enabled: bool
    settings: Mapping[str, Any]  # with secrets: for delivery only, never for display
    delivery: DeliveryOptions
    created_at: int
    updated_at: int
    filters: tuple[DestinationFilter, ...] = field(default=(), compare=False)
    mappings: tuple[ActionMapping, ...] = field(default=(), compare=False)
    # The insert function it runs (functions.store.FunctionStore.attach_insert) and its
    # settings for it, secrets included: for running it only, never for display.
    insert_function_id: str | None = None
    insert_function_settings: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def definition(self) -> DestinationDefinition:
        return get(self.type)

    @cached_property
    def apply_filters(self) -> Apply | None:
        """The enabled filters as one function (compiled once per configuration change)."""
        return compile_filters(self.filters)

    @cached_property
    def compiled_mappings(self) -> Mappings:
        """The Actions mappings, triggers parsed and fields compiled once per change."""
        return Mappings.compile(self.definition.actions, self.mappings)

    def shown_settings(self) -> dict[str, Any]:
        return redact(self.type, self.settings)

    def shown_mappings(self) -> list[dict[str, Any]]:
        """The mappings fit to show: header values and other secret fields ``[redacted]``."""
        return [shown_mapping(self.definition.actions, m) for m in self.mappings]


def redact(destination_type: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings fit to show: every secret that is set becomes ``REDACTED``."""
    return redact_secrets(settings, get(destination_type).secrets)


class DestinationStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace
        self._rows = Instances(workspace, schema.destinations, "destination")

    # --- reading -------------------------------------------------------------------------------

    def list(self, source: str | None = None) -> list[DestinationInfo]:
        """The workspace's destinations by name; only ``source``'s when given."""
        d = schema.destinations
        with self._workspace.reading() as conn:
            workspace_id = self._workspace.workspace_id(conn)
            if workspace_id is None:
                return []
            query = sa.select(d).where(d.c.workspace_id == workspace_id)
            if source is not None:
                query = query.where(d.c.source_id == self._workspace.require(conn, source).id)
            return [_info(row) for row in conn.execute(query.order_by(d.c.name))]

    def get(self, id_or_name: str) -> DestinationInfo | None:
        with self._workspace.reading() as conn:
            row = self._rows.find(conn, id_or_name)
            return _info(row) if row is not None else None

    def require(self, id_or_name: str) -> DestinationInfo:
        with self._workspace.reading() as conn:
            return _info(self._rows.require(conn, id_or_name))

    # --- changing ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        type: str,
        source: str,
        *,
        enabled: bool = True,
        settings: Mapping[str, Any] | None = None,
        delivery: Mapping[str, Any] | None = None,
        filters: Sequence[Any] = (),
        mappings: Sequence[Any] = (),
        presets: bool = False,
    ) -> DestinationInfo:
        """``presets``: the mappings are the definition's automatic presets, enabled."""
        check_name(name)
        definition = _definition(type)
        stored = _validated(definition, check_settings(settings or {}), {})
        options = _options(delivery or {})
        checked_filters = _filters(list(filters), ())
        if presets:
            mappings = _presets(definition, mappings)
        checked_mappings = _mappings(definition, list(mappings), ())
        with self._workspace.writing() as conn:
            workspace_id = self._workspace.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._rows.check_name_free(conn, workspace_id, name)
            source_id = self._source_id(conn, source)
            now = self._workspace.now()
            destination_id = "dst_" + new_id()
            conn.execute(
                schema.destinations.insert().values(
                    id=destination_id,
                    workspace_id=workspace_id,
                    source_id=source_id,
                    name=name,
                    type=definition.type,
                    enabled=bool(enabled),
                    settings=stored,
                    delivery=options,
                    filters=checked_filters,
                    mappings=checked_mappings,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._workspace.bump(conn)
            return _info(self._rows.require(conn, destination_id))

    def update(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        source: str | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        settings: Mapping[str, Any] | Unset = UNSET,
        delivery: Mapping[str, Any] | Unset = UNSET,
        filters: Sequence[Any] | Unset = UNSET,
        mappings: Sequence[Any] | Unset = UNSET,
        presets: bool = False,
    ) -> DestinationInfo:
        """Change what is given; ``settings`` replaces the settings, keeping unsent secrets;
        ``filters`` and ``mappings`` replace those lists (``presets``: the mappings become the
        definition's automatic presets, as ``mappings: presets`` makes them in a file)."""
        with self._workspace.writing() as conn:
            row = self._rows.require(conn, id_or_name)
            if presets:
                mappings = _presets(
                    _definition(row.type), [] if isinstance(mappings, Unset) else mappings
                )
            values = self._rows.name_and_enabled(conn, row, name, enabled)
            if not isinstance(source, Unset):
                values["source_id"] = self._source_id(conn, source)
            if not isinstance(settings, Unset):
                values["settings"] = _validated(
                    _definition(row.type), check_settings(settings), dict(row.settings or {})
                )
            if not isinstance(delivery, Unset):
                values["delivery"] = _options(delivery)
            if not isinstance(filters, Unset):
                values["filters"] = _filters(filters, _info(row).filters)
            if not isinstance(mappings, Unset):
                values["mappings"] = _mappings(_definition(row.type), mappings, _info(row).mappings)
            if values:
                values["updated_at"] = self._workspace.now()
                conn.execute(
                    sa.update(schema.destinations)
                    .where(schema.destinations.c.id == row.id)
                    .values(**values)
                )
                self._workspace.bump(conn)
            return _info(self._rows.require(conn, row.id))

    def edit_filters(
        self,
        id_or_name: str,
        edit: Callable[[Sequence[dict[str, Any]]], Sequence[dict[str, Any]]],
    ) -> DestinationInfo:
        """Change the filter list in one transaction: ``edit`` gets the stored list (as the API
        shows it) and returns the new one, which is checked like any other."""
        return self._edit(id_or_name, "filters", edit)

    def edit_mappings(
        self,
        id_or_name: str,
        edit: Callable[[Sequence[dict[str, Any]]], Sequence[dict[str, Any]]],
    ) -> DestinationInfo:
        """As ``edit_filters``, for the Actions mappings."""
        return self._edit(id_or_name, "mappings", edit)

    def _edit(
        self,
        id_or_name: str,
        column: str,
        edit: Callable[[Sequence[dict[str, Any]]], Sequence[dict[str, Any]]],
    ) -> DestinationInfo:
        with self._workspace.writing() as conn:
            row = self._rows.require(conn, id_or_name)
            info = _info(row)
            if column == "filters":
                value = _filters(list(edit([f.shown() for f in info.filters])), info.filters)
            else:
                value = _mappings(
                    info.definition, list(edit([m.stored() for m in info.mappings])), info.mappings
                )
            conn.execute(
                sa.update(schema.destinations)
                .where(schema.destinations.c.id == row.id)
                .values({column: value, "updated_at": self._workspace.now()})
            )
            self._workspace.bump(conn)
            return _info(self._rows.require(conn, row.id))

    def save_oauth(self, id_or_name: str, oauth: Mapping[str, Any]) -> DestinationInfo:
        """The instance's OAuth app and tokens replaced, its other settings kept."""
        current = self.require(id_or_name)
        return self.update(current.id, settings={**current.settings, OAUTH_SETTING: dict(oauth)})

    def delete(self, id_or_name: str) -> None:
        with self._workspace.writing() as conn:
            row = self._rows.require(conn, id_or_name)
            conn.execute(
                sa.delete(schema.delivery_jobs).where(
                    schema.delivery_jobs.c.destination_id == row.id
                )
            )
            encryption = schema.destination_encryption  # its public key and fields (§13)
            conn.execute(sa.delete(encryption).where(encryption.c.destination_id == row.id))
            conn.execute(sa.delete(schema.destinations).where(schema.destinations.c.id == row.id))
            self._workspace.bump(conn)

    # --- helpers -------------------------------------------------------------------------------

    def _source_id(self, conn: Connection, source: str) -> str:
        try:
            return str(self._workspace.require(conn, source).id)
        except NotFoundError as exc:
            raise NotFoundError(exc.message, "source") from None


def _definition(destination_type: object) -> DestinationDefinition:
    if not isinstance(destination_type, str):
        raise InvalidError("must be a string", "type")
    try:
        return get(destination_type)
    except UnknownDestinationType as exc:
        raise InvalidError(str(exc.args[0]), "type") from None


def _validated(
    definition: DestinationDefinition, new: dict[str, Any], old: Mapping[str, Any]
) -> dict[str, Any]:
    """The settings to store: secrets not sent (or sent as REDACTED) keep their old value."""
    merged = keep_secrets(new, old, definition.secrets)
    try:
        definition.parse_settings(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        message = (
            str(error["ctx"]["error"])
            if error["type"] == "value_error" and "ctx" in error
            else error["msg"]
        )
        if error["type"] == "missing" and path in definition.secrets:
            message = f"{path} is a secret and must be given (it is never exported)"
        raise InvalidError(
            f"{path}: {message}" if path else message, f"settings.{path}" if path else "settings"
        ) from None
    return merged


def _options(delivery: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return DeliveryOptions.model_validate(check_settings(delivery, "delivery")).model_dump(
            exclude_defaults=True
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        raise InvalidError(f"{path}: {error['msg']}", f"delivery.{path}") from None


def _filters(raw: Any, current: Sequence[DestinationFilter]) -> list[dict[str, Any]]:
    try:
        checked = check_filters(raw, current, new_id=lambda: "df_" + new_id())
    except ListError as exc:
        raise InvalidError(str(exc), exc.field) from None
    return [f.shown() for f in checked]


def _mappings(
    definition: DestinationDefinition, raw: Any, current: Sequence[ActionMapping]
) -> list[dict[str, Any]]:
    if raw and not definition.actions:
        raise InvalidError(
            f"{definition.type} is not an Actions destination: it has no mappings", "mappings"
        )
    try:
        raw = restore_secrets(definition.actions, raw, current)
        checked = check_mappings(definition.actions, raw, current, new_id=lambda: "map_" + new_id())
    except ListError as exc:
        raise InvalidError(str(exc), exc.field) from None
    return [m.stored() for m in checked]


def _presets(definition: DestinationDefinition, mappings: Sequence[Any]) -> list[dict[str, Any]]:
    if mappings:
        raise InvalidError("give presets or mappings, not both", "presets")
    return preset_mappings(definition)


def _info(row: Row[Any]) -> DestinationInfo:
    return DestinationInfo(
        id=row.id,
        workspace_id=row.workspace_id,
        source_id=row.source_id,
        name=row.name,
        type=row.type,
        enabled=bool(row.enabled),
        settings=dict(row.settings or {}),
        delivery=DeliveryOptions.model_validate(row.delivery or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        filters=tuple(_stored_filters(row.filters)),
        mappings=tuple(_stored_mappings(row.mappings)),
        insert_function_id=row.insert_function_id,
        insert_function_settings=dict(row.insert_function_settings or {}),
    )


def _stored_filters(stored: Any) -> list[DestinationFilter]:
    """Stored filters; one that no longer validates is kept as it is, and ``compile_filters``
    stops every event on it (fail closed) rather than the whole load failing."""
    found = []
    for raw in stored if isinstance(stored, list) else []:
        raw = raw if isinstance(raw, dict) else {}
        try:
            found.append(DestinationFilter.model_validate(raw))
        except ValueError:
            found.append(
                DestinationFilter.model_construct(
                    id=str(raw.get("id", "")), if_=str(raw.get("if", "")), actions=[], enabled=True
                )
            )
    return found


def _stored_mappings(stored: Any) -> list[ActionMapping]:
    """Stored mappings; one that no longer validates is kept, and sends nothing."""
    found = []
    for raw in stored if isinstance(stored, list) else []:
        raw = raw if isinstance(raw, dict) else {}
        try:
            found.append(ActionMapping.model_validate(raw))
        except ValueError:
            found.append(
                ActionMapping.model_construct(
                    id=str(raw.get("id", "")),
                    name=str(raw.get("name", "")),
                    enabled=False,
                    trigger="",
                    action="",
                    fields={},
                )
            )
    return found


class DestinationCache:
    """Every destination instance in memory, reloaded when the configuration changes.

    The router and the delivery engine look destinations up for every record; the config
    version (one row) is checked at most once a second, like the Tracking API's write keys.
    They run on different threads and share one cache: a reload happens under a lock, and the
    time of the last check is set only once the maps are built, so no caller ever sees the
    empty maps of a cache that is still loading (the router would skip the record as having
    no destinations).
    """

    def __init__(
        self,
        store: DestinationStore,
        workspace: WorkspaceStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._workspace = workspace
        self._clock = clock
        self._lock = threading.Lock()
        self._version = -1
        self._checked_at = float("-inf")
        self._by_id: dict[str, DestinationInfo] = {}
        self._by_source: dict[str, list[DestinationInfo]] = {}

    def save_oauth(self, destination_id: str, oauth: Mapping[str, Any]) -> None:
        """Keep a refreshed access token (every process's cache reloads it with the change)."""
        self._store.save_oauth(destination_id, oauth)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if not force and self._clock() - self._checked_at < 1.0:
            return
        with self._lock:
            if not force and self._clock() - self._checked_at < 1.0:
                return  # another thread reloaded while this one waited
            version = self._workspace.config_version()
            if force or version != self._version:
                found = self._store.list()
                by_source: dict[str, list[DestinationInfo]] = {}
                for destination in found:
                    by_source.setdefault(destination.source_id, []).append(destination)
                self._by_id = {d.id: d for d in found}
                self._by_source = by_source
                self._version = version
            self._checked_at = self._clock()

    def all(self) -> list[DestinationInfo]:
        self.refresh()
        return list(self._by_id.values())

    def for_source(self, source_id: str) -> list[DestinationInfo]:
        self.refresh()
        return self._by_source.get(source_id, [])

    def get(self, destination_id: str) -> DestinationInfo | None:
        self.refresh()
        return self._by_id.get(destination_id)
