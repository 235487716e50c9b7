"""Make the workspace match a config file: plan the changes, show them, apply them.

``plan`` only reads; ``apply`` runs the plan in one transaction, so a failed apply changes
nothing. The file is the whole truth for the sections it has: a source missing from
``sources:`` is deleted, and each listed source gets exactly the settings, flags and keys the
file gives (a source listed without keys keeps its own). ``export_config`` writes the file
that plans to no change, which makes "export, edit, apply" safe.

Sources are matched by name, then by an explicit ``slug``, then by a shared write key: so a
source renamed in the file keeps its id, slug and history instead of being deleted and
created again.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import yaml

from headwater.config.journeys import JourneyConfig
from headwater.config.model import (
    ComputationConfig,
    ConfigFile,
    ConsentCategoryConfig,
    DestinationConfig,
    FunctionConfig,
    PrivacyConfig,
    ProfilesSyncConfig,
    RuleConfig,
    SourceConfig,
    SpaceConfig,
    SqlTraitConfig,
    SubscriptionGroupConfig,
    TrackingPlanConfig,
    TransformationConfig,
    WarehouseConfig,
    space_identities,
)
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import registry
from headwater.destinations.actions import restore_secrets, written_mapping
from headwater.destinations.registry import get as get_definition
from headwater.destinations.store import DestinationInfo, DestinationStore, redact
from headwater.engage.computations import (
    ComputationInfo,
    ComputationStore,
    Destination,
    Purpose,
    computation_key,
    creates_audiences,
    definition_of,
    destination_of,
)
from headwater.engage.journeys.model import parse as parse_journey
from headwater.engage.journeys.model import step_id as journey_key_of
from headwater.engage.journeys.store import JourneyInfo, JourneyStore
from headwater.engage.language import parse
from headwater.engage.sql_traits.definitions import (
    DEFAULT_EVERY_HOURS,
    SqlTrait,
    SqlTraitStore,
    key_of,
)
from headwater.errors import (
    ConfigError,
    ExportError,
    InvalidError,
    ListError,
    UnknownDestinationType,
)
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import DEFAULT_LIMIT as DEFAULT_FUNCTIONS_LIMIT
from headwater.functions.store import (
    Attached,
    FunctionInfo,
    FunctionStore,
    function_name_of_type,
)
from headwater.privacy.alerts import CHANNELS, Alerts, check_alert
from headwater.privacy.consent import ConsentCategories, ConsentCategory
from headwater.privacy.controls import Controls
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.inventory import Inventory
from headwater.privacy.matchers import check_matcher
from headwater.protocols.plans import (
    ACTOR_CONFIG,
    CONSENT_EVENT,
    LIBRARY_TYPES,
    PlanInfo,
    PlanStore,
    add_consent_event_in,
)
from headwater.protocols.schema_controls import read_controls, save_controls
from headwater.protocols.transformations import Transformation, from_api, to_input
from headwater.protocols.transformations.store import TransformationStore
from headwater.store.instances import REDACTED
from headwater.store.instances import redact as redact_secrets
from headwater.store.retention import DataRetention, parse_retention, shown
from headwater.store.workspace import (
    MAX_SETTINGS_DEPTH,
    SourceInfo,
    WorkspaceStore,
    slugify,
    too_deep_at,
)
from headwater.unify.settings import IdentitySettings, entry_of
from headwater.unify.spaces import SpaceInfo, SpaceStore, new_access_token
from headwater.unify.subscription_groups import SubscriptionGroups, group_key
from headwater.warehouse.settings import SECRETS
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.store import redact as redact_warehouse

# --- changes ---------------------------------------------------------------------------------


class Change(ABC):
    """One step of a plan: a line to show and the store calls that carry it out."""

    @abstractmethod
    def render(self) -> str: ...

    @abstractmethod
    def apply(self, store: WorkspaceStore) -> None: ...

    def notes(self) -> list[str]:
        """What to show once the plan is applied (a generated secret, shown this once)."""
        return []


@dataclass(frozen=True)
class CreateWorkspace(Change):
    name: str

    def render(self) -> str:
        return f"+ workspace {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        store.ensure_workspace(self.name)


@dataclass(frozen=True)
class RenameWorkspace(Change):
    old: str
    new: str

    def render(self) -> str:
        return f"~ workspace: {self.old} → {self.new}"

    def apply(self, store: WorkspaceStore) -> None:
        store.ensure_workspace(self.new)


@dataclass(frozen=True)
class SetDataRetention(Change):
    old: int | str | None  # None: the workspace had chosen none (the server's applied)
    new: int | str

    def render(self) -> str:
        return f"~ data retention: {self.old or 'server default'} → {self.new}"

    def apply(self, store: WorkspaceStore) -> None:
        DataRetention(store, None).set(parse_retention(self.new))


@dataclass(frozen=True)
class CreateSource(Change):
    name: str
    slug: str | None
    enabled: bool
    settings: Mapping[str, Any]
    # (key, expires_at); None: one generated key.
    write_keys: tuple[tuple[str, int | None], ...] | None

    def render(self) -> str:
        if self.write_keys is None:
            details = ["write key generated"]
        else:
            keys = ", ".join(_key_text(k, e) for k, e in self.write_keys)
            details = [f"write key{'s' if len(self.write_keys) > 1 else ''} {keys}"]
        if self.slug is not None:
            details.append(f"slug {self.slug}")
        if not self.enabled:
            details.append("disabled")
        if self.settings:
            details.append(f"settings {_value(_shown_settings(self.settings))}")
        return f"+ source {self.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        keys = self.write_keys or ()
        first = keys[0] if keys else None
        source = store.create_source(
            self.name,
            slug=self.slug,
            write_key=first[0] if first else None,
            enabled=self.enabled,
            settings=self.settings,
        )
        if first is not None and first[1] is not None:
            store.set_write_key_expiry(source.id, first[0], first[1])
        for key, expires_at in keys[1:]:
            store.add_write_key(source.id, key, expires_at=expires_at)


@dataclass(frozen=True)
class UpdateSource(Change):
    source_id: str
    name: str
    field: str
    old: Any
    new: Any

    def render(self) -> str:
        old, new = self.old, self.new
        if self.field == "settings":
            old, new = _shown_settings(old), _shown_settings(new)
        return f"~ source {self.name}: {self.field} {_value(old)} → {_value(new)}"

    def apply(self, store: WorkspaceStore) -> None:
        store.update_source(self.source_id, **{self.field: self.new})


@dataclass(frozen=True)
class SetSchemaControls(Change):
    """A source's schema controls; a source created by the same plan is found by name."""

    name: str
    old: Mapping[str, Any]
    new: Mapping[str, Any]

    def render(self) -> str:
        old, new = _shown_controls(self.old), _shown_controls(self.new)
        return f"~ source {self.name}: schema_controls {_value(old)} → {_value(new)}"

    def apply(self, store: WorkspaceStore) -> None:
        source = store.get_source(self.name)
        assert source is not None, self.name  # created or matched earlier in the plan
        save_controls(store, source.id, self.new)


def _shown_controls(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if value}


@dataclass(frozen=True)
class DeleteSource(Change):
    source_id: str
    name: str

    def render(self) -> str:
        return f"- source {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        store.delete_source(self.source_id)


@dataclass(frozen=True)
class AddWriteKey(Change):
    source_id: str
    name: str
    key: str
    expires_at: int | None

    def render(self) -> str:
        return f"+ source {self.name}: write key {_key_text(self.key, self.expires_at)}"

    def apply(self, store: WorkspaceStore) -> None:
        store.add_write_key(self.source_id, self.key, expires_at=self.expires_at)


@dataclass(frozen=True)
class RemoveWriteKey(Change):
    source_id: str
    name: str
    key: str

    def render(self) -> str:
        return f"- source {self.name}: write key {self.key}"

    def apply(self, store: WorkspaceStore) -> None:
        # The plan adds the source's new keys in the same transaction.
        store.revoke_write_key(self.source_id, self.key, keep_one=False)


@dataclass(frozen=True)
class SetWriteKeyExpiry(Change):
    source_id: str
    name: str
    key: str
    old: int | None
    new: int | None

    def render(self) -> str:
        return (
            f"~ source {self.name}: write key {self.key} expires "
            f"{_when(self.old)} → {_when(self.new)}"
        )

    def apply(self, store: WorkspaceStore) -> None:
        store.set_write_key_expiry(self.source_id, self.key, self.new)


@dataclass(frozen=True)
class CreateDestination(Change):
    config: DestinationConfig

    def render(self) -> str:
        details = [f"type {self.config.type}", f"source {self.config.source}"]
        if not self.config.enabled:
            details.append("disabled")
        if self.config.settings:
            shown = _shown_destination_settings(self.config.type, self.config.settings)
            details.append(f"settings {_value(shown)}")
        if self.config.delivery:
            details.append(f"delivery {_value(self.config.delivery)}")
        if self.config.filters:
            details.append(f"{len(self.config.filters)} filters")
        if self.config.mappings:
            details.append(f"{len(self.config.mappings)} mappings")
        return f"+ destination {self.config.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        DestinationStore(store).create(
            cfg.name,
            cfg.type,
            cfg.source,
            enabled=cfg.enabled,
            settings=cfg.settings,
            delivery=cfg.delivery,
            filters=cfg.filters,
            mappings=cfg.mappings,
        )


@dataclass(frozen=True)
class CreateWarehouse(Change):
    config: WarehouseConfig

    def render(self) -> str:
        details = [f"type {self.config.type}"]
        if not self.config.enabled:
            details.append("disabled")
        if self.config.settings:
            shown = redact_warehouse(self.config.type, self.config.settings)
            details.append(f"settings {_value(shown)}")
        if self.config.options():
            details.append(f"options {_value(self.config.options())}")
        return f"+ warehouse {self.config.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        WarehouseStore(store).create(
            cfg.name, cfg.type, enabled=cfg.enabled, settings=cfg.settings, options=cfg.options()
        )


@dataclass(frozen=True)
class UpdateInstance(Change):
    """One field of a destination or a warehouse (``kind``) changes."""

    kind: str
    instance_id: str
    name: str
    type: str
    field: str
    old: Any
    new: Any

    def render(self) -> str:
        old, new = self.old, self.new
        if self.field == "settings":
            shown = _KINDS[self.kind][1]
            old, new = shown(self.type, old), shown(self.type, new)
        elif self.field == "mappings":
            old, new = _shown_mappings(self.type, old), _shown_mappings(self.type, new)
        return f"~ {self.kind} {self.name}: {self.field} {_value(old)} → {_value(new)}"

    def apply(self, store: WorkspaceStore) -> None:
        _KINDS[self.kind][0](store).update(self.instance_id, **{self.field: self.new})


@dataclass(frozen=True)
class DeleteInstance(Change):
    kind: str
    instance_id: str
    name: str

    def render(self) -> str:
        return f"- {self.kind} {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        _KINDS[self.kind][0](store).delete(self.instance_id)


@dataclass(frozen=True)
class CreateTrackingPlan(Change):
    config: TrackingPlanConfig

    def render(self) -> str:
        cfg = self.config
        details = [f"type {cfg.type}", f"{len(cfg.rules)} rules"]
        if cfg.libraries:
            details.append(f"libraries {', '.join(cfg.libraries)}")
        return f"+ tracking plan {cfg.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        PlanStore(store).create(
            cfg.name,
            type_=cfg.type,
            description=cfg.description,
            labels=cfg.labels,
            rules=[rule.rule() for rule in cfg.rules],
            libraries=cfg.libraries,
            actor=ACTOR_CONFIG,
        )


@dataclass(frozen=True)
class UpdateTrackingPlan(Change):
    plan_id: str
    name: str
    field: str  # description, labels, rules (own rules, as RuleConfig dumps), libraries (names)
    old: Any
    new: Any

    def render(self) -> str:
        if self.field == "rules":
            old = {_rule_ident(r): r for r in self.old}
            new = {_rule_ident(r): r for r in self.new}
            parts = [
                f"+{len(new.keys() - old.keys())}",
                f"~{sum(1 for k in new.keys() & old.keys() if new[k] != old[k])}",
                f"-{len(old.keys() - new.keys())}",
            ]
            return f"~ tracking plan {self.name}: rules {' '.join(parts)}"
        return f"~ tracking plan {self.name}: {self.field} {_value(self.old)} → {_value(self.new)}"

    def apply(self, store: WorkspaceStore) -> None:
        plans = PlanStore(store)
        if self.field == "rules":
            rules = [RuleConfig.model_validate(r).rule() for r in self.new]
            plans.set_rules(self.plan_id, rules, actor=ACTOR_CONFIG)
        else:
            plans.update(self.plan_id, **{self.field: self.new}, actor=ACTOR_CONFIG)


@dataclass(frozen=True)
class DeleteTrackingPlan(Change):
    plan_id: str
    name: str

    def render(self) -> str:
        return f"- tracking plan {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        PlanStore(store).delete(self.plan_id, actor=ACTOR_CONFIG)


@dataclass(frozen=True)
class ConnectTrackingPlan(Change):
    source: str
    plan: str
    connect: bool

    def render(self) -> str:
        sign = "+" if self.connect else "-"
        return f"{sign} source {self.source}: tracking plan {self.plan}"

    def apply(self, store: WorkspaceStore) -> None:
        plans = PlanStore(store)
        if self.connect:
            plans.connect_source(self.plan, self.source, actor=ACTOR_CONFIG)
        else:
            plans.disconnect_source(self.plan, self.source, actor=ACTOR_CONFIG)


@dataclass(frozen=True)
class SetSchemaSettings(Change):
    source: str
    old: Mapping[str, Any]
    new: Mapping[str, Any]

    def render(self) -> str:
        return f"~ source {self.source}: schema {_value(self.old)} → {_value(self.new)}"

    def apply(self, store: WorkspaceStore) -> None:
        PlanStore(store).update_schema_settings(self.source, self.new, merge=False)


@dataclass(frozen=True)
class SetPrivacy(Change):
    """One key of the Privacy Portal's section (matchers, inventory, controls, alerts),
    replaced as a whole."""

    key: str
    old: Any
    new: Any

    def render(self) -> str:
        return f"~ privacy {self.key}: {_value(self.old)} → {_value(self.new)}"

    def apply(self, store: WorkspaceStore) -> None:
        if self.key == "matchers":
            CustomMatchers(store).replace_all(list(self.new))
        elif self.key == "inventory":
            inventory = Inventory(store)
            for path in set(self.old) - set(self.new):
                inventory.remove(path)
            for path, chosen in self.new.items():
                if self.old.get(path) != chosen:
                    inventory.classify(path, chosen)
        elif self.key == "controls":
            controls = Controls(store)
            for name in set(self.old) | set(self.new):
                source = store.get_source(name)
                if source is None:
                    raise InvalidError(f"privacy.controls: no source is named {name!r}")
                wanted = self.new.get(name, {})
                controls.set(
                    source.id,
                    block_red=wanted.get("blockRed", False),
                    block_yellow=wanted.get("blockYellow", False),
                )
        else:
            alerts = Alerts(store)
            for channel in CHANNELS:
                if channel in self.new:
                    alerts.configure(channel, self.new[channel])
                else:
                    alerts.remove(channel)


def _current_privacy(store: WorkspaceStore) -> dict[str, Any]:
    """The Portal's settings in headwater.yaml's shape (sources by name)."""
    names = {s.id: s.name for s in store.all_sources()}
    alerts: dict[str, Any] = {}
    for found in Alerts(store).settings():
        if found.settings:
            shown = {k: v for k, v in found.settings.items() if k != "enabledAt"}
            if "sourceId" in shown:
                shown["sourceId"] = names.get(shown["sourceId"], shown["sourceId"])
            alerts[found.channel] = {"enabled": found.enabled, **shown}
    return {
        "matchers": [_matcher_entry(m.to_json()) for m in CustomMatchers(store).all()],
        "inventory": {f.path: f.classification.upper() for f in Inventory(store).fields()},
        "controls": {
            names.get(c.source_id, c.source_id): {
                "blockRed": c.block_red,
                "blockYellow": c.block_yellow,
            }
            for c in Controls(store).all().values()
        },
        "alerts": alerts,
    }


def _matcher_entry(found: Mapping[str, Any]) -> dict[str, Any]:
    """A custom matcher as the file writes it: without its id and the defaults' values."""
    entry = {k: v for k, v in found.items() if k not in ("id", "type")}
    if not entry.get("synonyms"):
        entry.pop("synonyms", None)
    if not entry.get("pattern"):
        entry.pop("pattern", None)
    return entry


def _plan_privacy(store: WorkspaceStore, config: PrivacyConfig) -> list[Change]:
    current = _current_privacy(store)
    wanted: dict[str, Any] = {}
    if config.matchers is not None:
        wanted["matchers"] = [_matcher_entry(check_matcher(m).to_json()) for m in config.matchers]
    if config.inventory is not None:
        wanted["inventory"] = {path: c.upper() for path, c in config.inventory.items()}
    if config.controls is not None:
        wanted["controls"] = {
            name: {"blockRed": c.blockRed, "blockYellow": c.blockYellow}
            for name, c in config.controls.items()
            if c.blockRed or c.blockYellow
        }
    if config.alerts is not None:
        alerts: dict[str, Any] = {}
        for channel, body in config.alerts.items():
            enabled, settings = check_alert(channel.lower(), body)
            alerts[channel.lower()] = {"enabled": enabled, **settings}
        wanted["alerts"] = alerts

    def same(key: str, value: Any) -> bool:
        if key == "matchers":  # a set: the order they are listed in means nothing
            return sorted(map(str, value)) == sorted(map(str, current[key]))
        return bool(value == current[key])

    return [
        SetPrivacy(key, current[key], value)
        for key, value in wanted.items()
        if not same(key, value)
    ]


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def render(self) -> str:
        if not self.changes:
            return "No changes."
        return "\n".join(change.render() for change in self.changes)


# --- planning --------------------------------------------------------------------------------


def plan(store: WorkspaceStore, config: ConfigFile) -> Plan:
    """The changes that make the workspace match ``config``, in the order they must run."""
    with registry.functions_while(_function_catalog(store)):
        return _plan(store, config)


def _plan(store: WorkspaceStore, config: ConfigFile) -> Plan:
    changes: list[Change] = []
    workspace = store.workspace()
    if workspace is None:
        changes.append(CreateWorkspace(config.workspace))
    elif workspace.name != config.workspace:
        changes.append(RenameWorkspace(workspace.name, config.workspace))
    if config.data_retention is not None:
        chosen, days = DataRetention(store, None).chosen()
        if not chosen or shown(days) != config.data_retention:
            changes.append(SetDataRetention(shown(days) if chosen else None, config.data_retention))
    # Functions before the sources and destinations that run them; the dropped ones last.
    function_changes, function_deletes = _plan_functions(store, config)
    changes += function_changes
    if config.sources is not None:
        changes += _plan_sources(store, config.sources)
        changes += _plan_source_functions(store, config)
    dropped_warehouses: list[Change] = []  # after the SQL traits and spaces that query them
    if config.warehouses is not None:
        listed = {w.name for w in config.warehouses}
        for change in _plan_warehouses(store, config.warehouses):
            gone = isinstance(change, DeleteInstance) and change.name not in listed
            (dropped_warehouses if gone else changes).append(change)
    trait_deletes: list[Change] = []
    trait_changes: list[Change] = []
    if config.sql_traits is not None:
        trait_deletes, trait_changes = _plan_sql_traits(store, config)
    changes += trait_deletes  # before their space goes
    journey_deletes: list[Change] = []
    journey_changes: list[Change] = []
    if config.journeys is not None:
        journey_deletes, journey_changes = _plan_journeys(store, config)
    changes += journey_deletes
    # Spaces before destinations: a space's Engage source (`<space>-engage`), which Engage's
    # destinations hang off, is made with the space.
    if config.spaces is not None:
        changes += _plan_spaces(store, config, changes + dropped_warehouses)
    changes += dropped_warehouses
    if config.destinations is not None:
        changes += _plan_destinations(store, config.destinations)
        changes += _plan_insert_functions(store, config)
    connects: list[Change] = []
    if config.sources is not None:
        disconnects, connects = _plan_source_protocols(store, config)
        changes += disconnects
    if config.tracking_plans is not None:
        consent = (
            bool(config.consent_categories)
            if config.consent_categories is not None
            else bool(ConsentCategories(store).list())
        )
        changes += _plan_tracking_plans(store, config.tracking_plans, keep_consent_rule=consent)
    if config.transformations is not None:
        changes += _plan_transformations(store, config)
    if config.consent_categories is not None:  # after the plans: the first adds its event
        changes += _plan_consent_categories(store, config.consent_categories)
    changes += connects
    changes += _plan_computations(store, config)
    changes += trait_changes  # once their space and warehouse exist
    changes += journey_changes  # once the audiences and destinations they name exist
    if config.privacy is not None:  # once the sources its controls and alerts name exist
        changes += _plan_privacy(store, config.privacy)
    changes += function_deletes  # once nothing runs them
    return Plan(changes)


def apply(store: WorkspaceStore, changes: Plan) -> list[str]:
    """Carry out a plan in one transaction (all of it, or none if any step is refused); the
    notes to show once it is done (generated access tokens: shown this once)."""
    # Destination functions the plan creates are catalog types (function:<name>) for the
    # instances it creates after them, inside this one transaction.
    with store.atomic(), registry.functions_while(_function_catalog(store)):
        for change in changes.changes:
            change.apply(store)
    return [note for change in changes.changes for note in change.notes()]


def _function_catalog(store: WorkspaceStore) -> FunctionCatalog:
    """Destination functions' definitions as ``store`` (and its transaction) sees them."""
    return FunctionCatalog(FunctionStore(store), FunctionLogs(store))


def _all_sources(store: WorkspaceStore) -> list[SourceInfo]:
    """Every source the file manages: all but those Unify made for itself (a space's profile
    CSV upload source), which no file lists and ``apply`` must not delete."""
    managed = SpaceStore(store).managed_sources()
    return [s for s in store.all_sources() if s.id not in managed]


def _match(
    configs: Sequence[SourceConfig], existing: Sequence[SourceInfo]
) -> list[SourceInfo | None]:
    """Pair each configured source with the existing one it describes (None: a new one)."""
    unmatched = {source.id: source for source in existing}
    pairs: list[SourceInfo | None] = [None] * len(configs)
    by_name = {source.name: source for source in existing}
    for i, cfg in enumerate(configs):
        if cfg.name in by_name:
            pairs[i] = unmatched.pop(by_name[cfg.name].id)
    for i, cfg in enumerate(configs):
        if pairs[i] is None and cfg.slug is not None:
            pairs[i] = _take(unmatched, slug=cfg.slug)
    for i, cfg in enumerate(configs):
        keys = {k.key for k in cfg.keys or ()}
        if pairs[i] is None and keys:
            pairs[i] = _take(unmatched, keys=keys)
    return pairs


def _take(
    unmatched: dict[str, SourceInfo], *, slug: str | None = None, keys: set[str] | None = None
) -> SourceInfo | None:
    for source_id, source in unmatched.items():
        if source.slug == slug or (keys and keys & set(source.write_keys)):
            return unmatched.pop(source_id)
    return None


def _plan_sources(store: WorkspaceStore, configs: Sequence[SourceConfig]) -> list[Change]:
    now = store.now()
    existing = _all_sources(store)
    pairs = _match(configs, existing)
    matched_ids = {source.id for source in pairs if source is not None}

    # Keys each configured source should end with (None: keep its own). Keys past their
    # expiry are left out: they would be gone again at once.
    desired: list[dict[str, int | None] | None] = []
    for i, cfg in enumerate(configs):
        if cfg.keys is None:
            desired.append(None)
            continue
        listed = {k.key: _epoch(k.expires_at) for k in cfg.keys}
        live = {k: e for k, e in listed.items() if e is None or e > now}
        if not live:
            raise ConfigError([f"sources[{i}]: every write key listed has expired"])
        desired.append(live)
    _check_key_owners(store, configs, pairs, desired, existing)

    deletes: list[Change] = [
        DeleteSource(source.id, source.name) for source in existing if source.id not in matched_ids
    ]
    updates: list[Change] = []
    removals: list[Change] = []
    additions: list[Change] = []
    creates: list[Change] = []
    controls: list[Change] = []
    for cfg, source, keys in zip(configs, pairs, desired, strict=True):
        current_controls = read_controls(store, source.id) if source is not None else {}
        if _shown_controls(current_controls) != _shown_controls(cfg.schema_controls):
            controls.append(SetSchemaControls(cfg.name, current_controls, cfg.schema_controls))
        if source is None:
            creates.append(
                CreateSource(
                    cfg.name,
                    cfg.slug,
                    cfg.enabled,
                    cfg.settings,
                    tuple(keys.items()) if keys is not None else None,
                )
            )
            continue
        wanted: dict[str, Any] = {
            "name": cfg.name,
            "slug": cfg.slug if cfg.slug is not None else source.slug,
            "enabled": cfg.enabled,
            "settings": cfg.settings,
        }
        for name, new in wanted.items():
            old = getattr(source, name)
            if old != new:
                updates.append(UpdateSource(source.id, cfg.name, name, old, new))
        if keys is None:
            continue
        current = {k.key: k.expires_at for k in store.write_keys(source.id)}
        for key in sorted(current.keys() - keys.keys()):
            removals.append(RemoveWriteKey(source.id, cfg.name, key))
        for key, expires_at in keys.items():
            if key not in current:
                additions.append(AddWriteKey(source.id, cfg.name, key, expires_at))
            elif current[key] != expires_at:
                additions.append(
                    SetWriteKeyExpiry(source.id, cfg.name, key, current[key], expires_at)
                )
    # Removals run before additions, so a key can move from one source to another.
    return deletes + updates + removals + additions + creates + controls


def _check_key_owners(
    store: WorkspaceStore,
    configs: Sequence[SourceConfig],
    pairs: Sequence[SourceInfo | None],
    desired: Sequence[dict[str, int | None] | None],
    existing: Sequence[SourceInfo],
) -> None:
    """Refuse, before anything runs, a key the file gives a source while another keeps it."""
    kept: dict[str, str] = {}  # key → name of the source that still has it after the apply
    for cfg, source, keys in zip(configs, pairs, desired, strict=True):
        if source is not None and keys is None:
            kept.update({key: cfg.name for key in source.write_keys})
    in_workspace = {source.id for source in existing}
    for key, owner in store.write_key_index().items():
        if owner.id not in in_workspace:
            kept[key] = f"{owner.name} (in another workspace)"
    problems = []
    for i, (cfg, keys) in enumerate(zip(configs, desired, strict=True)):
        for key in keys or {}:
            if key in kept and kept[key] != cfg.name:
                problems.append(
                    f"sources[{i}]: write key {key!r} belongs to source {kept[key]!r}, "
                    "which keeps it"
                )
    if problems:
        raise ConfigError(problems)


class _Instance(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...


def _plan_instances(
    kind: str,
    existing: Mapping[str, _Instance],
    configs: Sequence[Any],
    create: Callable[[Any], Change],
    wanted: Callable[[Any, Any], dict[str, tuple[Any, Any]]],
) -> list[Change]:
    """Instances are matched by name; a new type is a new instance."""
    listed = {cfg.name for cfg in configs}
    deletes: list[Change] = [
        DeleteInstance(kind, i.id, name) for name, i in existing.items() if name not in listed
    ]
    updates: list[Change] = []
    creates: list[Change] = []
    for cfg in configs:
        current = existing.get(cfg.name)
        if current is None or current.type != cfg.type:
            if current is not None:
                deletes.append(DeleteInstance(kind, current.id, cfg.name))
            creates.append(create(cfg))
            continue
        for field_name, (old, new) in wanted(current, cfg).items():
            if old != new:
                updates.append(
                    UpdateInstance(kind, current.id, cfg.name, cfg.type, field_name, old, new)
                )
    return deletes + updates + creates


def _plan_destinations(store: WorkspaceStore, configs: Sequence[DestinationConfig]) -> list[Change]:
    source_names = {s.id: s.name for s in store.all_sources()}  # Engage sources too

    def wanted(current: DestinationInfo, cfg: DestinationConfig) -> dict[str, tuple[Any, Any]]:
        try:
            secrets = get_definition(cfg.type).secrets
        except UnknownDestinationType:
            secrets = frozenset()
        return {
            "source": (source_names.get(current.source_id, current.source_id), cfg.source),
            "enabled": (current.enabled, cfg.enabled),
            "settings": (
                dict(current.settings),
                _restored(cfg.settings, current.settings, secrets),
            ),
            "delivery": (current.delivery.model_dump(exclude_defaults=True), cfg.delivery),
            "filters": ([f.written() for f in current.filters], cfg.filters),
            "mappings": (
                [m.written() for m in current.mappings],
                _restored_mappings(cfg.type, cfg.mappings, current),
            ),
        }

    existing = {d.name: d for d in DestinationStore(store).list()}
    return _plan_instances("destination", existing, configs, CreateDestination, wanted)


def _plan_warehouses(store: WorkspaceStore, configs: Sequence[WarehouseConfig]) -> list[Change]:
    def wanted(current: WarehouseInfo, cfg: WarehouseConfig) -> dict[str, tuple[Any, Any]]:
        return {
            "enabled": (current.enabled, cfg.enabled),
            "settings": (
                dict(current.settings),
                _restored(cfg.settings, current.settings, SECRETS.get(cfg.type, frozenset())),
            ),
            "options": (_written_options(store, current), cfg.options()),
        }

    existing = {w.name: w for w in WarehouseStore(store).list()}
    return _plan_instances("warehouse", existing, configs, CreateWarehouse, wanted)


def _rule_ident(rule: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(rule["type"]), str(rule.get("key", "")), int(rule.get("version", 1)))


def _written_rules(plans: PlanStore, plan_id: str) -> list[dict[str, Any]]:
    """A plan's own rules as a config file writes them (synced library rules are not)."""
    return [
        RuleConfig.model_validate(
            {"type": r.type, "key": r.key, "version": r.version, "json_schema": r.json_schema}
        ).model_dump()
        for r in plans.rules(plan_id, synced=False)
    ]


def _library_names(plans: PlanStore, plan: PlanInfo) -> list[str]:
    found = [plans.get(library_id) for library_id in plan.libraries]
    return [library.name for library in found if library is not None]


def _plan_tracking_plans(
    store: WorkspaceStore, configs: Sequence[TrackingPlanConfig], *, keep_consent_rule: bool
) -> list[Change]:
    """Plans are matched by name. Libraries are created and changed before the plans that
    sync them, and deleted after. While the workspace has consent categories, a live plan
    keeps the consent event's rule Headwater added (§12.4) even when the file omits it."""
    plans = PlanStore(store)
    existing = {p.name: p for p in plans.list_plans()}
    listed = {cfg.name for cfg in configs}
    live_deletes: list[Change] = []
    library_deletes: list[Change] = []
    for name, plan in existing.items():
        if name not in listed:
            target = library_deletes if plan.type in LIBRARY_TYPES else live_deletes
            target.append(DeleteTrackingPlan(plan.id, name))
    ordered = sorted(configs, key=lambda cfg: cfg.type == "LIVE")  # libraries first
    steps: list[Change] = []
    for cfg in ordered:
        current = existing.get(cfg.name)
        if current is not None and current.type != cfg.type:
            live_deletes.insert(0, DeleteTrackingPlan(current.id, cfg.name))
            current = None
        if current is None:
            steps.append(CreateTrackingPlan(cfg))
            continue
        old_rules = _written_rules(plans, current.id)
        new_rules = [rule.model_dump() for rule in cfg.rules]
        if keep_consent_rule and cfg.type == "LIVE":
            listed_keys = {(r["type"], r.get("key", "")) for r in new_rules}
            if ("TRACK", CONSENT_EVENT) not in listed_keys:
                new_rules += [
                    r for r in old_rules if (r["type"], r.get("key")) == ("TRACK", CONSENT_EVENT)
                ]
        wanted: dict[str, tuple[Any, Any]] = {
            "description": (current.description, cfg.description),
            "labels": (dict(current.labels), dict(cfg.labels)),
            "rules": (old_rules, new_rules),
            "libraries": (_library_names(plans, current), list(cfg.libraries)),
        }
        for name, (old, new) in wanted.items():
            if name == "rules":
                same = {_rule_ident(r): r for r in old} == {_rule_ident(r): r for r in new}
            else:
                same = old == new
            if not same:
                steps.append(UpdateTrackingPlan(current.id, cfg.name, name, old, new))
    return live_deletes + steps + library_deletes


def _plan_source_protocols(
    store: WorkspaceStore, config: ConfigFile
) -> tuple[list[Change], list[Change]]:
    """(disconnects, connects and schema settings) for the sources the file lists; the
    first run before plans change, the others after the sources and plans exist."""
    configs = config.sources or []
    existing = _all_sources(store)
    names = {s.id: s.name for s in existing}
    plans = PlanStore(store)
    known_plans = {p.name for p in plans.list_plans()}
    problems = []
    disconnects: list[Change] = []
    connects: list[Change] = []
    for i, (cfg, source) in enumerate(zip(configs, _match(configs, existing), strict=True)):
        current_plan = plans.plan_of_source(source.id) if source is not None else None
        current_name = current_plan.name if current_plan is not None else None
        if (
            cfg.tracking_plan is not None
            and config.tracking_plans is None
            and cfg.tracking_plan not in known_plans
        ):
            problems.append(f"sources[{i}].tracking_plan: no tracking plan named "
                            f"{cfg.tracking_plan!r}")  # fmt: skip
        if current_name != cfg.tracking_plan:
            if current_plan is not None:
                disconnects.append(ConnectTrackingPlan(cfg.name, current_plan.id, False))
            if cfg.tracking_plan is not None:
                connects.append(ConnectTrackingPlan(cfg.name, cfg.tracking_plan, True))
        old = _named_targets(plans.schema_settings(source.id) if source else {}, names)
        new = _named_targets(cfg.schema_settings, names)
        if old != new:
            connects.append(SetSchemaSettings(cfg.name, old, new))
    if problems:
        raise ConfigError(problems)
    return disconnects, connects


def _named_targets(settings: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Schema settings with forwarding targets by source name, as a file writes them."""
    out = dict(settings)
    for key in ("forwardingViolationsTo", "forwardingBlockedEventsTo"):
        if key in out:
            out[key] = names.get(out[key], out[key])
    return out


def _written_options(store: WorkspaceStore, warehouse: WarehouseInfo) -> dict[str, Any]:
    """A warehouse's options as a config file writes them: sources by name."""
    options = warehouse.options.model_dump(exclude_defaults=True)
    name = {s.id: s.name for s in _all_sources(store)}
    if "sources" in options:
        options["sources"] = [name.get(i, i) for i in options["sources"]]
    for key in ("schema_names", "selective_sync"):
        if key in options:
            options[key] = {name.get(i, i): v for i, v in options[key].items()}
    return options


def _restored(
    settings: Mapping[str, Any], stored: Mapping[str, Any], secrets: Iterable[str]
) -> dict[str, Any]:
    """The settings the file means: a ``[redacted]`` secret (as exported) keeps its value."""
    merged = dict(settings)
    for key in secrets:
        if merged.get(key) == REDACTED and key in stored:
            merged[key] = stored[key]
    return merged


# --- export ----------------------------------------------------------------------------------

EXPORT_HEADER = (
    "# Headwater workspace, written by `headwater export`.\n"
    "# Edit and run `headwater apply <file>` (add --dry-run to see the changes first).\n"
)


def export_config(store: WorkspaceStore) -> str:
    """The workspace as ``headwater.yaml``; applying it back changes nothing.

    Values stored before the settings depth limit existed may nest past it; they are named
    (all of them, with how to fix each) rather than exported into a file ``apply`` refuses.
    """
    data = export_document(store)
    problems = _too_deep(data)
    if problems:
        raise ExportError("cannot export the workspace:\n" + "\n".join(f"  {p}" for p in problems))
    try:
        text = yaml.dump(
            data,
            Dumper=_ExportDumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
    except RecursionError:
        raise ExportError(
            "cannot export the workspace: a filter or mapping nests too deeply "
            "to be written as YAML; simplify it through the REST API"
        ) from None
    return EXPORT_HEADER + text


def export_document(store: WorkspaceStore) -> dict[str, Any]:
    """What ``export_config`` writes, as data (the audit trail compares two of these).
    Destination functions' instances are read with the functions ``store`` sees."""
    with registry.functions_while(_function_catalog(store)):
        return _document(store)


def _document(store: WorkspaceStore) -> dict[str, Any]:
    workspace = store.workspace()
    plans = PlanStore(store)
    functions = FunctionStore(store)
    sources = []
    all_sources = _all_sources(store)
    source_names = {s.id: s.name for s in all_sources}
    for source in all_sources:
        item: dict[str, Any] = {"name": source.name}
        if source.slug != slugify(source.name):
            item["slug"] = source.slug
        if not source.enabled:
            item["enabled"] = False
        keys = store.write_keys(source.id)
        # Write keys are public (every browser carries one), so they are exported.
        if len(keys) == 1 and keys[0].expires_at is None:
            item["write_key"] = keys[0].key
        else:
            item["write_keys"] = [
                k.key if k.expires_at is None else {"key": k.key, "expires_at": _iso(k.expires_at)}
                for k in keys
            ]
        if source.settings:
            item["settings"] = _exported_settings(source.settings)
        connected = plans.plan_of_source(source.id)
        if connected is not None:
            item["tracking_plan"] = connected.name
        schema_settings = plans.schema_settings(source.id)
        if schema_settings:
            item["schema"] = _named_targets(schema_settings, source_names)
        controls = _shown_controls(read_controls(store, source.id))
        if controls:
            item["schema_controls"] = controls
        runs = _exported_function(functions.source_function(source.id))
        if runs:
            # Secrets are never exported: "[redacted]" keeps the stored value on apply.
            item["function"] = runs["function"]
            if runs["settings"]:
                item["function_settings"] = runs["settings"]
        sources.append(item)
    data: dict[str, Any] = {"workspace": workspace.name if workspace else "default"}
    exported_functions = _export_functions(store)
    if exported_functions:
        data["functions"] = exported_functions
    data["sources"] = sources
    destinations = []
    for destination in DestinationStore(store).list():
        entry: dict[str, Any] = {
            "name": destination.name,
            "type": destination.type,
            "source": _source_name(store, destination.source_id),
        }
        if not destination.enabled:
            entry["enabled"] = False
        if destination.settings:
            # Secrets are never exported: "[redacted]" keeps the stored value on apply.
            entry["settings"] = destination.shown_settings()
        delivery = destination.delivery.model_dump(exclude_defaults=True)
        if delivery:
            entry["delivery"] = delivery
        if destination.filters:
            entry["filters"] = [f.written() for f in destination.filters]
        if destination.mappings:
            # Header values are secrets: "[redacted]" keeps the stored value on apply.
            entry["mappings"] = _shown_mappings(
                destination.type, [m.written() for m in destination.mappings]
            )
        inserted = _exported_function(functions.insert_function(destination.id))
        if inserted:
            entry["insert_function"] = inserted["function"]
            if inserted["settings"]:
                entry["insert_function_settings"] = inserted["settings"]
            if not inserted["enabled"]:
                entry["insert_function_enabled"] = False
        destinations.append(entry)
    if destinations:
        data["destinations"] = destinations
    warehouses = []
    for warehouse in WarehouseStore(store).list():
        written: dict[str, Any] = {"name": warehouse.name, "type": warehouse.type}
        if not warehouse.enabled:
            written["enabled"] = False
        if warehouse.settings:
            written["settings"] = warehouse.shown_settings()
        written.update(_written_options(store, warehouse))
        warehouses.append(written)
    if warehouses:
        data["warehouses"] = warehouses
    tracking_plans = []
    for plan in plans.list_plans():
        entry = {"name": plan.name}
        if plan.type != "LIVE":
            entry["type"] = plan.type
        if plan.description:
            entry["description"] = plan.description
        if plan.labels:
            entry["labels"] = dict(plan.labels)
        if plan.libraries:
            entry["libraries"] = _library_names(plans, plan)
        rules = _written_rules(plans, plan.id)
        if rules:
            entry["rules"] = rules
        tracking_plans.append(entry)
    if tracking_plans:
        data["tracking_plans"] = tracking_plans
    transformations = _export_transformations(store)
    if transformations:
        data["transformations"] = transformations
    consent = [_consent_entry(c) for c in ConsentCategories(store).list()]
    if consent:
        data["consent_categories"] = consent
    spaces = _export_spaces(store)
    if spaces:
        data["spaces"] = spaces
    for section, kind in SECTIONS.items():
        computations = _export_computations(store, kind)
        if computations:
            data[section] = computations
    sql_traits = _export_sql_traits(store)
    if sql_traits:
        data["sql_traits"] = sql_traits
    journeys = _export_journeys(store)
    if journeys:
        data["journeys"] = journeys
    privacy = {key: value for key, value in _current_privacy(store).items() if value}
    if privacy:
        data["privacy"] = privacy
    chosen, days = DataRetention(store, None).chosen()
    if chosen:
        data["data_retention"] = shown(days)
    return data


_DEEP_SECTIONS = {
    "sources": ("settings",),
    "destinations": ("settings", "delivery"),
    "warehouses": ("settings", "options"),
}


def _too_deep(data: Mapping[str, Any]) -> list[str]:
    """``kind 'name': field …`` for each value nested past what ``apply`` accepts."""
    problems = []
    for section, fields in _DEEP_SECTIONS.items():
        for item in data.get(section, []):
            for name in fields:
                where = too_deep_at(item.get(name, {}), MAX_SETTINGS_DEPTH)
                if where is not None:
                    problems.append(
                        f"{section[:-1]} {item['name']!r}: {name} nest more than "
                        f"{MAX_SETTINGS_DEPTH} levels (at {where}); change them with PATCH "
                        f"/api/v1/{section}/{item['name']}, then export again"
                    )
    return problems


def server_settings_overrides(config: ConfigFile) -> dict[str, Any]:
    """The ``server:`` section as keyword arguments for ``ServerSettings`` (only keys given)."""
    if config.server is None:
        return {}
    return config.server.model_dump(exclude_unset=True)


# --- secrets ---------------------------------------------------------------------------------
# Source settings hold no secrets. Destination settings do (API keys, passwords), and so do
# header values in Actions mappings: plans and exports show them as "[redacted]" (as the
# destination's definition marks them), so no secret reaches a file or a terminal.


def _exported_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return dict(settings)


def _shown_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return dict(settings)


def _shown_destination_settings(
    destination_type: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        return redact(destination_type, settings)
    except UnknownDestinationType:
        return dict(settings)


def _shown_mappings(destination_type: str, mappings: Sequence[Any]) -> list[Any]:
    """Mappings fit for a file or a terminal: header values (secret fields) ``[redacted]``."""
    try:
        actions = get_definition(destination_type).actions
    except UnknownDestinationType:
        return list(mappings)
    return [written_mapping(actions, m) if isinstance(m, Mapping) else m for m in mappings]


def _restored_mappings(
    destination_type: str, mappings: list[dict[str, Any]], current: DestinationInfo
) -> list[dict[str, Any]]:
    """The mappings the file means: a ``[redacted]`` header value (as exported) is the stored
    one. One with nothing stored stays as written, and the update names it when applied."""
    try:
        restored = restore_secrets(
            get_definition(destination_type).actions, mappings, current.mappings
        )
    except (UnknownDestinationType, ListError):
        return mappings
    return [{k: v for k, v in m.items() if k != "id"} for m in restored]


def _source_name(store: WorkspaceStore, source_id: str) -> str:
    source = store.get_source(source_id)
    return source.name if source is not None else source_id


# --- transformations: ------------------------------------------------------------------------


def _transformation_key(t: Transformation) -> tuple[str, str, str]:
    """What makes a transformation unique (Segment: one per source, event and destination)."""
    matcher = t.matcher
    event = f"{matcher[0]}:{matcher[1]}" if matcher is not None else t.if_.strip()
    return t.source_id, event, t.destination_metadata_id or ""


def _destination_type(
    store: WorkspaceStore, config: ConfigFile, source: str, destination: str | None
) -> str | None:
    """A ``destination:`` is an instance on the source (the file's, else the stored ones)
    or a destination type; either way the scope is the type."""
    if destination is None:
        return None
    for cfg in config.destinations or []:
        if cfg.name == destination and cfg.source == source:
            return cfg.type
    if config.destinations is None:
        found = DestinationStore(store).get(destination)
        if found is not None:
            return found.type
    try:
        get_definition(destination)
    except UnknownDestinationType:
        raise ConfigError(
            [
                f"transformations: destination {destination!r} is neither a destination of"
                f" source {source!r} nor a destination type"
            ]
        ) from None
    return destination


@dataclass(frozen=True)
class CreateTransformation(Change):
    config: TransformationConfig
    destination_type: str | None

    def render(self) -> str:
        scope = f"destination {self.config.destination}" if self.config.destination else "source"
        return (
            f"+ transformation {self.config.name} (source {self.config.source}; {scope} scope;"
            f" if {self.config.if_})"
        )

    def apply(self, store: WorkspaceStore) -> None:
        source = store.get_source(self.config.source)
        if source is None:
            raise ConfigError(
                [f"transformation {self.config.name}: no source {self.config.source!r}"]
            )
        TransformationStore(store).create(self.config.body(source.id, self.destination_type))


@dataclass(frozen=True)
class UpdateTransformation(Change):
    current: Transformation
    config: TransformationConfig
    destination_type: str | None

    def render(self) -> str:
        return f"~ transformation {self.config.name} ({self.current.id})"

    def apply(self, store: WorkspaceStore) -> None:
        body = self.config.body(self.current.source_id, self.destination_type)
        TransformationStore(store).update(self.current.id, body)


@dataclass(frozen=True)
class DeleteTransformation(Change):
    current: Transformation

    def render(self) -> str:
        return f"- transformation {self.current.name} ({self.current.id})"

    def apply(self, store: WorkspaceStore) -> None:
        TransformationStore(store).delete(self.current.id)


def _plan_transformations(store: WorkspaceStore, config: ConfigFile) -> list[Change]:
    """Matched by (source, event, destination): a changed name, toggle or result updates the
    stored one in place; a changed source, event or destination is another transformation."""
    configs = config.transformations or []
    existing = {_transformation_key(t): t for t in TransformationStore(store).list()}
    source_ids = {s.name: s.id for s in _all_sources(store)}
    changes: list[Change] = []
    kept: set[tuple[str, str, str]] = set()
    creates: list[Change] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, cfg in enumerate(configs):
        destination_type = _destination_type(store, config, cfg.source, cfg.destination)
        by_name = _transformation_key(from_api(cfg.body(cfg.source, destination_type)))
        if by_name in seen:
            raise ConfigError(
                [
                    f"transformations[{i}]: a transformation already exists for this source,"
                    f" event and destination: transformations[{seen[by_name]}]"
                ]
            )
        seen[by_name] = i
        source_id = source_ids.get(cfg.source)
        if source_id is None:  # a source this plan creates (or a typo the apply names)
            creates.append(CreateTransformation(cfg, destination_type))
            continue
        wanted = from_api(cfg.body(source_id, destination_type))
        key = _transformation_key(wanted)
        kept.add(key)
        current = existing.get(key)
        if current is None:
            creates.append(CreateTransformation(cfg, destination_type))
        elif to_input(current) != to_input(replace(wanted, id=current.id)):
            if current.if_ != wanted.if_:
                changes.append(DeleteTransformation(current))
                creates.append(CreateTransformation(cfg, destination_type))
            else:
                changes.append(UpdateTransformation(current, cfg, destination_type))
    deletes: list[Change] = [
        DeleteTransformation(t) for key, t in existing.items() if key not in kept
    ]
    return deletes + changes + creates


def _export_transformations(store: WorkspaceStore) -> list[dict[str, Any]]:
    """The ``transformations:`` section: sources by name, a destination scope by the name of
    an instance of that type on the source (the type itself when there is none)."""
    written = []
    destinations = DestinationStore(store).list()
    for t in TransformationStore(store).list():
        body = to_input(t)
        body.pop("sourceId")
        entry: dict[str, Any] = {
            "name": body.pop("name"),
            "source": _source_name(store, t.source_id),
        }
        metadata_id = body.pop("destinationMetadataId", None)
        if metadata_id is not None:
            instances = sorted(
                d.name for d in destinations if d.source_id == t.source_id and d.type == metadata_id
            )
            entry["destination"] = instances[0] if instances else metadata_id
        entry.update({k: v for k, v in body.items() if v not in ([], False) or k == "enabled"})
        written.append(entry)
    return written


# --- formatting ------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def _epoch(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(epoch: int | None) -> str:
    return "never" if epoch is None else _iso(epoch)


def _key_text(key: str, expires_at: int | None) -> str:
    return key if expires_at is None else f"{key} (expires {_iso(expires_at)})"


# What plan steps use per kind of instance: its store and how its settings are shown.
_KINDS: dict[
    str, tuple[Callable[[WorkspaceStore], Any], Callable[[str, Mapping[str, Any]], dict[str, Any]]]
] = {
    "destination": (DestinationStore, _shown_destination_settings),
    "warehouse": (WarehouseStore, redact_warehouse),
}


# --- Unify spaces ----------------------------------------------------------------------------


def _sync_setting(cfg: ProfilesSyncConfig | None) -> tuple[str, str | None] | None:
    return None if cfg is None else (cfg.warehouse, cfg.schema_name)


@dataclass(frozen=True)
class CreateSpace(Change):
    config: SpaceConfig
    identity: IdentitySettings = field(default_factory=IdentitySettings)

    def render(self) -> str:
        cfg = self.config
        details = [f"sources {', '.join(cfg.sources)}" if cfg.sources else "no sources"]
        if cfg.profiles_sync is not None:
            details.append(_sync_text(cfg.profiles_sync.warehouse, cfg.profiles_sync.schema_name))
        if self.identity != IdentitySettings():
            types = ", ".join(s.type for s in self.identity.identifiers)
            details.append(f"identifiers {types}")
        return f"+ space {cfg.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        SpaceStore(store).create(
            cfg.name,
            sources=cfg.sources,
            profiles_sync=_sync_setting(cfg.profiles_sync),
            identity=self.identity,
        )


@dataclass(frozen=True)
class DeleteSpace(Change):
    space_id: str
    name: str

    def render(self) -> str:
        return f"- space {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        SpaceStore(store).delete(self.space_id)


@dataclass(frozen=True)
class UpdateSpace(Change):
    space_id: str
    name: str
    # sources (names), profiles_sync ((warehouse name, schema) or None), identity (settings)
    field: str
    old: Any
    new: Any

    def render(self) -> str:
        if self.field == "identity":
            return f"~ space {self.name}: identity {_identity_changes(self.old, self.new)}"
        if self.field == "sources":
            old, new = ", ".join(self.old) or "none", ", ".join(self.new) or "none"
        else:
            old, new = (_sync_text(*v) if v is not None else "off" for v in (self.old, self.new))
        return f"~ space {self.name}: {self.field} {old} → {new}"

    def apply(self, store: WorkspaceStore) -> None:
        SpaceStore(store).update(self.space_id, **{self.field: self.new})


@dataclass(frozen=True)
class AddAccessToken(Change):
    """A Profile API token; a generated one is shown once, after the apply."""

    space: str
    name: str
    token: str = field(repr=False)
    generated: bool

    def render(self) -> str:
        how = "generated, shown once applied" if self.generated else "given"
        return f"+ space {self.space}: access token {self.name} ({how})"

    def apply(self, store: WorkspaceStore) -> None:
        SpaceStore(store).create_access_token(self.space, self.name, self.token)

    def notes(self) -> list[str]:
        if not self.generated:
            return []
        return [
            f"Access token {self.name!r} of space {self.space!r} (shown once; the Profile API's "
            f"Basic auth user name): {self.token}"
        ]


@dataclass(frozen=True)
class RevokeAccessToken(Change):
    space: str
    name: str

    def render(self) -> str:
        return f"- space {self.space}: access token {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        SpaceStore(store).revoke_access_token(self.space, self.name)


def _identity_changes(old: IdentitySettings, new: IdentitySettings) -> str:
    """What a plan shows of a change of identity settings: types added and removed, and the
    fields changed, as the file writes them."""
    if new == IdentitySettings():
        return "back to Segment's defaults"
    before, after = old.by_type, new.by_type
    parts = [f"+ {t}" for t in after if t not in before]
    parts += [f"- {t}" for t in before if t not in after]
    for type_, setting in after.items():
        was = before.get(type_)
        if was is None or was == setting:
            continue
        then, now = entry_of(was, complete=True), entry_of(setting, complete=True)
        changed = [f"{k} {_shown(then[k])} → {_shown(now[k])}" for k in now if then[k] != now[k]]
        parts.append(f"{type_}: {', '.join(changed)}")
    if not parts:
        parts.append("identifiers reordered")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return (
            "[" + ", ".join(f"{b['value']}{' (regex)' if b['regex'] else ''}" for b in value) + "]"
        )
    return str(value)


def _sync_text(warehouse: str, schema: str | None) -> str:
    return f"profiles sync to warehouse {warehouse}" + (f" (schema {schema})" if schema else "")


def _plan_spaces(store: WorkspaceStore, config: ConfigFile, earlier: list[Change]) -> list[Change]:
    """Spaces are matched by name. They are planned after sources and warehouses: the ones they
    name exist by then. A source or warehouse the plan deletes takes its connections with it, so a
    space naming one that the plan makes again connects it again."""
    configs = config.spaces or []
    spaces = SpaceStore(store)
    sources = _all_sources(store)
    source_names = {s.id: s.name for s in sources}
    warehouses = {w.name for w in WarehouseStore(store).list()}
    dropped_sources = {c.name for c in earlier if isinstance(c, DeleteSource)}
    dropped_warehouses = {
        c.name for c in earlier if isinstance(c, DeleteInstance) and c.kind == "warehouse"
    }
    problems = _space_problems(config, {s.name for s in sources}, warehouses)
    identities, identity_problems = space_identities(configs)
    problems += identity_problems
    if problems:
        raise ConfigError(problems)
    existing = {s.name: s for s in spaces.list()}
    managed = spaces.managed_sources()
    listed = {cfg.name for cfg in configs}
    changes: list[Change] = [
        DeleteSpace(space.id, name) for name, space in existing.items() if name not in listed
    ]
    for cfg in configs:
        current = existing.get(cfg.name)
        identity = identities[cfg.name]
        if current is None:
            changes.append(CreateSpace(cfg, identity))
            changes += _plan_tokens(spaces, cfg, None)
            changes += _plan_groups(store, cfg, None)
            continue
        old_sources = [
            source_names.get(i, i)
            for i in current.source_ids
            if source_names.get(i, i) not in dropped_sources and i not in managed
        ]
        if set(old_sources) != set(cfg.sources):
            changes.append(UpdateSpace(current.id, cfg.name, "sources", old_sources, cfg.sources))
        old_sync = _stored_sync(current, dropped_warehouses)
        new_sync = _sync_setting(cfg.profiles_sync)
        if new_sync is not None and new_sync[1] is None:
            new_sync = (new_sync[0], current.slug)
        if old_sync != new_sync:
            changes.append(UpdateSpace(current.id, cfg.name, "profiles_sync", old_sync, new_sync))
        if current.identity != identity:
            changes.append(
                UpdateSpace(current.id, cfg.name, "identity", current.identity, identity)
            )
        changes += _plan_tokens(spaces, cfg, current)
        changes += _plan_groups(store, cfg, current)
    return changes


def _space_problems(config: ConfigFile, sources: set[str], warehouses: set[str]) -> list[str]:
    """References to stored sources and warehouses (the model checks those of the file)."""
    problems = []
    for i, cfg in enumerate(config.spaces or []):
        if config.sources is None:
            problems += [
                f"spaces[{i}].sources[{j}]: no source named {name!r}"
                for j, name in enumerate(cfg.sources)
                if name not in sources
            ]
        sync = cfg.profiles_sync
        if config.warehouses is None and sync is not None and sync.warehouse not in warehouses:
            problems.append(
                f"spaces[{i}].profiles_sync.warehouse: no warehouse named {sync.warehouse!r}"
                + (
                    " (`headwater serve` makes the embedded DuckDB warehouse 'default' when no "
                    "warehouse is configured; or list it under `warehouses:`)"
                    if sync.warehouse == "default"
                    else ""
                )
            )
    return problems


def _stored_sync(space: SpaceInfo, dropped: set[str]) -> tuple[str, str | None] | None:
    sync = space.profiles_sync
    if sync is None or sync.warehouse_name in dropped:
        return None
    return (sync.warehouse_name, sync.schema)


def _plan_tokens(spaces: SpaceStore, cfg: SpaceConfig, current: SpaceInfo | None) -> list[Change]:
    """A listed token given in clear replaces a stored one that differs; ``[redacted]`` and a
    token left out keep the stored one; one with nothing stored is made (generated when left
    out). Stored tokens the list leaves out are revoked; no list keeps them all."""
    if cfg.access_tokens is None:
        return []
    stored = {t.name for t in spaces.access_tokens(current.id)} if current is not None else set()
    changes: list[Change] = []
    problems = []
    for i, token in enumerate(cfg.access_tokens):
        if token.name in stored:
            if token.token is None or token.token == REDACTED:
                continue
            assert current is not None
            if spaces.token_matches(current.id, token.name, token.token):
                continue
            changes.append(RevokeAccessToken(cfg.name, token.name))
            changes.append(AddAccessToken(cfg.name, token.name, token.token, generated=False))
        elif token.token == REDACTED:
            problems.append(
                f"space {cfg.name!r}: access_tokens[{i}].token: [redacted] keeps a stored "
                f"token, but there is no token named {token.name!r}: give the token, or leave "
                "`token` out to have one generated"
            )
        elif token.token is None:
            changes.append(AddAccessToken(cfg.name, token.name, new_access_token(), generated=True))
        else:
            changes.append(AddAccessToken(cfg.name, token.name, token.token, generated=False))
    if problems:
        raise ConfigError(problems)
    listed = {token.name for token in cfg.access_tokens}
    revokes: list[Change] = [
        RevokeAccessToken(cfg.name, name) for name in sorted(stored) if name not in listed
    ]
    return revokes + changes


@dataclass(frozen=True)
class AddSubscriptionGroup(Change):
    space: str
    name: str
    description: str

    def render(self) -> str:
        return f"+ space {self.space}: subscription group {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        SubscriptionGroups(store).create(self.space, self.name, self.description)


@dataclass(frozen=True)
class UpdateSubscriptionGroup(Change):
    space: str
    old: SubscriptionGroupConfig
    new: SubscriptionGroupConfig

    def render(self) -> str:
        parts = []
        if self.old.name != self.new.name:
            parts.append(f"name {self.old.name} → {self.new.name}")
        if self.old.description != self.new.description:
            parts.append(f"description {self.old.description!r} → {self.new.description!r}")
        return f"~ space {self.space}: subscription group {self.old.name}: {', '.join(parts)}"

    def apply(self, store: WorkspaceStore) -> None:
        SubscriptionGroups(store).update(
            self.space, self.old.name, name=self.new.name, description=self.new.description
        )


@dataclass(frozen=True)
class DeleteSubscriptionGroup(Change):
    space: str
    name: str

    def render(self) -> str:
        return f"- space {self.space}: subscription group {self.name} (its users' states are kept)"

    def apply(self, store: WorkspaceStore) -> None:
        SubscriptionGroups(store).delete(self.space, self.name)


def _plan_groups(
    store: WorkspaceStore, cfg: SpaceConfig, current: SpaceInfo | None
) -> list[Change]:
    """Groups are matched by name regardless of case; deletes come first (a space holds 25).
    No list keeps the stored groups."""
    if cfg.subscription_groups is None:
        return []
    stored = {}
    if current is not None:
        stored = {
            group_key(g.name): SubscriptionGroupConfig(name=g.name, description=g.description)
            for g in SubscriptionGroups(store).list(current.id)
        }
    wanted = {group_key(g.name): g for g in cfg.subscription_groups}
    changes: list[Change] = [
        DeleteSubscriptionGroup(cfg.name, g.name) for k, g in stored.items() if k not in wanted
    ]
    for key, group in wanted.items():
        old = stored.get(key)
        if old is None:
            changes.append(AddSubscriptionGroup(cfg.name, group.name, group.description))
        elif old != group:
            changes.append(UpdateSubscriptionGroup(cfg.name, old, group))
    return changes


def _export_spaces(store: WorkspaceStore) -> list[dict[str, Any]]:
    """The ``spaces:`` section: sources and the warehouse by name, every token ``[redacted]``,
    identity settings when they are not Segment's defaults (each identifier with what differs
    from its preset; an ``import_from`` was a copy and is written as the identifiers), the
    subscription groups when there are any."""
    spaces = SpaceStore(store)
    names = {s.id: s.name for s in _all_sources(store)}
    managed = spaces.managed_sources()
    written = []
    for space in spaces.list():
        entry: dict[str, Any] = {"name": space.name}
        listed = [names.get(i, i) for i in space.source_ids if i not in managed]
        if listed:
            entry["sources"] = listed
        tokens = spaces.access_tokens(space.id)
        if tokens:
            entry["access_tokens"] = [{"name": t.name, "token": REDACTED} for t in tokens]
        sync = space.profiles_sync
        if sync is not None:
            entry["profiles_sync"] = {"warehouse": sync.warehouse_name}
            if sync.schema != space.slug:
                entry["profiles_sync"]["schema"] = sync.schema
        if space.identity != IdentitySettings():
            entry["identity"] = {"identifiers": [entry_of(s) for s in space.identity.identifiers]}
        groups = SubscriptionGroups(store).list(space.id)
        if groups:
            entry["subscription_groups"] = [
                {"name": g.name, **({"description": g.description} if g.description else {})}
                for g in groups
            ]
        written.append(entry)
    return written


# --- Engage: audiences and computed traits -----------------------------------------------------

SECTIONS: dict[str, Purpose] = {"computed_traits": "trait", "audiences": "audience"}
_NOUNS = {"trait": "computed trait", "audience": "audience"}


@dataclass(frozen=True)
class CreateComputation(Change):
    kind: Purpose
    config: ComputationConfig

    def render(self) -> str:
        cfg = self.config
        details = [f"space {cfg.space}", f"key {cfg.key or computation_key(cfg.name)}"]
        if cfg.destinations:
            details.append(f"destinations {', '.join(d.name for d in cfg.destinations)}")
        return f"+ {_NOUNS[self.kind]} {cfg.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        made = ComputationStore(store).create(
            cfg.space,
            self.kind,
            cfg.name,
            cfg.definition,
            level=cfg.level,
            include_anonymous=cfg.include_anonymous,
            include_historical=cfg.include_historical,
            description=cfg.description,
            destinations=[d.written() for d in cfg.destinations],
        )
        if cfg.key is not None and cfg.key != made.key:
            raise InvalidError(
                f"a new {_NOUNS[self.kind]}'s key is its snake_cased name, {made.key!r}; "
                f"leave key out or write {made.key!r}",
                "key",
            )


@dataclass(frozen=True)
class UpdateComputation(Change):
    kind: Purpose
    computation_id: str
    config: ComputationConfig
    fields: tuple[str, ...]

    def render(self) -> str:
        return f"~ {_NOUNS[self.kind]} {self.config.name}: {', '.join(self.fields)}"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        ComputationStore(store).update(
            cfg.space,
            self.computation_id,
            name=cfg.name,
            definition=cfg.definition if "definition" in self.fields else None,
            include_anonymous=cfg.include_anonymous,
            include_historical=cfg.include_historical,
            description=cfg.description,
            destinations=[d.written() for d in cfg.destinations],
        )


@dataclass(frozen=True)
class DeleteComputation(Change):
    kind: Purpose
    space: str
    computation_id: str
    name: str

    def render(self) -> str:
        return f"- {_NOUNS[self.kind]} {self.name} (its key is never used again in the space)"

    def apply(self, store: WorkspaceStore) -> None:
        ComputationStore(store).delete(self.space, self.computation_id)


def _plan_computations(store: WorkspaceStore, config: ConfigFile) -> list[Change]:
    """Audiences and computed traits, matched by space and key. Deletions go first (another
    computation may read the key of one the file drops), then updates, then creations."""
    computations = ComputationStore(store)
    spaces = {s.name: s for s in SpaceStore(store).list()}
    planned_spaces = {cfg.name for cfg in config.spaces or []} | set(spaces)
    deletes: list[Change] = []
    updates: list[Change] = []
    creates: list[Change] = []
    problems: list[str] = []
    types = {d.name: d.type for d in DestinationStore(store).list()}
    types.update({d.name: d.type for d in config.destinations or []})
    for section, kind in SECTIONS.items():
        configs: list[ComputationConfig] | None = getattr(config, section)
        if configs is None:
            continue
        existing = {
            (space.name, c.key): c
            for space in spaces.values()
            for c in computations.list(space.id, kind)
        }
        listed: set[tuple[str, str]] = set()
        for i, cfg in enumerate(configs):
            if cfg.space not in planned_spaces:
                problems.append(f"{section}[{i}].space: no space named {cfg.space!r}")
                continue
            if kind == "trait":  # §14.1: list destinations take audiences only
                problems += [
                    f"{section}[{i}].destinations[{j}]: {d.name!r} is a list destination "
                    f"({types[d.name]}): it takes audiences only, not computed traits"
                    for j, d in enumerate(cfg.destinations)
                    if d.name in types and creates_audiences(types[d.name])
                ]
            key = cfg.key or computation_key(cfg.name)
            listed.add((cfg.space, key))
            current = existing.get((cfg.space, key))
            if current is None:
                creates.append(CreateComputation(kind, cfg))
                continue
            changed = _computation_changes(current, cfg, kind)
            if changed:
                updates.append(UpdateComputation(kind, current.id, cfg, changed))
        deletes += [
            DeleteComputation(kind, space, c.id, c.name)
            for (space, key), c in existing.items()
            if (space, key) not in listed
        ]
    if problems:
        raise ConfigError(problems)
    return deletes + updates + creates


def _computation_changes(
    current: ComputationInfo, cfg: ComputationConfig, kind: Purpose
) -> tuple[str, ...]:
    definition = definition_of(cfg.definition, kind=cfg.level, purpose=kind)
    connected = [
        {k: v for k, v in asdict(d).items() if k != "destination_id"} for d in current.destinations
    ]
    wanted = [
        asdict(destination_of("", d.name, {k: v for k, v in d.written().items() if k != "name"}))
        for d in cfg.destinations
    ]
    wanted = [{k: v for k, v in d.items() if k != "destination_id"} for d in wanted]
    checks = {
        "name": current.name != cfg.name,
        "definition": parse(current.definition, kind=current.level, purpose=kind) != definition,
        "level": current.level != cfg.level,
        "include_anonymous": current.include_anonymous != cfg.include_anonymous,
        "include_historical": current.include_historical != cfg.include_historical,
        "description": current.description != cfg.description,
        "destinations": sorted(connected, key=repr) != sorted(wanted, key=repr),
    }
    return tuple(name for name, differs in checks.items() if differs)


def _export_computations(store: WorkspaceStore, kind: Purpose) -> list[dict[str, Any]]:
    written = []
    for space in SpaceStore(store).list():
        for c in ComputationStore(store).list(space.id, kind):
            entry: dict[str, Any] = {"space": space.name, "name": c.name}
            if computation_key(c.name) != c.key:
                entry["key"] = c.key
            entry["definition"] = c.definition
            if c.level != "users":
                entry["level"] = c.level
            if c.include_anonymous:
                entry["include_anonymous"] = True
            if not c.include_historical:
                entry["include_historical"] = False
            if c.description:
                entry["description"] = c.description
            if c.destinations:
                entry["destinations"] = [_destination_entry(d) for d in c.destinations]
            written.append(entry)
    return written


def _destination_entry(destination: Destination) -> dict[str, Any]:
    defaults = asdict(Destination("", ""))
    entry: dict[str, Any] = {"name": destination.destination}
    for key, value in asdict(destination).items():
        if key not in ("destination_id", "destination") and value != defaults[key]:
            entry[key] = list(value) if isinstance(value, tuple) else value
    return entry


# --- Engage: SQL traits ----------------------------------------------------------------------


@dataclass(frozen=True)
class CreateSqlTrait(Change):
    config: SqlTraitConfig

    def render(self) -> str:
        cfg = self.config
        details = [f"key {cfg.trait_key}", f"warehouse {cfg.warehouse}"]
        if cfg.level != "users":
            details.append(f"level {cfg.level}")
        details.append(f"every {cfg.schedule.every_hours} hours")
        return f"+ sql trait {cfg.space}/{cfg.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        SqlTraitStore(store).create(
            cfg.space,
            cfg.name,
            key=cfg.key,
            warehouse=cfg.warehouse,
            query=cfg.query,
            level=cfg.level,
            every_hours=cfg.schedule.every_hours,
        )


@dataclass(frozen=True)
class UpdateSqlTrait(Change):
    space: str
    trait_id: str
    name: str
    field: str  # query, every_hours
    old: Any
    new: Any

    def render(self) -> str:
        if self.field == "query":
            return f"~ sql trait {self.space}/{self.name}: query changed"
        return f"~ sql trait {self.space}/{self.name}: every {self.old} → {self.new} hours"

    def apply(self, store: WorkspaceStore) -> None:
        SqlTraitStore(store).update(self.space, self.trait_id, **{self.field: self.new})


@dataclass(frozen=True)
class DeleteSqlTrait(Change):
    space: str
    trait_id: str
    name: str

    def render(self) -> str:
        return f"- sql trait {self.space}/{self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        SqlTraitStore(store).delete(self.space, self.trait_id)


def _plan_sql_traits(
    store: WorkspaceStore, config: ConfigFile
) -> tuple[list[Change], list[Change]]:
    """(deletions, creations and updates). Traits are matched by space and name; the key,
    warehouse and level of a trait that exists cannot change (a trait of another name is a
    new trait, with a new key). Deletions run before the spaces' changes (a space the plan
    deletes is still there), the rest last (the spaces and warehouses it names are there)."""
    configs = config.sql_traits or []
    space_names = {s.id: s.name for s in SpaceStore(store).list()}
    warehouse_names = {w.id: w.name for w in WarehouseStore(store).list()}
    problems = []
    for i, cfg in enumerate(configs):
        if config.spaces is None and cfg.space not in space_names.values():
            problems.append(f"sql_traits[{i}].space: no space named {cfg.space!r}")
        if config.warehouses is None and cfg.warehouse not in warehouse_names.values():
            problems.append(f"sql_traits[{i}].warehouse: no warehouse named {cfg.warehouse!r}")
    stored: dict[tuple[str, str], SqlTrait] = {}
    for trait in SqlTraitStore(store).every():
        space = space_names.get(trait.space_id)
        if space is not None:
            stored[(space, trait.name)] = trait
    listed = {(cfg.space, cfg.name) for cfg in configs}
    deletes: list[Change] = [
        DeleteSqlTrait(space, trait.id, name)
        for (space, name), trait in stored.items()
        if (space, name) not in listed
    ]
    changes: list[Change] = []
    for i, cfg in enumerate(configs):
        current = stored.get((cfg.space, cfg.name))
        if current is None:
            changes.append(CreateSqlTrait(cfg))
            continue
        fixed = {
            "key": (current.key, cfg.trait_key),
            "warehouse": (warehouse_names.get(current.warehouse_id), cfg.warehouse),
            "level": (current.level, cfg.level),
        }
        for what, (old, new) in fixed.items():
            if old != new:
                problems.append(
                    f"sql_traits[{i}].{what}: the trait {cfg.space}/{cfg.name} has {what} "
                    f"{old!r}, which cannot change; give the trait another name to make a new one"
                )
        if current.query != cfg.query:
            changes.append(
                UpdateSqlTrait(cfg.space, current.id, cfg.name, "query", current.query, cfg.query)
            )
        if current.every_hours != cfg.schedule.every_hours:
            changes.append(
                UpdateSqlTrait(
                    cfg.space,
                    current.id,
                    cfg.name,
                    "every_hours",
                    current.every_hours,
                    cfg.schedule.every_hours,
                )
            )
    if problems:
        raise ConfigError(problems)
    return deletes, changes


def _export_sql_traits(store: WorkspaceStore) -> list[dict[str, Any]]:
    """The ``sql_traits:`` section: spaces and warehouses by name; what equals its default
    (the key of the name, users, every 12 hours) left out."""
    space_names = {s.id: s.name for s in SpaceStore(store).list()}
    warehouse_names = {w.id: w.name for w in WarehouseStore(store).list()}
    written = []
    for trait in SqlTraitStore(store).every():
        space = space_names.get(trait.space_id)
        if space is None:
            continue
        entry: dict[str, Any] = {"space": space, "name": trait.name}
        if trait.key != _name_key(trait.name):
            entry["key"] = trait.key
        entry["warehouse"] = warehouse_names.get(trait.warehouse_id, trait.warehouse_id)
        entry["query"] = trait.query
        if trait.level != "users":
            entry["level"] = trait.level
        if trait.every_hours != DEFAULT_EVERY_HOURS:
            entry["schedule"] = {"every_hours": trait.every_hours}
        written.append(entry)
    return written


def _name_key(name: str) -> str | None:
    try:
        return key_of(name)
    except InvalidError:
        return None  # a name without letters or digits: the trait was given its key


# --- Engage: journeys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJourney(Change):
    config: JourneyConfig

    def render(self) -> str:
        cfg = self.config
        found = parse_journey(cfg.definition).steps.values()
        steps = sum(1 for s in found if s.kind not in ("branch", "timeout"))
        plural = "" if steps == 1 else "s"
        return (
            f"+ journey {cfg.space}/{cfg.name} (key {cfg.journey_key}; {cfg.status}; "
            f"{steps} step{plural})"
        )

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        journeys = JourneyStore(store)
        made = journeys.create(
            cfg.space,
            cfg.name,
            cfg.definition,
            description=cfg.description,
            publish=cfg.status != "draft",
            key=cfg.key,
        )
        if cfg.status in ("paused", "archived"):
            journeys.set_status(cfg.space, made.id, cfg.status)


@dataclass(frozen=True)
class UpdateJourney(Change):
    space: str
    journey_id: str
    name: str
    new_name: str | None = None
    description: str | None = None
    definition: Mapping[str, Any] | None = None
    publish: bool = False
    status: str | None = None  # the live version's, after any publish

    def render(self) -> str:
        parts = []
        if self.new_name is not None:
            parts.append(f"name → {self.new_name}")
        if self.description is not None:
            parts.append("description changed")
        if self.definition is not None:
            parts.append("steps changed")
        if self.publish:
            parts.append("publish")
        if self.status is not None:
            parts.append(f"status → {self.status}")
        return f"~ journey {self.space}/{self.name}: {', '.join(parts)}"

    def apply(self, store: WorkspaceStore) -> None:
        journeys = JourneyStore(store)
        if self.new_name is not None or self.description is not None or self.definition:
            journeys.update(
                self.space,
                self.journey_id,
                name=self.new_name,
                description=self.description,
                definition=self.definition,
            )
        if self.publish:
            journeys.publish(self.space, self.journey_id)
        if self.status is not None:
            journeys.set_status(self.space, self.journey_id, self.status)


@dataclass(frozen=True)
class DeleteJourney(Change):
    space: str
    journey_id: str
    name: str

    def render(self) -> str:
        return f"- journey {self.space}/{self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        JourneyStore(store).delete(self.space, self.journey_id)


def _journey_status(info: JourneyInfo) -> str:
    """As the file says it: ``draft`` when the latest version is one (a live version may run
    under it), else the live version's status, else archived."""
    if info.latest.status == "draft":
        return "draft"
    live = info.live
    return live.status if live is not None else "archived"


def _without_keys(item: Any) -> Any:
    if isinstance(item, Mapping):
        return {k: _without_keys(v) for k, v in item.items() if k != "key"}
    if isinstance(item, list):
        return [_without_keys(v) for v in item]
    return item


def _plan_journeys(store: WorkspaceStore, config: ConfigFile) -> tuple[list[Change], list[Change]]:
    """(deletions, creations and updates), matched by space and key. Deletions run before
    the spaces' changes, the rest last. Steps that change make a new draft version (published
    when the file says ``published`` or ``paused``); a published event-triggered journey's
    steps cannot change (§16)."""
    configs = config.journeys or []
    spaces = SpaceStore(store).list()
    journeys = JourneyStore(store)
    stored: dict[tuple[str, str], JourneyInfo] = {}
    for space in spaces:
        for info in journeys.list(space.id):
            stored[(space.name, info.key)] = info
    problems = []
    names = {s.name for s in spaces}
    for i, cfg in enumerate(configs):
        if config.spaces is None and cfg.space not in names:
            problems.append(f"journeys[{i}].space: no space named {cfg.space!r}")
    listed = {(cfg.space, cfg.journey_key) for cfg in configs}
    deletes: list[Change] = [
        DeleteJourney(space, info.id, info.name)
        for (space, key), info in stored.items()
        if (space, key) not in listed
    ]
    changes: list[Change] = []
    for i, cfg in enumerate(configs):
        current = stored.get((cfg.space, cfg.journey_key))
        if current is None:
            changes.append(CreateJourney(cfg))
            continue
        latest = current.latest
        stepped = _without_keys(cfg.definition) != _without_keys(latest.definition)
        if (
            stepped
            and parse_journey(latest.definition).kind == "event_triggered"
            and any(v.status != "draft" for v in current.versions)
        ):
            problems.append(
                f"journeys[{i}].definition: {cfg.space}/{cfg.name} is a published "
                "event-triggered journey, which cannot be edited (§16); give it another name "
                "to make a new one"
            )
            continue
        drafted = stepped or latest.status == "draft"
        live = current.live
        publish = cfg.status in ("published", "paused") and drafted
        status: str | None = None
        if cfg.status == "paused" and (publish or (live is not None and live.status != "paused")):
            status = "paused"
        elif cfg.status == "published" and not publish and live is not None:
            status = "published" if live.status != "published" else None
        elif cfg.status == "archived" and live is not None:
            status = "archived"
        update = UpdateJourney(
            cfg.space,
            current.id,
            current.name,
            new_name=cfg.name if cfg.name != current.name else None,
            description=cfg.description if cfg.description != current.description else None,
            definition=cfg.definition if stepped else None,
            publish=publish,
            status=status,
        )
        if update != UpdateJourney(cfg.space, current.id, current.name):
            changes.append(update)
    if problems:
        raise ConfigError(problems)
    return deletes, changes


def _export_journeys(store: WorkspaceStore) -> list[dict[str, Any]]:
    """The ``journeys:`` section: each journey's latest definition, send step keys included,
    and its status as the file says it."""
    written = []
    for space in SpaceStore(store).list():
        for info in JourneyStore(store).list(space.id):
            entry: dict[str, Any] = {"space": space.name, "name": info.name}
            if info.key != journey_key_of(info.name):
                entry["key"] = info.key
            if info.description:
                entry["description"] = info.description
            entry["status"] = _journey_status(info)
            entry["definition"] = dict(info.latest.definition)
            written.append(entry)
    return written


# --- consent_categories: ---------------------------------------------------------------------


def _consent_entry(category: ConsentCategory) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": category.category_id, "name": category.name}
    if category.destinations:
        entry["destinations"] = list(category.destinations)
    if not category.enabled:
        entry["enabled"] = False
    return entry


def _consent_store(store: WorkspaceStore) -> ConsentCategories:
    return ConsentCategories(store, on_first=add_consent_event_in)


@dataclass(frozen=True)
class AddConsentCategory(Change):
    config: ConsentCategoryConfig

    def render(self) -> str:
        mapped = ", ".join(self.config.destinations) or "no destinations"
        return f"+ consent category {self.config.id} ({self.config.name}; {mapped})"

    def apply(self, store: WorkspaceStore) -> None:
        c = self.config
        _consent_store(store).create(c.id, c.name, c.destinations, enabled=c.enabled)


@dataclass(frozen=True)
class UpdateConsentCategory(Change):
    current: ConsentCategory
    config: ConsentCategoryConfig

    def render(self) -> str:
        return f"~ consent category {self.config.id}"

    def apply(self, store: WorkspaceStore) -> None:
        c = self.config
        _consent_store(store).update(
            c.id, name=c.name, destinations=c.destinations, enabled=c.enabled
        )


@dataclass(frozen=True)
class DeleteConsentCategory(Change):
    category_id: str

    def render(self) -> str:
        return f"- consent category {self.category_id}"

    def apply(self, store: WorkspaceStore) -> None:
        _consent_store(store).delete(self.category_id)


def _plan_consent_categories(
    store: WorkspaceStore, configs: list[ConsentCategoryConfig]
) -> list[Change]:
    """The file's list is the complete set; ids are case-sensitive (``Ads`` and ``ads`` are
    two categories)."""
    seen: dict[str, int] = {}
    for i, cfg in enumerate(configs):
        if cfg.id in seen:
            raise ConfigError(
                [
                    f"consent_categories[{i}]: id {cfg.id!r} is already used by "
                    f"consent_categories[{seen[cfg.id]}]"
                ]
            )
        seen[cfg.id] = i
    current = {c.category_id: c for c in ConsentCategories(store).list()}
    changes: list[Change] = [
        DeleteConsentCategory(category_id) for category_id in current if category_id not in seen
    ]
    for cfg in configs:
        found = current.get(cfg.id)
        if found is None:
            changes.append(AddConsentCategory(cfg))
        elif (found.name, list(found.destinations), found.enabled) != (
            cfg.name,
            sorted(cfg.destinations),
            cfg.enabled,
        ):
            changes.append(UpdateConsentCategory(found, cfg))
    return changes


# --- functions -------------------------------------------------------------------------------
# ``functions:`` is the complete set when given. A function whose code differs from what is
# deployed gets a new version, deployed ("Save & Deploy"); code equal to a saved, undeployed
# LATEST deploys it. Sources' ``function`` and destinations' ``insert_function`` attach them
# once both exist; functions the file drops go last, once nothing runs them.


@dataclass(frozen=True)
class CreateFunction(Change):
    config: FunctionConfig
    limit: int

    def render(self) -> str:
        cfg = self.config
        details = [cfg.kind, cfg.language, f"{len(cfg.code or '')} characters of code"]
        if cfg.settings:
            details.append(f"settings {', '.join(s['name'] for s in cfg.settings)}")
        return f"+ function {cfg.name} ({'; '.join(details)})"

    def apply(self, store: WorkspaceStore) -> None:
        cfg = self.config
        assert cfg.code is not None
        FunctionStore(store, limit=self.limit).create(
            cfg.name,
            cfg.kind,
            cfg.language,
            cfg.code,
            description=cfg.description,
            settings=cfg.settings,
        )


@dataclass(frozen=True)
class UpdateFunction(Change):
    """One field of a function changes; ``code`` is saved as a new version and deployed."""

    function_id: str
    name: str
    field: str
    old: Any
    new: Any

    def render(self) -> str:
        if self.field == "code":
            return f"~ function {self.name}: code changed (a new version, deployed)"
        if self.field == "deploy":
            return f"~ function {self.name}: deploy version {self.new} (was {self.old})"
        return f"~ function {self.name}: {self.field} {_value(self.old)} → {_value(self.new)}"

    def apply(self, store: WorkspaceStore) -> None:
        functions = FunctionStore(store)
        if self.field == "deploy":
            functions.deploy(self.function_id, self.new)
        elif self.field == "code":
            functions.update(self.function_id, code=self.new, deploy=True)
        else:
            functions.update(self.function_id, **{self.field: self.new})


@dataclass(frozen=True)
class DeleteFunction(Change):
    function_id: str
    name: str

    def render(self) -> str:
        return f"- function {self.name}"

    def apply(self, store: WorkspaceStore) -> None:
        FunctionStore(store).delete(self.function_id)


@dataclass(frozen=True)
class AttachFunction(Change):
    """A source's function or a destination's insert function (``kind``) is set or removed."""

    kind: str  # source | destination
    instance: str  # its name, as the file gives it
    old: str | None
    new: str | None
    settings: Mapping[str, Any]
    secrets: frozenset[str]
    enabled: bool = True  # an insert function's Enable Function toggle

    def render(self) -> str:
        what = "function" if self.kind == "source" else "insert_function"
        if self.new is None:
            return f"~ {self.kind} {self.instance}: {what} {self.old} → none"
        shown = redact_secrets(self.settings, self.secrets)
        settings = f" (settings {_value(shown)})" if shown else ""
        disabled = "" if self.enabled else " (disabled)"
        return (
            f"~ {self.kind} {self.instance}: {what} {self.old or 'none'} → {self.new}"
            f"{settings}{disabled}"
        )

    def apply(self, store: WorkspaceStore) -> None:
        functions = FunctionStore(store)
        if self.kind == "source":
            functions.attach_source(self.instance, self.new, self.settings)
        else:
            functions.attach_insert(self.instance, self.new, self.settings, enabled=self.enabled)


def _functions_limit(config: ConfigFile) -> int:
    if config.server is not None:
        return config.server.functions_limit
    return DEFAULT_FUNCTIONS_LIMIT


def _plan_functions(store: WorkspaceStore, config: ConfigFile) -> tuple[list[Change], list[Change]]:
    """(creates and updates, deletes) of the ``functions:`` section."""
    if config.functions is None:
        return [], []
    functions = FunctionStore(store)
    existing = {f.name: f for f in functions.list()}
    listed = {cfg.name for cfg in config.functions}
    upserts: list[Change] = []
    problems = []
    for i, cfg in enumerate(config.functions):
        current = existing.get(cfg.name)
        if current is None:
            upserts.append(CreateFunction(cfg, _functions_limit(config)))
            continue
        if (current.kind, current.language) != (cfg.kind, cfg.language):
            problems.append(
                f"functions[{i}]: function {cfg.name!r} is a {current.kind} function in "
                f"{current.language}; a function's kind and language cannot change (give the "
                "new one another name)"
            )
            continue
        for name, old, new in (
            ("description", current.description, cfg.description),
            ("settings", [s.shown() for s in current.settings], cfg.settings),
        ):
            if old != new:
                upserts.append(UpdateFunction(current.id, cfg.name, name, old, new))
        upserts += _code_changes(functions, current, cfg)
    if problems:
        raise ConfigError(problems)
    deletes: list[Change] = [
        DeleteFunction(f.id, name) for name, f in existing.items() if name not in listed
    ]
    return upserts, deletes


def _code_changes(
    functions: FunctionStore, current: FunctionInfo, cfg: FunctionConfig
) -> list[Change]:
    deployed = functions.deployed(current.id)
    if deployed is not None and deployed.source == cfg.code:
        return []
    latest = functions.latest(current.id)
    if latest.source == cfg.code:
        return [
            UpdateFunction(current.id, cfg.name, "deploy", current.deployed_version, latest.version)
        ]
    return [UpdateFunction(current.id, cfg.name, "code", None, cfg.code)]


def _declared(store: WorkspaceStore, config: ConfigFile) -> dict[str, tuple[str, frozenset[str]]]:
    """Each function's (kind, secret setting names) once the file is applied."""
    if config.functions is not None:
        return {
            f.name: (f.kind, frozenset(s["name"] for s in f.settings if s.get("secret")))
            for f in config.functions
        }
    return {f.name: (f.kind, f.secrets) for f in FunctionStore(store).list()}


def _check_function(
    declared: Mapping[str, tuple[str, frozenset[str]]], name: str, kind: str, where: str
) -> str | None:
    found = declared.get(name)
    if found is None:
        return f"{where}: no function is named {name!r}"
    if found[0] != kind:
        return f"{where}: function {name!r} is a {found[0]} function, not a {kind} function"
    return None


def _plan_source_functions(store: WorkspaceStore, config: ConfigFile) -> list[Change]:
    """Each listed source's ``function`` and ``function_settings``."""
    if config.sources is None:
        return []
    declared = _declared(store, config)
    names = {f.id: f.name for f in FunctionStore(store).list()}
    pairs = _match(config.sources, _all_sources(store))
    changes: list[Change] = []
    problems = []
    for i, (cfg, source) in enumerate(zip(config.sources, pairs, strict=True)):
        if cfg.function is not None:
            problem = _check_function(declared, cfg.function, "source", f"sources[{i}].function")
            if problem:
                problems.append(problem)
                continue
        old = names.get(source.function_id) if source and source.function_id else None
        stored = source.function_settings if source and old == cfg.function else {}
        secrets = declared.get(cfg.function or "", ("", frozenset()))[1]
        settings = _restored(cfg.function_settings, stored, secrets)
        if (old, dict(stored)) != (cfg.function, settings):
            changes.append(AttachFunction("source", cfg.name, old, cfg.function, settings, secrets))
    if problems:
        raise ConfigError(problems)
    return changes


def _plan_insert_functions(store: WorkspaceStore, config: ConfigFile) -> list[Change]:
    """Each listed destination's ``insert_function`` and its settings; its ``function:`` type
    names a destination function."""
    if config.destinations is None:
        return []
    declared = _declared(store, config)
    names = {f.id: f.name for f in FunctionStore(store).list()}
    existing = {d.name: d for d in DestinationStore(store).list()}
    changes: list[Change] = []
    problems = []
    for i, cfg in enumerate(config.destinations):
        function_type = function_name_of_type(cfg.type)
        if function_type is not None:
            problem = _check_function(
                declared, function_type, "destination", f"destinations[{i}].type"
            )
            if problem:
                problems.append(problem)
        if cfg.insert_function is not None:
            problem = _check_function(
                declared, cfg.insert_function, "insert", f"destinations[{i}].insert_function"
            )
            if problem:
                problems.append(problem)
                continue
        current = existing.get(cfg.name)
        if current is not None and current.type != cfg.type:
            current = None  # made again
        old = (
            names.get(current.insert_function_id)
            if current and current.insert_function_id
            else None
        )
        stored = current.insert_function_settings if current and old == cfg.insert_function else {}
        secrets = declared.get(cfg.insert_function or "", ("", frozenset()))[1]
        settings = _restored(cfg.insert_function_settings, stored, secrets)
        enabled = current.insert_function_enabled if current and old else True
        if (old, dict(stored), enabled) != (
            cfg.insert_function,
            settings,
            cfg.insert_function_enabled,
        ):
            changes.append(
                AttachFunction(
                    "destination",
                    cfg.name,
                    old,
                    cfg.insert_function,
                    settings,
                    secrets,
                    cfg.insert_function_enabled,
                )
            )
    if problems:
        raise ConfigError(problems)
    return changes


class _Code(str):
    """Code, written as a YAML literal block (``code: |``) when it can be."""


class _ExportDumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Code) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)


_ExportDumper.add_representer(_Code, _literal)


def _export_functions(store: WorkspaceStore) -> list[dict[str, Any]]:
    """Every function with its DEPLOYED code inline (LATEST if never deployed), so the file
    describes what runs and applies back to no change."""
    functions = FunctionStore(store)
    written = []
    for function in functions.list():
        code = functions.deployed(function.id) or functions.latest(function.id)
        entry: dict[str, Any] = {
            "name": function.name,
            "kind": function.kind,
            "language": function.language,
        }
        if function.description:
            entry["description"] = function.description
        if function.settings:
            entry["settings"] = [s.shown() for s in function.settings]
        entry["code"] = _Code(code.source)
        written.append(entry)
    return written


def _exported_function(attached: Attached | None) -> dict[str, Any]:
    if attached is None:
        return {}
    return {
        "function": attached.function.name,
        "settings": attached.function.redact(attached.settings),
        "enabled": attached.enabled,
    }
