"""Schema controls (§6.2): a source's event filters without a plan, and its schema integration
filters, stored per source and loaded once per configuration change.

One document shape everywhere (YAML ``schema_controls:`` under a source, the REST body, the
stored row), in Segment's words::

    {"blockedEvents": ["Foo"], "blockPage": true, "blockScreen": false,
     "omittedIdentifyTraits": ["ssn"], "omittedGroupTraits": [],
     "integrationFilters": {"Order Completed": {"AppsFlyer": false}}}

The Protocols stage applies the event filters (``SchemaControls``); the router applies the
integration filters (``destinations/routing.py``), after the event's own ``integrations``
object and never over a value it has for that destination.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.protocols.connected import SchemaControls
from headwater.protocols.source_schema import MAX_NAME, storable
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import WorkspaceStore

_NAME_LISTS = ("blockedEvents", "omittedIdentifyTraits", "omittedGroupTraits")
_FLAGS = ("blockPage", "blockScreen")
FIELDS = (*_NAME_LISTS, *_FLAGS, "integrationFilters")

# event name -> destination (catalog) name -> on/off
IntegrationFilters = Mapping[str, Mapping[str, bool]]


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(value) and storable(value)


def parse_controls(body: object) -> dict[str, Any]:
    """The controls document, checked and with every field present; InvalidError names the
    field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidError("must be an object", "schemaControls")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidError(f"unknown field; the fields are {', '.join(FIELDS)}", unknown[0])
    doc: dict[str, Any] = {}
    for name in _NAME_LISTS:
        value = body.get(name, [])
        if not isinstance(value, list) or not all(_name(v) for v in value):
            raise InvalidError(
                f"must be a list of names of 1 to {MAX_NAME} characters, without NUL", name
            )
        doc[name] = sorted(set(value))
    for name in _FLAGS:
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise InvalidError("must be true or false", name)
        doc[name] = value
    filters = body.get("integrationFilters", {})
    if not isinstance(filters, dict):
        raise InvalidError(
            "must be an object of event name to {destination: true|false}", "integrationFilters"
        )
    checked: dict[str, dict[str, bool]] = {}
    for event, toggles in filters.items():
        field = f"integrationFilters.{event}"
        if not _name(event) or not isinstance(toggles, dict):
            raise InvalidError("must be an object of destination name to true|false", field)
        for destination, on in toggles.items():
            if not _name(destination) or not isinstance(on, bool):
                raise InvalidError("must be true or false", f"{field}.{destination}")
        checked[event] = dict(sorted(toggles.items()))
    doc["integrationFilters"] = dict(sorted(checked.items()))
    return doc


def is_empty(doc: Mapping[str, Any]) -> bool:
    return not any(doc.get(name) for name in FIELDS)


def to_schema_controls(doc: Mapping[str, Any]) -> SchemaControls:
    """What the Protocols stage applies."""
    return SchemaControls(
        blocked_track=frozenset(doc.get("blockedEvents", ())),
        block_page=bool(doc.get("blockPage", False)),
        block_screen=bool(doc.get("blockScreen", False)),
        omitted_identify_traits=frozenset(doc.get("omittedIdentifyTraits", ())),
        omitted_group_traits=frozenset(doc.get("omittedGroupTraits", ())),
    )


def read_controls(store: WorkspaceStore, source_id: str) -> dict[str, Any]:
    """A source's controls document (every field, empty when none were set)."""
    t = schema.schema_controls.c
    with store.reading() as conn:
        stored = conn.execute(sa.select(t.controls).where(t.source_id == source_id)).scalar()
    return parse_controls(stored or {})


def save_controls(store: WorkspaceStore, source_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a source's controls (inside the store's ``atomic`` transaction when there is
    one); every process reloads them with the config version."""
    checked = parse_controls(dict(doc))
    t = schema.schema_controls
    with store.writing() as conn:
        conn.execute(sa.delete(t).where(t.c.source_id == source_id))
        if not is_empty(checked):
            conn.execute(
                t.insert().values(source_id=source_id, controls=checked, updated_at=store.now())
            )
        store.bump(conn)
    return checked


def _all_documents(engine: Engine) -> dict[str, dict[str, Any]]:
    t = schema.schema_controls.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.source_id, t.controls)).all()
    return {row.source_id: parse_controls(row.controls) for row in rows}


def load_schema_controls(engine: Engine) -> dict[str, SchemaControls]:
    """Every source's event filters that filter anything, by source id."""
    loaded = {sid: to_schema_controls(doc) for sid, doc in _all_documents(engine).items()}
    return {sid: controls for sid, controls in loaded.items() if controls.any()}


def load_integration_filters(engine: Engine) -> dict[str, IntegrationFilters]:
    """Every source's schema integration filters that turn something off, by source id."""
    found: dict[str, IntegrationFilters] = {}
    for source_id, doc in _all_documents(engine).items():
        filters = {
            event: {name: on for name, on in toggles.items() if not on}
            for event, toggles in doc["integrationFilters"].items()
        }
        filters = {event: off for event, off in filters.items() if off}
        if filters:
            found[source_id] = filters
    return found


class IntegrationFilterCache:
    """Schema integration filters in memory, reloaded when the configuration version moves
    (checked at most once a second, like the destination cache)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot: ConfigSnapshot[dict[str, IntegrationFilters]] = ConfigSnapshot(
            WorkspaceStore(engine).config_version,
            lambda: load_integration_filters(engine),
            {},
            clock=clock,
        )

    def turned_off(self, source_id: str, event_name: str) -> Mapping[str, bool]:
        """Destination names the source's schema turns off for this event."""
        return self._snapshot.get().get(source_id, {}).get(event_name, {})
