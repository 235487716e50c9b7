"""Tracking plans in the state database: plans, rules, libraries, connected sources, changelog.

The REST API and ``headwater apply`` both write through ``PlanStore``, so the rules hold
whichever door a change comes in by: every save compiles the plan it changes (and every plan a
changed library is synced into) and refuses the whole change, naming the rule, if one does not
compile; every change writes the plan's changelog and bumps the workspace's config version in
the same transaction. ``load_source_protocols`` is what the Protocols stage reads.

A library (``RULE_LIBRARY`` / ``PROPERTY_LIBRARY``) is resolved at compile time: a plan's
effective rules are its own plus those of the libraries synced into it, so a library change
shows in every plan at once, and synced rules cannot be edited or removed in the plan itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.protocols.compiled import RULE_TYPES, CompiledPlan, PlanError, Rule, compile_plan
from headwater.protocols.connected import SourceProtocols
from headwater.protocols.enforce import SchemaSettings
from headwater.store import schema
from headwater.store.workspace import (
    BASE62,
    MAX_PAGE_SIZE,
    UNSET,
    SourceInfo,
    Unset,
    WorkspaceStore,
    check_name,
    check_settings,
    is_unicode,
    slugify,
    unique_slug,
)

logger = logging.getLogger(__name__)

PLAN_TYPES = ("LIVE", "RULE_LIBRARY", "PROPERTY_LIBRARY")
LIBRARY_TYPES = frozenset({"RULE_LIBRARY", "PROPERTY_LIBRARY"})
PLAN_ID_PREFIX = "tp_"
MAX_RULES_PER_REQUEST = 200
TOO_MANY_RULES = f"rules must contain less than or equal to {MAX_RULES_PER_REQUEST} items"
MAX_DESCRIPTION_LENGTH = 10_000

ACTOR_API = "api"
ACTOR_CONFIG = "config"
ACTOR_CONSENT = "consent"  # the consent event added when consent categories begin (§12.4)

RuleIdent = tuple[str, str, int]  # (type, key, version): a rule's identity in Segment's API


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanInfo:
    id: str
    name: str
    slug: str
    description: str
    type: str
    labels: Mapping[str, str]
    libraries: tuple[str, ...]  # ids of the libraries synced into this plan, in order
    revision: int
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class RuleInfo:
    type: str
    key: str
    version: int
    json_schema: Any
    created_at: int
    updated_at: int
    deprecated_at: int | None
    library_id: str | None = None  # set when the rule is synced from a library

    def ident(self) -> RuleIdent:
        return (self.type, self.key, self.version)

    def rule(self) -> Rule:
        return Rule(self.type, self.key, self.json_schema, self.version)


@dataclass(frozen=True)
class ChangeEntry:
    id: int
    at: int
    actor: str
    action: str
    detail: Mapping[str, Any]


class Page(NamedTuple):
    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    total: int


# --- values ----------------------------------------------------------------------------------


def new_plan_id() -> str:
    return PLAN_ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(24))


def rule_from_segment(body: object, where: str = "rules") -> tuple[Rule, str | None]:
    """A `RuleV1` (or `UpsertRuleV1`, with `newKey`) as a Rule and the new key, if any."""
    if not isinstance(body, Mapping):
        raise InvalidError("must be an object (a RuleV1)", where)
    unknown = set(body) - {
        "type",
        "key",
        "jsonSchema",
        "version",
        "newKey",
        "createdAt",
        "updatedAt",
        "deprecatedAt",
    }
    if unknown:
        raise InvalidError(f"unknown field {sorted(unknown)[0]!r}", where)
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in RULE_TYPES:
        raise InvalidError(f"type must be one of {', '.join(sorted(RULE_TYPES))}", f"{where}.type")
    key = body.get("key", "")
    if key is None:
        key = ""
    if not isinstance(key, str) or len(key) > 400:
        raise InvalidError("key must be a string of at most 400 characters", f"{where}.key")
    if kind == "TRACK" and not key:
        raise InvalidError("a TRACK rule's key is the event name: it must not be empty", where)
    version = body.get("version", 1)
    if type(version) is float and version.is_integer():
        version = int(version)
    if type(version) is not int or not 1 <= version <= 2**31 - 1:
        raise InvalidError("version must be a whole number, 1 or more", f"{where}.version")
    if "jsonSchema" not in body:
        raise InvalidError("jsonSchema is required", f"{where}.jsonSchema")
    # One level of nesting is the wrapper: the schema itself may nest one level less.
    json_schema = check_settings({"s": body["jsonSchema"]}, f"{where}.jsonSchema")["s"]
    new_key = body.get("newKey")
    if new_key is not None and (not isinstance(new_key, str) or not new_key):
        raise InvalidError("newKey must be a non-empty string", f"{where}.newKey")
    return Rule(kind, key, json_schema, version), new_key


def check_labels(labels: object, field: str = "labels") -> dict[str, str]:
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidError("must be an object of strings (key: value)", field)
    return dict(check_settings(labels, field))


def check_plan_type(value: object) -> str:
    if value not in PLAN_TYPES:
        raise InvalidError(f"must be one of {', '.join(PLAN_TYPES)}", "type")
    return str(value)


def check_description(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidError(
            f"must be a string of at most {MAX_DESCRIPTION_LENGTH} characters", "description"
        )
    return str(check_settings({"d": value}, "description")["d"])


def _encode_cursor(offset: int) -> str:
    raw = json.dumps({"offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidError("is not a cursor this server gave out", "cursor") from exc
    if type(offset) is not int or offset < 0:
        raise InvalidError("is not a cursor this server gave out", "cursor")
    return offset


FIRST_PAGE = _encode_cursor(0)


def page_of(items: Sequence[Any], cursor: str | None, count: int) -> Page:
    if type(count) is not int or not 1 <= count <= MAX_PAGE_SIZE:
        raise InvalidError(f"must be a whole number from 1 to {MAX_PAGE_SIZE}", "count")
    start = _decode_cursor(cursor)
    chunk = list(items[start : start + count])
    after = start + count
    return Page(
        chunk,
        _encode_cursor(after) if after < len(items) else None,
        _encode_cursor(max(0, start - count)) if start > 0 else None,
        len(items),
    )


# --- schema settings -------------------------------------------------------------------------

_CALLS = ("track", "identify", "group")
_FORWARDING = ("forwardingViolationsTo", "forwardingBlockedEventsTo")


def normalized_settings(body: Mapping[str, Any]) -> dict[str, Any]:
    """Segment's settings body checked, enum values upper-cased, unknown fields refused."""
    unknown = set(body) - {*_CALLS, *_FORWARDING}
    if unknown:
        raise InvalidError(f"{sorted(unknown)[0]} is not a schema setting", sorted(unknown)[0])
    try:
        SchemaSettings.from_segment(body)
    except ValueError as exc:
        raise InvalidError(str(exc), "settings") from None
    out: dict[str, Any] = {}
    for call in _CALLS:
        section = body.get(call)
        if section is None:
            continue
        controls = dict(section)
        common = controls.get("commonEventOnViolations")
        if isinstance(common, str):
            controls["commonEventOnViolations"] = common.upper()
        if controls:
            out[call] = controls
    for name in _FORWARDING:
        value = body.get(name)
        if value:
            out[name] = value
    return out


# --- the store -------------------------------------------------------------------------------


class PlanStore:
    """Tracking plans of the workspace, on the workspace store's transactions."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace

    @property
    def workspace(self) -> WorkspaceStore:
        return self._ws

    # --- reading -----------------------------------------------------------------------------

    def list_plans(self, *, type_: str | None = None) -> list[PlanInfo]:
        if type_ is not None:
            check_plan_type(type_)
        tp = schema.tracking_plans
        with self._ws.reading() as conn:
            query = sa.select(tp).order_by(tp.c.name)
            if type_ is not None:
                query = query.where(tp.c.type == type_)
            rows = list(conn.execute(query))
            return self._plans(conn, rows)

    def page(self, cursor: str | None, count: int, *, type_: str | None = None) -> Page:
        return page_of(self.list_plans(type_=type_), cursor, count)

    def get(self, id_or_name: str) -> PlanInfo | None:
        with self._ws.reading() as conn:
            row = self._find(conn, id_or_name)
            return self._plans(conn, [row])[0] if row is not None else None

    def require(self, id_or_name: str) -> PlanInfo:
        with self._ws.reading() as conn:
            return self._plans(conn, [self._require(conn, id_or_name)])[0]

    def rules(self, id_or_name: str, *, synced: bool = True) -> list[RuleInfo]:
        """The plan's rules (own first, then each synced library's), by type, key, version."""
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            return self._effective(conn, row.id) if synced else self._own(conn, row.id)

    def sources(self, id_or_name: str) -> list[SourceInfo]:
        tps = schema.tracking_plan_sources
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            ids = list(
                conn.execute(sa.select(tps.c.source_id).where(tps.c.plan_id == row.id)).scalars()
            )
        found = [self._ws.get_source(source_id) for source_id in ids]
        return sorted((s for s in found if s is not None), key=lambda s: s.name)

    def plan_of_source(self, source_id_or_name: str) -> PlanInfo | None:
        tps = schema.tracking_plan_sources
        with self._ws.reading() as conn:
            source = self._ws.require(conn, source_id_or_name)
            plan_id = conn.execute(
                sa.select(tps.c.plan_id).where(tps.c.source_id == source.id)
            ).scalar_one_or_none()
            if plan_id is None:
                return None
            return self._plans(conn, [self._require(conn, plan_id)])[0]

    def changelog(self, id_or_name: str) -> list[ChangeEntry]:
        """Newest first."""
        tc = schema.tracking_plan_changes
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            rows = conn.execute(
                sa.select(tc).where(tc.c.plan_id == row.id).order_by(tc.c.id.desc())
            )
            return [ChangeEntry(r.id, r.at, r.actor, r.action, dict(r.detail or {})) for r in rows]

    # --- plans -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        type_: str = "LIVE",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        rules: Iterable[Rule] = (),
        libraries: Sequence[str] = (),
        actor: str = ACTOR_API,
    ) -> PlanInfo:
        check_name(name)
        check_plan_type(type_)
        description = check_description(description)
        clean_labels = check_labels(labels or {})
        rule_list = list(rules)
        tp = schema.tracking_plans
        with self._ws.writing() as conn:
            workspace_id = self._ws.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._check_name_free(conn, name)
            taken = set(conn.execute(sa.select(tp.c.slug)).scalars())
            slug = unique_slug(slugify(name), taken)
            plan_id = new_plan_id()
            now = self._ws.now()
            conn.execute(
                tp.insert().values(
                    id=plan_id,
                    workspace_id=workspace_id,
                    name=name,
                    slug=slug,
                    description=description,
                    type=type_,
                    labels=clean_labels,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._log(conn, plan_id, actor, "plan_created", {"name": name, "type": type_})
            if libraries:
                self._set_libraries(conn, self._require(conn, plan_id), libraries, actor)
            if rule_list:
                self._save_rules(conn, self._require(conn, plan_id), rule_list, actor)
            else:
                self._check_compiles(conn, plan_id)
            if type_ == "LIVE" and _has_consent_categories(conn):
                _add_consent_rule(conn, plan_id, now)  # §12.4: every new plan
            self._ws.bump(conn)
            return self._plans(conn, [self._require(conn, plan_id)])[0]

    def update(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset = UNSET,
        labels: Mapping[str, str] | Unset = UNSET,
        libraries: Sequence[str] | Unset = UNSET,
        actor: str = ACTOR_API,
    ) -> PlanInfo:
        values: dict[str, Any] = {}
        if name is not UNSET:
            values["name"] = check_name(name)
        if description is not UNSET:
            values["description"] = check_description(description)
        if labels is not UNSET:
            values["labels"] = check_labels(labels)
        tp = schema.tracking_plans
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            changed = {k: v for k, v in values.items() if getattr(row, k) != v}
            if "name" in changed:
                self._check_name_free(conn, changed["name"])
            if changed:
                conn.execute(
                    tp.update()
                    .where(tp.c.id == row.id)
                    .values(**changed, updated_at=self._ws.now(), revision=row.revision + 1)
                )
                detail = {k: {"old": getattr(row, k), "new": v} for k, v in changed.items()}
                self._log(conn, row.id, actor, "plan_updated", detail)
            if libraries is not UNSET:
                changed["libraries"] = self._set_libraries(
                    conn, self._require(conn, row.id), libraries, actor
                )
            if any(changed.values()):
                self._ws.bump(conn)
            return self._plans(conn, [self._require(conn, row.id)])[0]

    def delete(self, id_or_name: str, *, actor: str = ACTOR_API) -> None:
        """Delete a plan: its sources are disconnected; a library is unsynced from its plans."""
        tp, tpl = schema.tracking_plans, schema.tracking_plan_libraries
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            synced_into = list(
                conn.execute(sa.select(tpl.c.plan_id).where(tpl.c.library_id == row.id)).scalars()
            )
            for plan_id in synced_into:
                self._log(
                    conn,
                    plan_id,
                    actor,
                    "library_unsynced",
                    {"libraryId": row.id, "libraryName": row.name},
                )
                self._touch(conn, plan_id)
            for table, column in (
                (schema.tracking_plan_rules, schema.tracking_plan_rules.c.plan_id),
                (tpl, tpl.c.plan_id),
                (tpl, tpl.c.library_id),
                (schema.tracking_plan_sources, schema.tracking_plan_sources.c.plan_id),
                (schema.tracking_plan_changes, schema.tracking_plan_changes.c.plan_id),
            ):
                conn.execute(table.delete().where(column == row.id))
            conn.execute(tp.delete().where(tp.c.id == row.id))
            self._ws.bump(conn)

    # --- rules -------------------------------------------------------------------------------

    def upsert_rules(
        self,
        id_or_name: str,
        rules: Sequence[tuple[Rule, str | None]],
        *,
        actor: str = ACTOR_API,
    ) -> list[RuleInfo]:
        """Add or change rules (`UpsertRuleV1`: `newKey` renames); other rules stay."""
        _check_count(len(rules))
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            current = {r.ident(): r.rule() for r in self._own(conn, row.id)}
            _check_unique([rule for rule, _ in rules])
            for rule, new_key in rules:
                if new_key is not None and new_key != rule.key:
                    current.pop((rule.type, rule.key, rule.version), None)
                    rule = Rule(rule.type, new_key, rule.json_schema, rule.version)
                current[(rule.type, rule.key, rule.version)] = rule
            self._save_rules(conn, row, list(current.values()), actor)
            self._ws.bump(conn)
            return self._effective(conn, row.id)

    def replace_rules(
        self, id_or_name: str, rules: Sequence[Rule], *, actor: str = ACTOR_API
    ) -> list[RuleInfo]:
        """The plan's own rules become exactly these (synced library rules stay)."""
        _check_count(len(rules))
        _check_unique(rules)
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            self._save_rules(conn, row, list(rules), actor)
            self._ws.bump(conn)
            return self._effective(conn, row.id)

    def set_rules(self, id_or_name: str, rules: Sequence[Rule], *, actor: str) -> None:
        """Replace without the per-request limit (a config file may hold any number)."""
        _check_unique(rules)
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            self._save_rules(conn, row, list(rules), actor)
            self._ws.bump(conn)

    def remove_rules(
        self, id_or_name: str, idents: Sequence[RuleIdent], *, actor: str = ACTOR_API
    ) -> list[RuleInfo]:
        _check_count(len(idents))
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            own = {r.ident(): r.rule() for r in self._own(conn, row.id)}
            synced = {r.ident(): r for r in self._effective(conn, row.id) if r.library_id}
            for ident in idents:
                if ident in synced:
                    raise ConflictError(
                        f"{_ident_text(ident)} is synced from library "
                        f"{self._name(conn, synced[ident].library_id)!r}: unsync the library "
                        "to remove it",
                        "rules",
                    )
                if ident not in own:
                    raise NotFoundError(f"the plan has no {_ident_text(ident)}", "rules")
                del own[ident]
            self._save_rules(conn, row, list(own.values()), actor)
            self._ws.bump(conn)
            return self._effective(conn, row.id)

    # --- sources -----------------------------------------------------------------------------

    def connect_source(
        self, id_or_name: str, source_id_or_name: str, *, actor: str = ACTOR_API
    ) -> SourceInfo:
        tps = schema.tracking_plan_sources
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            if row.type in LIBRARY_TYPES:
                raise ConflictError(
                    f"{row.name!r} is a library ({row.type}): sync it into a LIVE plan and "
                    "connect sources to that plan",
                    "sourceId",
                )
            source = self._ws.require(conn, source_id_or_name)
            existing = conn.execute(
                sa.select(tps.c.plan_id).where(tps.c.source_id == source.id)
            ).scalar_one_or_none()
            if existing == row.id:
                return self._ws.get_source(source.id) or _never()
            if existing is not None:
                raise ConflictError(
                    f"source {source.name!r} is already connected to tracking plan "
                    f"{self._name(conn, existing)!r}; a source has at most one tracking plan "
                    "(disconnect it first)",
                    "sourceId",
                )
            conn.execute(
                tps.insert().values(
                    source_id=source.id, plan_id=row.id, connected_at=self._ws.now()
                )
            )
            self._log(
                conn,
                row.id,
                actor,
                "source_connected",
                {"sourceId": source.id, "sourceName": source.name},
            )
            self._ws.bump(conn)
        return self._ws.get_source(source.id) or _never()

    def disconnect_source(
        self, id_or_name: str, source_id_or_name: str, *, actor: str = ACTOR_API
    ) -> None:
        tps = schema.tracking_plan_sources
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            source = self._ws.require(conn, source_id_or_name)
            gone = conn.execute(
                tps.delete().where(tps.c.source_id == source.id, tps.c.plan_id == row.id)
            ).rowcount
            if not gone:
                raise NotFoundError(
                    f"source {source.name!r} is not connected to tracking plan {row.name!r}",
                    "sourceId",
                )
            self._log(
                conn,
                row.id,
                actor,
                "source_disconnected",
                {"sourceId": source.id, "sourceName": source.name},
            )
            self._ws.bump(conn)

    # --- schema settings (per source) --------------------------------------------------------

    def schema_settings(self, source_id_or_name: str) -> dict[str, Any]:
        """The source's settings body as stored (forwarding targets as source ids)."""
        with self._ws.reading() as conn:
            row = self._ws.require(conn, source_id_or_name)
            return dict(row.schema_settings or {})

    def update_schema_settings(
        self, source_id_or_name: str, body: Mapping[str, Any], *, merge: bool = True
    ) -> dict[str, Any]:
        """Segment's PATCH: `track`, `identify` and `group` merge field by field; a forwarding
        field left out turns that forwarding off (A-API-3). ``merge=False`` replaces all."""
        src = schema.sources
        with self._ws.writing() as conn:
            row = self._ws.require(conn, source_id_or_name)
            stored = dict(row.schema_settings or {})
            given = normalized_settings(body)
            new: dict[str, Any] = {}
            for call in _CALLS:
                section = dict(given.get(call, {}))
                if merge:
                    section = {**stored.get(call, {}), **section}
                if section:
                    new[call] = section
            for name in _FORWARDING:
                if name in given:
                    new[name] = self._forwarding_target(conn, row, given[name], name)
            if new != stored:
                conn.execute(
                    src.update()
                    .where(src.c.id == row.id)
                    .values(schema_settings=new, updated_at=self._ws.now())
                )
                self._ws.bump(conn)
            return new

    def _forwarding_target(self, conn: Connection, source: Row[Any], value: Any, field: str) -> str:
        try:
            target = self._ws.require(conn, value)
        except NotFoundError:
            raise InvalidError(f"no source has the id or name {value!r}", field) from None
        if target.id == source.id:
            raise InvalidError("a source cannot forward to itself", field)
        return str(target.id)

    # --- internals ---------------------------------------------------------------------------

    def _find(self, conn: Connection, id_or_name: str) -> Row[Any] | None:
        if not is_unicode(id_or_name):
            return None  # no name is; and the database could not even look it up
        tp = schema.tracking_plans
        row = conn.execute(sa.select(tp).where(tp.c.id == id_or_name)).first()
        if row is None:
            row = conn.execute(sa.select(tp).where(tp.c.name == id_or_name)).first()
        return row

    def _require(self, conn: Connection, id_or_name: str) -> Row[Any]:
        row = self._find(conn, id_or_name)
        if row is None:
            raise NotFoundError(f"no tracking plan has the id or name {id_or_name!r}")
        return row

    def _name(self, conn: Connection, plan_id: str | None) -> str:
        tp = schema.tracking_plans
        name = conn.execute(sa.select(tp.c.name).where(tp.c.id == plan_id)).scalar_one_or_none()
        return str(name) if name is not None else str(plan_id)

    def _check_name_free(self, conn: Connection, name: str) -> None:
        tp = schema.tracking_plans
        if conn.execute(sa.select(tp.c.id).where(tp.c.name == name)).first() is not None:
            raise ConflictError(f"another tracking plan is already named {name!r}", "name")

    def _plans(self, conn: Connection, rows: Sequence[Row[Any]]) -> list[PlanInfo]:
        tpl = schema.tracking_plan_libraries
        ids = [row.id for row in rows]
        libraries: dict[str, list[str]] = {}
        if ids:
            for link in conn.execute(
                sa.select(tpl).where(tpl.c.plan_id.in_(ids)).order_by(tpl.c.position)
            ):
                libraries.setdefault(link.plan_id, []).append(link.library_id)
        return [
            PlanInfo(
                id=row.id,
                name=row.name,
                slug=row.slug,
                description=row.description or "",
                type=row.type,
                labels=dict(row.labels or {}),
                libraries=tuple(libraries.get(row.id, ())),
                revision=int(row.revision),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    def _own(self, conn: Connection, plan_id: str) -> list[RuleInfo]:
        tr = schema.tracking_plan_rules
        rows = conn.execute(
            sa.select(tr).where(tr.c.plan_id == plan_id).order_by(tr.c.type, tr.c.key, tr.c.version)
        )
        return [
            RuleInfo(
                r.type, r.key, r.version, r.json_schema, r.created_at, r.updated_at, r.deprecated_at
            )
            for r in rows
        ]

    def _libraries_of(self, conn: Connection, plan_id: str) -> list[str]:
        tpl = schema.tracking_plan_libraries
        return list(
            conn.execute(
                sa.select(tpl.c.library_id).where(tpl.c.plan_id == plan_id).order_by(tpl.c.position)
            ).scalars()
        )

    def _effective(
        self, conn: Connection, plan_id: str, own: Sequence[RuleInfo] | None = None
    ) -> list[RuleInfo]:
        rules = list(own) if own is not None else self._own(conn, plan_id)
        for library_id in self._libraries_of(conn, plan_id):
            rules += [
                RuleInfo(
                    r.type,
                    r.key,
                    r.version,
                    r.json_schema,
                    r.created_at,
                    r.updated_at,
                    r.deprecated_at,
                    library_id,
                )
                for r in self._own(conn, library_id)
            ]
        return rules

    def _check_compiles(
        self, conn: Connection, plan_id: str, own: Sequence[Rule] | None = None
    ) -> None:
        """Compile the plan (with ``own`` as its rules) and every plan it is synced into."""
        plan_name = self._name(conn, plan_id)
        rules = list(own) if own is not None else [r.rule() for r in self._own(conn, plan_id)]
        try:
            compile_plan(rules + [r.rule() for r in self._effective(conn, plan_id, [])])
        except PlanError as exc:
            raise InvalidError(f"tracking plan {plan_name!r}: {exc}", "rules") from None
        tpl = schema.tracking_plan_libraries
        for dependent in conn.execute(
            sa.select(tpl.c.plan_id).where(tpl.c.library_id == plan_id)
        ).scalars():
            # the dependent's rules, with this library's rules as they are about to be
            others = [r.rule() for r in self._own(conn, dependent)]
            for library_id in self._libraries_of(conn, dependent):
                if library_id == plan_id:
                    others += rules
                else:
                    others += [r.rule() for r in self._own(conn, library_id)]
            try:
                compile_plan(others)
            except PlanError as exc:
                raise InvalidError(
                    f"library {plan_name!r} is synced into tracking plan "
                    f"{self._name(conn, dependent)!r}, which would not compile: {exc}",
                    "rules",
                ) from None

    def _save_rules(self, conn: Connection, row: Row[Any], rules: list[Rule], actor: str) -> None:
        """Make the plan's own rules exactly ``rules``: compile, write, log what changed.

        A synced library rule given back unchanged is not the plan's own (so the rules a GET
        lists can be PUT back); given changed, it is refused.
        """
        library_rules = [r for r in self._effective(conn, row.id, []) if r.library_id]
        synced = {(r.type, r.key): r.library_id for r in library_rules}
        as_synced = {r.ident(): r.json_schema for r in library_rules}
        current = {r.ident(): r for r in self._own(conn, row.id)}
        wanted = {
            (r.type, r.key, r.version): r
            for r in rules
            if as_synced.get((r.type, r.key, r.version), _ABSENT) != r.json_schema
        }
        for ident, rule in wanted.items():
            old = current.get(ident)
            if (rule.type, rule.key) in synced and (
                old is None or old.json_schema != rule.json_schema
            ):
                raise ConflictError(
                    f"{_ident_text(ident)} is synced from library "
                    f"{self._name(conn, synced[(rule.type, rule.key)])!r} and cannot be edited "
                    "in this plan (edit the library, or unsync it)",
                    "rules",
                )
        self._check_compiles(conn, row.id, list(wanted.values()))
        tr = schema.tracking_plan_rules
        now = self._ws.now()
        changes: list[tuple[str, RuleIdent]] = []
        for ident in current:
            if ident not in wanted:
                conn.execute(
                    tr.delete().where(
                        tr.c.plan_id == row.id,
                        tr.c.type == ident[0],
                        tr.c.key == ident[1],
                        tr.c.version == ident[2],
                    )
                )
                changes.append(("rule_removed", ident))
        for ident, rule in wanted.items():
            old = current.get(ident)
            if old is None:
                conn.execute(
                    tr.insert().values(
                        plan_id=row.id,
                        type=rule.type,
                        key=rule.key,
                        version=rule.version,
                        json_schema=rule.json_schema,
                        created_at=now,
                        updated_at=now,
                        deprecated_at=None,
                    )
                )
                changes.append(("rule_added", ident))
            elif old.json_schema != rule.json_schema:
                conn.execute(
                    tr.update()
                    .where(
                        tr.c.plan_id == row.id,
                        tr.c.type == ident[0],
                        tr.c.key == ident[1],
                        tr.c.version == ident[2],
                    )
                    .values(json_schema=rule.json_schema, updated_at=now)
                )
                changes.append(("rule_changed", ident))
        for action, ident in changes:
            self._log(
                conn,
                row.id,
                actor,
                action,
                {"type": ident[0], "key": ident[1], "version": ident[2]},
            )
        if changes:
            self._touch(conn, row.id)
            tpl = schema.tracking_plan_libraries
            for dependent in conn.execute(
                sa.select(tpl.c.plan_id).where(tpl.c.library_id == row.id)
            ).scalars():
                self._touch(conn, dependent)

    def _set_libraries(
        self, conn: Connection, row: Row[Any], libraries: Sequence[str], actor: str
    ) -> bool:
        tpl = schema.tracking_plan_libraries
        if row.type in LIBRARY_TYPES and libraries:
            raise InvalidError(
                f"{row.name!r} is a library ({row.type}): only LIVE plans sync libraries",
                "libraries",
            )
        wanted: list[Row[Any]] = []
        for name in libraries:
            library = self._find(conn, name)
            if library is None:
                raise NotFoundError(f"no tracking plan has the id or name {name!r}", "libraries")
            if library.type not in LIBRARY_TYPES:
                raise InvalidError(
                    f"{library.name!r} is a {library.type} plan, not a library "
                    "(RULE_LIBRARY or PROPERTY_LIBRARY)",
                    "libraries",
                )
            if library.id in {w.id for w in wanted}:
                raise InvalidError(f"library {library.name!r} is listed twice", "libraries")
            wanted.append(library)
        current = self._libraries_of(conn, row.id)
        if current == [w.id for w in wanted]:
            return False
        own = {(r.type, r.key) for r in self._own(conn, row.id)}
        rules = [r.rule() for r in self._own(conn, row.id)]
        for library in wanted:
            for rule in self._own(conn, library.id):
                if (rule.type, rule.key) in own:
                    raise ConflictError(
                        f"library {library.name!r} has {_ident_text(rule.ident())}, which the "
                        f"plan {row.name!r} defines itself; remove it from the plan first",
                        "libraries",
                    )
                rules.append(rule.rule())
        try:
            compile_plan(rules)
        except PlanError as exc:
            raise InvalidError(f"tracking plan {row.name!r}: {exc}", "libraries") from None
        conn.execute(tpl.delete().where(tpl.c.plan_id == row.id))
        for position, library in enumerate(wanted):
            conn.execute(
                tpl.insert().values(plan_id=row.id, library_id=library.id, position=position)
            )
        for library in wanted:
            if library.id not in current:
                self._log(
                    conn,
                    row.id,
                    actor,
                    "library_synced",
                    {"libraryId": library.id, "libraryName": library.name},
                )
        for library_id in current:
            if library_id not in {w.id for w in wanted}:
                self._log(
                    conn,
                    row.id,
                    actor,
                    "library_unsynced",
                    {"libraryId": library_id, "libraryName": self._name(conn, library_id)},
                )
        self._touch(conn, row.id)
        return True

    def _touch(self, conn: Connection, plan_id: str) -> None:
        tp = schema.tracking_plans
        conn.execute(
            tp.update()
            .where(tp.c.id == plan_id)
            .values(updated_at=self._ws.now(), revision=tp.c.revision + 1)
        )

    def _log(
        self, conn: Connection, plan_id: str, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None:
        conn.execute(
            schema.tracking_plan_changes.insert().values(
                plan_id=plan_id, at=self._ws.now(), actor=actor, action=action, detail=dict(detail)
            )
        )


_ABSENT = object()

CONSENT_EVENT = "Segment Consent Preference Updated"
# The consent event's default rule: the consent object is required, the rest free (§12.4:
# fields may be added, the defaults should stay).
CONSENT_RULE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "context": {
            "type": "object",
            "properties": {
                "consent": {
                    "type": "object",
                    "properties": {"categoryPreferences": {"type": "object"}},
                    "required": ["categoryPreferences"],
                }
            },
            "required": ["consent"],
        },
        "properties": {"type": "object"},
        "traits": {"type": "object"},
    },
}


def _has_consent_categories(conn: Connection) -> bool:
    t = schema.consent_categories
    return conn.execute(sa.select(t.c.category_id).limit(1)).first() is not None


def _add_consent_rule(conn: Connection, plan_id: str, now: int) -> None:
    """The consent event's rule in one plan, unless the plan has a rule of that name."""
    tr = schema.tracking_plan_rules
    present = conn.execute(
        sa.select(tr.c.key).where(
            tr.c.plan_id == plan_id, tr.c.type == "TRACK", tr.c.key == CONSENT_EVENT
        )
    ).first()
    if present is not None:
        return
    conn.execute(
        tr.insert().values(
            plan_id=plan_id,
            type="TRACK",
            key=CONSENT_EVENT,
            version=1,
            json_schema=CONSENT_RULE_SCHEMA,
            created_at=now,
            updated_at=now,
            deprecated_at=None,
        )
    )
    conn.execute(
        schema.tracking_plan_changes.insert().values(
            plan_id=plan_id,
            at=now,
            actor=ACTOR_CONSENT,
            action="rule_added",
            detail={"type": "TRACK", "key": CONSENT_EVENT, "version": 1},
        )
    )
    tp = schema.tracking_plans
    conn.execute(
        tp.update().where(tp.c.id == plan_id).values(updated_at=now, revision=tp.c.revision + 1)
    )


def add_consent_event_in(conn: Connection, now: int) -> None:
    """When the workspace's first consent category is made: the consent event joins every
    tracking plan (§12.4), in the transaction that makes the category."""
    tp = schema.tracking_plans
    for plan_id in conn.execute(sa.select(tp.c.id).where(tp.c.type == "LIVE")).scalars():
        _add_consent_rule(conn, plan_id, now)


def _check_count(count: int) -> None:
    if count > MAX_RULES_PER_REQUEST:
        raise InvalidError(TOO_MANY_RULES, "rules")


def _check_unique(rules: Iterable[Rule]) -> None:
    seen: set[RuleIdent] = set()
    for rule in rules:
        ident = (rule.type, rule.key, rule.version)
        if ident in seen:
            raise InvalidError(f"{_ident_text(ident)} is listed twice", "rules")
        seen.add(ident)


def _ident_text(ident: RuleIdent) -> str:
    return f"{ident[0]} rule {ident[1]!r} version {ident[2]}"


def _never() -> SourceInfo:
    raise NotFoundError("the source was deleted meanwhile")


# --- what the Protocols stage reads ----------------------------------------------------------

_compiled: dict[tuple[str, tuple[tuple[str, int], ...]], CompiledPlan] = {}
_compiled_lock = threading.Lock()


def load_source_protocols(engine: Engine) -> dict[str, SourceProtocols]:
    """Every source with a connected plan or non-default schema settings, by source id.

    Compiled plans are cached by the revisions of the plan and its libraries, so a change
    elsewhere in the configuration does not recompile them.
    """
    src, tp, tpl = schema.sources, schema.tracking_plans, schema.tracking_plan_libraries
    tps, tr = schema.tracking_plan_sources, schema.tracking_plan_rules
    with engine.connect() as conn:
        sources = list(
            conn.execute(sa.select(src.c.id, src.c.name, src.c.slug, src.c.schema_settings))
        )
        connected = dict(conn.execute(sa.select(tps.c.source_id, tps.c.plan_id)).all())
        plans = {row.id: row for row in conn.execute(sa.select(tp))}
        links: dict[str, list[str]] = {}
        for link in conn.execute(sa.select(tpl).order_by(tpl.c.position)):
            links.setdefault(link.plan_id, []).append(link.library_id)
        needed: dict[str, tuple[tuple[str, int], ...]] = {}
        for plan_id in set(connected.values()):
            chain = [plan_id, *links.get(plan_id, [])]
            needed[plan_id] = tuple((p, int(plans[p].revision)) for p in chain if p in plans)
        compiled: dict[str, CompiledPlan] = {}
        missing = [p for p, key in needed.items() if (p, key) not in _compiled]
        rules: dict[str, list[Rule]] = {}
        if missing:
            wanted = {p for m in missing for p, _ in needed[m]}
            for r in conn.execute(sa.select(tr).where(tr.c.plan_id.in_(wanted))):
                rules.setdefault(r.plan_id, []).append(
                    Rule(r.type, r.key, r.json_schema, r.version)
                )
    with _compiled_lock:
        for plan_id, key in needed.items():
            found = _compiled.get((plan_id, key))
            if found is None:
                try:
                    found = compile_plan(r for p, _ in key for r in rules.get(p, []))
                except PlanError as exc:
                    # Saved plans compiled when saved; one that no longer does (a stricter
                    # check after an upgrade) must not stop the pipeline: say so loudly.
                    logger.error("tracking plan %s no longer compiles: %s", plan_id, exc)
                    continue
                _compiled[(plan_id, key)] = found
            compiled[plan_id] = found
        live = set(needed.items())
        for stale in [k for k in _compiled if k not in live]:
            del _compiled[stale]
    ids = {row.id for row in sources}
    out: dict[str, SourceProtocols] = {}
    for row in sources:
        body = dict(row.schema_settings or {})
        for name in _FORWARDING:
            if body.get(name) not in ids:
                body.pop(name, None)  # the target source was deleted: forwarding is off
        settings = SchemaSettings.from_segment(body)
        plan_id = connected.get(row.id)
        if plan_id is None and settings == SchemaSettings():
            continue
        plan = plans.get(plan_id) if plan_id is not None else None
        out[row.id] = SourceProtocols(
            source_id=row.id,
            source_name=row.name,
            source_slug=row.slug,
            plan_id=plan_id,
            plan_name=plan.name if plan is not None else None,
            plan=compiled.get(plan_id) if plan_id is not None else None,
            settings=settings,
        )
    return out


def planned_track_events(engine: Engine, source_id: str) -> frozenset[str] | None:
    """The Track events a browser may send when the source blocks unplanned events (§4.3);
    None when it does not (no plan connected, or unplanned events allowed)."""
    found = load_source_protocols(engine).get(source_id)
    if found is None or found.plan is None or found.settings.track.allow_unplanned_events:
        return None
    return frozenset(found.plan.track)
