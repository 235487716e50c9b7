"""The resource a request names, as permissions see it: its type, id and labels.

A reference a client gives (an id or a name) that names nothing still becomes a ``Resource``
(with the reference as its id and no labels): only a grant over all resources of its type
covers it, so the route can answer 404 to those and 403 to everyone else, and a caller without
access learns nothing about which names exist.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.iam.access import Principal, Resource
from headwater.iam.labels import labels_of
from headwater.iam.roles import Area, ResourceType
from headwater.store import schema

_UNUSABLE = re.compile(r"[\x00-\x1f\x7f]")

_TABLES: dict[ResourceType, sa.Table] = {
    "SOURCE": schema.sources,
    "SPACE": schema.spaces,
    "WAREHOUSE": schema.warehouses,
    "FUNCTION": schema.functions,
}


def find_resource(engine: Engine, type_: ResourceType, reference: str) -> Resource:
    """The source, space, warehouse or function with this id or name (or, if none, an
    unlabelled stand-in named by the reference)."""
    return lookup(engine, type_, reference) or Resource(type_, reference)


def lookup(engine: Engine, type_: ResourceType, reference: str) -> Resource | None:
    """The source, space, warehouse or function with this id or name, if one."""
    if type_ not in _TABLES or not _usable(reference):
        return None
    with engine.connect() as conn:
        found = _find_id(conn, _TABLES[type_], reference)
        if found is None:
            return None
        labels = labels_of(conn, type_, found) if type_ in ("SOURCE", "SPACE") else ()
    return Resource(type_, found, labels)


def destination_source(engine: Engine, reference: str) -> Resource:
    """The source a destination (by id or name) is connected to: destinations, their filters
    and mappings are the source's, permission-wise (§20.2 Source Admin)."""
    if not _usable(reference):
        return Resource("SOURCE", reference)
    d = schema.destinations
    with engine.connect() as conn:
        source_id = conn.execute(sa.select(d.c.source_id).where(d.c.id == reference)).scalar()
        if source_id is None:
            source_id = conn.execute(
                sa.select(d.c.source_id).where(d.c.name == reference).limit(1)
            ).scalar()
        if source_id is None:
            return Resource("SOURCE", reference)
        return Resource("SOURCE", str(source_id), labels_of(conn, "SOURCE", str(source_id)))


def _find_id(conn: Connection, table: sa.Table, reference: str) -> str | None:
    found = conn.execute(sa.select(table.c.id).where(table.c.id == reference)).scalar()
    if found is None:
        found = conn.execute(
            sa.select(table.c.id).where(table.c.name == reference).limit(1)
        ).scalar()
    return None if found is None else str(found)


def _usable(reference: str) -> bool:
    """Whether the database can even look the reference up (PostgreSQL refuses NUL and text
    that is not Unicode)."""
    try:
        reference.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _UNUSABLE.search(reference) and len(reference) <= 200


def readable(
    engine: Engine, principal: Principal, area: Area, type_: ResourceType
) -> frozenset[str] | None:
    """The ids of the resources of ``type_`` that ``principal`` may read in ``area``, or None
    for all of them: lists show only those (a Source Admin of one source sees that source, not
    its neighbours' names)."""
    anything = Resource(type_, "", ())
    if principal.owner or any(
        grant.unrestricted and grant.covers(area, False, anything) for grant in principal.grants
    ):
        return None
    t = schema.resource_labels
    labels: dict[str, list[tuple[str, str]]] = {}
    with engine.connect() as conn:
        ids = [str(i) for i in conn.execute(sa.select(_TABLES[type_].c.id)).scalars()]
        for row in conn.execute(
            sa.select(t.c.resource_id, t.c.key, t.c.value).where(t.c.resource_type == type_)
        ):
            labels.setdefault(row.resource_id, []).append((row.key, row.value))
    return frozenset(
        i
        for i in ids
        if principal.allows(area, False, Resource(type_, i, tuple(sorted(labels.get(i, ())))))
    )
