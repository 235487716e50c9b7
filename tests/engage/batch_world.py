"""A space whose events go through the real identity resolution and Profiles Sync into a
DuckDB or PostgreSQL warehouse, for the batch compiler's tests; and the real-time engine fed
the same events, the reference the batch results must equal."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from headwater.engage import batch
from headwater.engage.definition import Definition
from headwater.engage.language import parse
from headwater.engage.realtime import Computation, Plan, ProfileState, event_seconds
from headwater.store.archive import Archive
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.graph import MergeProfiles
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.profiles_sync import ProfilesSyncFeed
from headwater.unify.resolution import Resolution, Resolver, event_time
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.warehouse.connect import loader_for
from headwater.warehouse.naming import naming_for
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import SUCCESS, WarehouseSync

SCHEMA = "batch_space"
ELIGIBLE = frozenset({"user_id", "email", "android.idfa", "ios.idfa"})


@dataclass
class World:
    """One space, its warehouse, and what was sent (for the real-time reference)."""

    tmp: Path
    engine: Engine
    kind: str  # "duckdb" or "postgres"
    workspace: WorkspaceStore
    warehouses: WarehouseStore
    warehouse: WarehouseInfo
    space: SpaceInfo
    sources: dict[str, str]
    now: datetime
    graph: MemoryGraph = field(default_factory=MemoryGraph)
    feed: ProfilesSyncFeed = field(default_factory=ProfilesSyncFeed)
    sent: list[tuple[str, dict[str, Any], Resolution]] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)  # profile → the one it merged into
    traits: dict[str, dict[str, tuple[Any, float]]] = field(default_factory=dict)
    account_traits: dict[str, dict[str, Any]] = field(default_factory=dict)  # by account profile
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.graph, ids=ProfileIds(7))

    @classmethod
    def make(cls, tmp: Path, engine: Engine, kind: str, settings: dict[str, Any]) -> World:
        workspace = WorkspaceStore(engine)
        workspace.ensure_workspace("acme")
        sources = {name: workspace.create_source(name, slug=name).id for name in ("web", "ios")}
        warehouses = WarehouseStore(workspace)
        warehouse = warehouses.create("wh", kind, settings=settings)
        space = SpaceStore(workspace).create(
            "Batch Space", sources=list(sources.values()), profiles_sync=(warehouse.id, None)
        )
        (tmp / "archive").mkdir(exist_ok=True)
        now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        return cls(tmp, engine, kind, workspace, warehouses, warehouse, space, sources, now)

    # -- sending --

    def send(self, event: dict[str, Any], source: str = "web") -> Resolution:
        """What the identity stage does: resolve, then record for Profiles Sync."""
        source_id = self.sources[source]
        resolution = self.resolver.resolve(event, source_id)
        changed = self._traits(event, resolution)
        with write_transaction(self.engine) as conn:
            self.feed.record(conn, self.space.id, source_id, event, resolution, changed)
        self.sent.append((source_id, event, resolution))
        return resolution

    def _traits(
        self, event: Mapping[str, Any], resolution: Resolution
    ) -> list[tuple[str, dict[str, Any]]]:
        """The profile store's trait merge: later value wins per key."""
        if resolution.user is None:
            return []
        at = event_time(dict(event)) or 0.0
        changed: dict[str, Any] = {}
        for change in resolution.changes:
            if isinstance(change, MergeProfiles) and change.collection == "users":
                self.merged[change.from_id] = change.into_id
                gone = self.traits.pop(change.from_id, {})
                kept = self.traits.setdefault(change.into_id, {})
                for name, (value, when) in gone.items():
                    if name not in kept or when > kept[name][1]:
                        kept[name] = (value, when)
                        changed[name] = value
        if event.get("type") == "identify":
            held = self.traits.setdefault(resolution.user, {})
            for name, value in dict(event.get("traits") or {}).items():
                if value is None:
                    if name in held:
                        del held[name]
                        changed[name] = None
                elif name not in held or held[name][0] != value:
                    held[name] = (value, at)
                    changed[name] = value
        found = [(resolution.user, changed)] if changed else []
        if event.get("type") == "group" and resolution.account is not None:
            held_by = self.account_traits.setdefault(resolution.account, {})
            told: dict[str, Any] = {}
            for name, value in dict(event.get("traits") or {}).items():
                if held_by.get(name) != value:
                    told[name] = value
                    if value is None:
                        held_by.pop(name, None)
                    else:
                        held_by[name] = value
            if told:  # the profile store tells an account's traits as a profile's
                found.append((resolution.account, told))
        return found

    def message(self, type_: str, when: datetime, **fields: Any) -> dict[str, Any]:
        stamp = format_timestamp(when)
        received = format_timestamp(max(when, self.now - timedelta(days=1)))
        return {
            "type": type_,
            "messageId": f"m{next(self.ids)}",
            "timestamp": stamp,
            "receivedAt": received,
            "sentAt": stamp,
            "context": {"library": {"name": "analytics.js", "version": "2.1"}},
            **fields,
        }

    def ago(self, hours: float) -> datetime:
        return self.now - timedelta(hours=hours)

    def track(
        self,
        who: Mapping[str, str],
        event: str,
        hours_ago: float,
        source: str = "web",
        **props: Any,
    ) -> Resolution:
        return self.send(
            self.message("track", self.ago(hours_ago), event=event, properties=props, **who),
            source,
        )

    def page(self, who: Mapping[str, str], hours_ago: float, **props: Any) -> Resolution:
        return self.send(self.message("page", self.ago(hours_ago), properties=props, **who))

    def identify(self, who: Mapping[str, str], hours_ago: float = 1, **traits: Any) -> Resolution:
        return self.send(self.message("identify", self.ago(hours_ago), traits=traits, **who))

    def group(
        self, who: Mapping[str, str], group_id: str, hours_ago: float = 1, **traits: Any
    ) -> Resolution:
        message = self.message("group", self.ago(hours_ago), groupId=group_id, traits=traits)
        if hours_ago > 24:  # an old Group call was received when it was made
            message["receivedAt"] = message["timestamp"]
        return self.send({**message, **who})

    # -- the warehouse --

    def sync(self) -> None:
        runner = WarehouseSync(
            self.warehouses, Archive(self.tmp / "archive"), self.tmp, clock=self.now.timestamp
        )
        result = runner.run(self.warehouses.require(self.warehouse.id))
        assert result.status == SUCCESS, result

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        loader = loader_for(self.warehouses.require(self.warehouse.id), self.tmp)
        try:
            return list(loader.query(sql)[1])
        finally:
            loader.close()

    def compile(
        self,
        definition: Definition,
        *,
        include_anonymous: bool = False,
        references: Mapping[str, batch.Reference] | None = None,
    ) -> str:
        loader = loader_for(self.warehouses.require(self.warehouse.id), self.tmp)
        try:
            columns = loader.columns(SCHEMA)
        finally:
            loader.close()
        return batch.compile(
            definition,
            dialect="duckdb" if self.kind == "duckdb" else "postgresql",
            schema=SCHEMA,
            naming=naming_for("duckdb" if self.kind == "duckdb" else "postgres"),
            columns=columns,
            now=self.now.timestamp(),
            include_anonymous=include_anonymous,
            references=references,
        )

    def batch(
        self,
        text: str,
        *,
        purpose: str = "audience",
        kind: str = "users",
        include_anonymous: bool = False,
        references: Mapping[str, batch.Reference] | None = None,
    ) -> dict[str, Any]:
        definition = parse(text, kind=kind, purpose=purpose)  # type: ignore[arg-type]
        sql = self.compile(definition, include_anonymous=include_anonymous, references=references)
        return batch.run({"x": sql}, self.rows)["x"]

    def members(self, text: str, **kw: Any) -> set[str]:
        return set(self.batch(text, **kw))

    # -- identities --

    def canonical(self, profile: str) -> str:
        while profile in self.merged:
            profile = self.merged[profile]
        return profile

    def profile(self, resolution: Resolution) -> str:
        assert resolution.user is not None
        return self.canonical(resolution.user)

    # -- the real-time reference --

    def realtime(self, computations: Iterable[Computation]) -> dict[str, dict[str, Any]]:
        """The real-time engine over the same events: each event applied (and its
        computations evaluated) at its own time on its profile's final state, then every
        profile evaluated at ``now`` with its final traits and identifiers."""
        plan = Plan(computations)
        states: dict[str, ProfileState] = {}
        for source_id, event, resolution in self.sent:
            if resolution.user is None:
                continue
            profile = self.canonical(resolution.user)
            state = states.setdefault(profile, ProfileState())
            at = event_seconds(event)
            if at is None:
                continue
            changed = plan.apply_event(state, event, source_id, at)
            if changed:
                plan.evaluate(state, changed, set(), at, lambda: True)
        now = self.now.timestamp()
        found: dict[str, dict[str, Any]] = {c.id: {} for c in plan.computations.values()}
        profiles = set(states) | {self.canonical(p) for p in self.traits}
        for profile in profiles:
            state = states.setdefault(profile, ProfileState())
            traits = {k: v for k, (v, _) in self.traits.get(profile, {}).items()}
            plan.apply_traits(state, traits)
            eligible = bool(self.graph.identifiers(profile, ELIGIBLE))

            def known(eligible: bool = eligible) -> bool:
                return eligible

            plan.evaluate(state, set(), set(), now, known, everything=True)
            for computation in plan.computations.values():
                value = plan.current(state, computation)
                if computation.kind == "audience" and value:
                    found[computation.id][profile] = True
                elif computation.kind == "trait" and value is not None:
                    found[computation.id][profile] = value
        return found


def close(a: Any, b: Any) -> bool:
    """Equal, floats within rounding (sums add in another order in SQL)."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return bool(a == b)
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return bool(a == b)
