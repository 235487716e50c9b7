"""A space's journeys and their versions in the state database, with Segment's lifecycle
(§15.4, §16).

A journey is a container (key, name, description) and up to 25 versions, each a definition and
a status: ``draft`` (sends nothing), ``published`` (profiles enter and move on), ``paused``
(no entries; members move on) or ``archived`` (nothing moves). Editing the steps of a journey
whose latest version is a draft changes that draft; otherwise it makes a new draft version,
whose send steps keep their keys when their names are unchanged. Publishing a version archives
(or, with ``previous="pause"``, pauses) the one that was live. An event-triggered journey
cannot be edited once published (§16). The key is the snake-cased name, never given again in
the space.

Every change bumps the workspace's config version, so the follower's ``Live`` picks it up.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Row

from headwater.engage.journeys import payloads
from headwater.engage.journeys.analytics import Analytics, analytics
from headwater.engage.journeys.model import (
    MAX_KEY,
    LiveJourney,
    Plan,
    journey_name,
    parse,
    send_steps,
    step_id,
    with_keys,
)
from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import BASE62, WorkspaceStore
from headwater.unify.spaces import SpaceStore

PREFIX = "jou_"
MAX_VERSIONS = 25
STATUSES = ("draft", "published", "paused", "archived")
LIVE = ("published", "paused")


@dataclass(frozen=True)
class Version:
    version: int
    status: str
    definition: Mapping[str, Any]
    created_at: int
    published_at: int | None


@dataclass(frozen=True)
class JourneyInfo:
    id: str
    space_id: str
    key: str
    name: str
    description: str
    created_at: int
    updated_at: int
    versions: tuple[Version, ...]

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    @property
    def live(self) -> Version | None:
        return next((v for v in self.versions if v.status in LIVE), None)

    @property
    def status(self) -> str:
        live = self.live
        return live.status if live is not None else self.latest.status


def journey_key(name: str) -> str:
    key = step_id(name)
    if len(key) > MAX_KEY:
        raise InvalidError(f"the key would be longer than {MAX_KEY} characters", "name")
    return key


class JourneyStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace
        self._spaces = SpaceStore(workspace)

    # --- reads --------------------------------------------------------------------------------

    def list(self, space: str) -> builtins.list[JourneyInfo]:
        space_id = self._spaces.require(space).id
        table = schema.engage_journeys
        with self._ws.reading() as conn:
            rows = conn.execute(
                sa.select(table)
                .where(table.c.space_id == space_id, table.c.deleted_at.is_(None))
                .order_by(table.c.name)
            ).all()
            return [self._info(conn, r) for r in rows]

    def get(self, space: str, id_or_key: str) -> JourneyInfo:
        space_id = self._spaces.require(space).id
        with self._ws.reading() as conn:
            return self._info(conn, self._require(conn, space_id, id_or_key))

    def live(self) -> builtins.list[LiveJourney]:
        """Every space's running versions: what the follower runs."""
        j, v = schema.engage_journeys, schema.engage_journey_versions
        with self._ws.reading() as conn:
            rows = conn.execute(
                sa.select(j.c.id, j.c.space_id, j.c.key, v.c.version, v.c.status, v.c.definition)
                .join(v, v.c.journey_id == j.c.id)
                .where(j.c.deleted_at.is_(None), v.c.status.in_(LIVE))
                .order_by(j.c.id)
            ).all()
        return [
            LiveJourney(r.id, r.space_id, r.key, r.version, r.status, parse(r.definition))
            for r in rows
        ]

    def analytics(
        self,
        space: str,
        id_or_key: str,
        *,
        since: int,
        until: int,
        version: int | None = None,
        mode: str = "previous",
        count: str = "unique",
    ) -> Analytics:
        """The live version's analytics (or ``version``'s); drafts have none (§15.5)."""
        space_id = self._spaces.require(space).id
        with self._ws.reading() as conn:
            info = self._info(conn, self._require(conn, space_id, id_or_key))
            chosen = (
                next((v for v in info.versions if v.version == version), None)
                if version is not None
                else info.live
                or next((v for v in reversed(info.versions) if v.status != "draft"), None)
            )
            if chosen is None and version is not None:
                raise NotFoundError(f"the journey has no version {version}", "version")
            if chosen is None or chosen.status == "draft":
                raise ConflictError("a draft has no analytics; publish it first", "version")
            return analytics(
                conn,
                info.id,
                chosen.version,
                parse(chosen.definition),
                since=since,
                until=until,
                mode=mode,
                count=count,
            )

    # --- writes ---------------------------------------------------------------------------------

    def create(
        self,
        space: str,
        name: str,
        definition: Mapping[str, Any],
        *,
        description: str = "",
        publish: bool = False,
        key: str | None = None,
    ) -> JourneyInfo:
        """A new journey (version 1, a draft unless ``publish``); ``key``: to keep one that
        is not its name's (a renamed journey in ``headwater.yaml``)."""
        journey_name(name)
        _check_description(description)
        if key is not None and (journey_key(key) != key or not key):
            raise InvalidError("must be a key: lower case letters, digits and _", "key")
        key = key or journey_key(name)
        plan = parse(definition)
        info = self._spaces.require(space)
        table = schema.engage_journeys
        with self._ws.writing() as conn:
            taken = conn.execute(
                sa.select(table.c.id).where(table.c.space_id == info.id, table.c.key == key)
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"the journey key {key!r} is taken in this space (keys are never reused, "
                    "even after a deletion); choose another name",
                    "name",
                )
            self._check_references(conn, info.id, plan)
            journey_id = PREFIX + "".join(secrets.choice(BASE62) for _ in range(22))
            now = self._ws.now()
            conn.execute(
                table.insert().values(
                    id=journey_id,
                    space_id=info.id,
                    key=key,
                    name=name,
                    description=description,
                    created_at=now,
                    updated_at=now,
                )
            )
            written = _keyed(plan, key, {})
            conn.execute(
                schema.engage_journey_versions.insert().values(
                    journey_id=journey_id,
                    version=1,
                    status="draft",
                    definition=written,
                    created_at=now,
                )
            )
            if publish:
                self._publish(conn, journey_id, 1, "archive", plan)
            self._ws.bump(conn)
            return self._info(conn, self._require(conn, info.id, journey_id))

    def update(
        self,
        space: str,
        id_or_key: str,
        *,
        name: str | None = None,
        description: str | None = None,
        definition: Mapping[str, Any] | None = None,
    ) -> JourneyInfo:
        """Name and description change in place; steps change the draft, or make one."""
        if name is not None:
            journey_name(name)
        if description is not None:
            _check_description(description)
        plan = parse(definition) if definition is not None else None
        space_id = self._spaces.require(space).id
        table, versions = schema.engage_journeys, schema.engage_journey_versions
        with self._ws.writing() as conn:
            row = self._require(conn, space_id, id_or_key)
            current = self._info(conn, row)
            values: dict[str, Any] = {}
            if name is not None and name != row.name:
                values["name"] = name
            if description is not None and description != row.description:
                values["description"] = description
            if plan is not None and _strip(plan.written) != _strip(current.latest.definition):
                latest = current.latest
                old = parse(latest.definition)
                if plan.kind != old.kind:
                    raise ConflictError(
                        "a journey's type cannot change; create a new journey", "definition"
                    )
                if old.kind == "event_triggered" and any(
                    v.status != "draft" for v in current.versions
                ):
                    raise ConflictError(
                        "a published event-triggered journey cannot be edited (§16); "
                        "create a new journey",
                        "definition",
                    )
                self._check_references(conn, space_id, plan)
                keys = {s.id: s.key for s in send_steps(old)}
                written = _keyed(plan, row.key, keys)
                if latest.status == "draft":
                    conn.execute(
                        versions.update()
                        .where(
                            versions.c.journey_id == row.id,
                            versions.c.version == latest.version,
                        )
                        .values(definition=written)
                    )
                else:
                    if len(current.versions) >= MAX_VERSIONS:
                        raise ConflictError(
                            f"a journey has at most {MAX_VERSIONS} versions", "definition"
                        )
                    conn.execute(
                        versions.insert().values(
                            journey_id=row.id,
                            version=latest.version + 1,
                            status="draft",
                            definition=written,
                            created_at=self._ws.now(),
                        )
                    )
                values["updated_at"] = self._ws.now()
            if values:
                values.setdefault("updated_at", self._ws.now())
                conn.execute(table.update().where(table.c.id == row.id).values(**values))
                self._ws.bump(conn)
            return self._info(conn, self._require(conn, space_id, row.id))

    def publish(
        self, space: str, id_or_key: str, *, version: int | None = None, previous: str = "archive"
    ) -> JourneyInfo:
        """Publish the draft (or ``version``); the live version is archived or paused."""
        if previous not in ("archive", "pause"):
            raise InvalidError("must be archive or pause", "previous")
        space_id = self._spaces.require(space).id
        with self._ws.writing() as conn:
            row = self._require(conn, space_id, id_or_key)
            info = self._info(conn, row)
            wanted = version if version is not None else info.latest.version
            found = next((v for v in info.versions if v.version == wanted), None)
            if found is None:
                raise NotFoundError(f"the journey has no version {wanted}", "version")
            if found.status != "draft":
                raise ConflictError(
                    f"version {wanted} is {found.status}; only a draft can be published",
                    "version",
                )
            plan = parse(found.definition)
            self._check_references(conn, space_id, plan)
            self._publish(conn, row.id, wanted, previous, plan)
            self._ws.bump(conn)
            return self._info(conn, self._require(conn, space_id, row.id))

    def set_status(self, space: str, id_or_key: str, status: str) -> JourneyInfo:
        """Pause, resume (``published``) or archive the live version."""
        if status not in ("published", "paused", "archived"):
            raise InvalidError("must be published, paused or archived", "status")
        space_id = self._spaces.require(space).id
        versions = schema.engage_journey_versions
        with self._ws.writing() as conn:
            row = self._require(conn, space_id, id_or_key)
            live = self._info(conn, row).live
            if live is None:
                raise ConflictError(
                    "the journey has no published or paused version; publish one first",
                    "status",
                )
            if live.status != status:
                conn.execute(
                    versions.update()
                    .where(versions.c.journey_id == row.id, versions.c.version == live.version)
                    .values(status=status)
                )
                self._ws.bump(conn)
            return self._info(conn, self._require(conn, space_id, row.id))

    def delete(self, space: str, id_or_key: str) -> None:
        space_id = self._spaces.require(space).id
        table, versions = schema.engage_journeys, schema.engage_journey_versions
        with self._ws.writing() as conn:
            row = self._require(conn, space_id, id_or_key)
            now = self._ws.now()
            conn.execute(table.update().where(table.c.id == row.id).values(deleted_at=now))
            conn.execute(
                versions.update()
                .where(versions.c.journey_id == row.id, versions.c.status != "draft")
                .values(status="archived")
            )
            self._ws.bump(conn)

    # --- helpers --------------------------------------------------------------------------------

    def _publish(
        self, conn: DbConnection, journey_id: str, version: int, previous: str, plan: Plan
    ) -> None:
        """The version goes live; with "Use historical data" the entry audience's members at
        this moment are let in by the follower (``backfill_after``)."""
        versions = schema.engage_journey_versions
        conn.execute(
            versions.update()
            .where(versions.c.journey_id == journey_id, versions.c.status.in_(LIVE))
            .values(status="archived" if previous == "archive" else "paused")
        )
        conn.execute(
            versions.update()
            .where(versions.c.journey_id == journey_id, versions.c.version == version)
            .values(
                status="published",
                published_at=self._ws.now(),
                backfill_after="" if plan.kind == "classic" and plan.entry.historical else None,
            )
        )

    def _check_references(self, conn: DbConnection, space_id: str, plan: Plan) -> None:
        """Audiences by key in the space; destinations on the space's Engage source."""
        table = schema.engage_computations
        wanted = plan.audiences()
        if wanted:
            known = set(
                conn.execute(
                    sa.select(table.c.key).where(
                        table.c.space_id == space_id,
                        table.c.kind == "audience",
                        table.c.deleted_at.is_(None),
                        table.c.key.in_(sorted(wanted)),
                    )
                ).scalars()
            )
            for key in sorted(wanted):
                if key not in known:
                    raise InvalidError(
                        f"no audience of the space has the key {key!r}", "definition"
                    )
        names = payloads.unique_targets(send_steps(plan))
        if names:
            source = conn.execute(
                sa.select(schema.engage_sources.c.source_id).where(
                    schema.engage_sources.c.space_id == space_id
                )
            ).scalar_one_or_none()
            dest = schema.destinations
            on_source = set(
                conn.execute(
                    sa.select(dest.c.name).where(dest.c.name.in_(names), dest.c.source_id == source)
                )
                .scalars()
                .all()
            )
            for name in names:
                if name not in on_source:
                    raise InvalidError(
                        f"no destination named {name!r} is on the space's Engage source: "
                        "Engage sends only to destinations connected to it (Segment §14.1)",
                        "definition",
                    )

    def _require(self, conn: DbConnection, space_id: str, id_or_key: str) -> Row[Any]:
        table = schema.engage_journeys
        row = conn.execute(
            sa.select(table).where(
                table.c.space_id == space_id,
                table.c.deleted_at.is_(None),
                sa.or_(table.c.id == id_or_key, table.c.key == id_or_key),
            )
        ).first()
        if row is None:
            raise NotFoundError(f"no journey has the id or key {id_or_key!r}")
        return row

    def _info(self, conn: DbConnection, row: Row[Any]) -> JourneyInfo:
        versions = schema.engage_journey_versions
        found = conn.execute(
            sa.select(versions).where(versions.c.journey_id == row.id).order_by(versions.c.version)
        ).all()
        return JourneyInfo(
            id=row.id,
            space_id=row.space_id,
            key=row.key,
            name=row.name,
            description=row.description or "",
            created_at=row.created_at,
            updated_at=row.updated_at,
            versions=tuple(
                Version(v.version, v.status, v.definition, v.created_at, v.published_at)
                for v in found
            ),
        )


def _keyed(plan: Plan, journey: str, kept: Mapping[str, str]) -> dict[str, Any]:
    """The written definition with every send step's key: kept from the previous version
    when the step's name is unchanged, as written, or new."""
    keys = {}
    for step in send_steps(plan):
        key = kept.get(step.id) or step.key or payloads.step_key(journey, step.name)
        if len(key) > MAX_KEY:
            raise InvalidError(
                f"the step key {key[:40]}… would be longer than {MAX_KEY} characters",
                "definition",
            )
        keys[step.id] = key
    return with_keys(plan.written, keys)


def _strip(item: Any) -> Any:
    """A definition without its send steps' keys, to compare with a new one."""
    if isinstance(item, Mapping):
        return {k: _strip(v) for k, v in item.items() if k != "key"}
    if isinstance(item, list):
        return [_strip(v) for v in item]
    return item


def _check_description(value: object) -> None:
    if not isinstance(value, str):
        raise InvalidError("must be text", "description")
    if "\x00" in value:
        raise InvalidError("must not contain a NUL character (\\u0000)", "description")


class Live:
    """The running versions by space, rebuilt when the configuration's version moves."""

    def __init__(self, workspace: WorkspaceStore, *, interval: float = 1.0) -> None:
        store = JourneyStore(workspace)

        def build() -> dict[str, builtins.list[LiveJourney]]:
            by_space: dict[str, builtins.list[LiveJourney]] = {}
            for journey in store.live():
                by_space.setdefault(journey.space_id, []).append(journey)
            return by_space

        empty: dict[str, builtins.list[LiveJourney]] = {}
        self._snapshot: ConfigSnapshot[dict[str, builtins.list[LiveJourney]]] = ConfigSnapshot(
            workspace.config_version, build, empty, interval=interval
        )

    def journeys(self, space_id: str) -> Sequence[LiveJourney]:
        return self._snapshot.get().get(space_id, [])
