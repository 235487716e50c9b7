"""The shape of ``headwater.yaml``, validated with pydantic.

Each top-level section is one field of ``ConfigFile``; a later section (``destinations:``,
``warehouses:``) is one more field here and one more planner in ``apply.py``. Unknown keys are
errors, not ignored, so a typo never silently leaves something unmanaged. Errors name the path
of the offending value (``sources[1].name: field required``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from headwater.config.journeys import JourneyConfig, journey_problems
from headwater.destinations.actions import ActionDefinition, check_mappings
from headwater.destinations.filters import check_filters
from headwater.destinations.presets import (
    PRESETS,
    from_subscription,
    is_subscription,
    preset_mappings,
)
from headwater.destinations.redirects import Redirects
from headwater.destinations.registry import get as get_definition
from headwater.destinations.registry import type_named
from headwater.engage.computations import computation_key, definition_of
from headwater.engage.sql_traits.definitions import (
    DEFAULT_EVERY_HOURS,
    MAX_EVERY_HOURS,
    MAX_PER_SPACE,
    check_key,
    check_query,
    key_of,
)
from headwater.errors import (
    ConfigError,
    InputError,
    InvalidError,
    ItemError,
    ListError,
    UnknownDestinationType,
)
from headwater.functions.store import (
    check_code_text,
    check_declarations,
    check_function_name,
    function_name_of_type,
)
from headwater.functions.store import check_description as check_function_description
from headwater.privacy.alerts import check_alert
from headwater.privacy.consent import check_category_id
from headwater.privacy.consent import check_name as check_category_name
from headwater.privacy.inventory import check_classification, check_path
from headwater.privacy.matchers import MAX_CUSTOM, check_matcher, words
from headwater.protocols.compiled import PlanError, Rule, compile_plan
from headwater.protocols.plans import normalized_settings
from headwater.protocols.schema_controls import parse_controls
from headwater.protocols.transformations import from_api
from headwater.store.instances import REDACTED
from headwater.store.retention import parse_retention
from headwater.store.workspace import check_name, check_settings, check_slug, check_write_key
from headwater.unify.settings import IdentitySettings, settings_of
from headwater.unify.spaces import check_access_token
from headwater.unify.subscription_groups import (
    MAX_GROUPS,
    check_description,
    check_group_name,
    group_key,
)
from headwater.warehouse.settings import WarehouseOptions


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _checked(check: Any, value: Any) -> Any:
    """Run a store check so the file and the API accept exactly the same values."""
    try:
        return check(value)
    except InvalidError as exc:
        raise ValueError(exc.message) from exc


class WriteKeyConfig(_Section):
    """A write key; ``expires_at`` is set on a key in its rotation grace period."""

    key: StrictStr
    expires_at: datetime | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return str(_checked(check_write_key, value))

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class SourceConfig(_Section):
    name: StrictStr
    slug: StrictStr | None = None
    enabled: StrictBool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    write_key: StrictStr | None = None
    write_keys: list[WriteKeyConfig] | None = None
    # Protocols: the connected tracking plan (by name) and Segment's schema settings body,
    # forwarding targets by source name or id.
    tracking_plan: StrictStr | None = None
    schema_settings: dict[str, Any] = Field(default_factory=dict, alias="schema")
    # Event filters without a plan and schema integration filters (§6.2), in the REST body's
    # shape (protocols/schema_controls.py); absent means none, like ``settings``.
    schema_controls: dict[str, Any] = Field(default_factory=dict)
    # The source function it runs (by name; its endpoint: POST /v1/functions/<source>) and
    # this source's settings for it (``${ENV}`` read from the environment, like secrets).
    function: StrictStr | None = None
    function_settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function_settings")
    @classmethod
    def _function_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, _from_environment(value)))

    @model_validator(mode="after")
    def _settings_need_a_function(self) -> SourceConfig:
        if self.function_settings and self.function is None:
            raise ValueError("function_settings: give `function:` too")
        return self

    @field_validator("schema_controls")
    @classmethod
    def _schema_controls(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return parse_controls(value)
        except InvalidError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from exc

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("schema_settings")
    @classmethod
    def _schema_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(normalized_settings, _checked(check_settings, value)))

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(check_slug, value))

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, value))

    @field_validator("write_key")
    @classmethod
    def _write_key(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(check_write_key, value))

    @field_validator("write_keys", mode="before")
    @classmethod
    def _plain_keys(cls, value: Any) -> Any:
        # `- WK_a` is short for `- {key: WK_a}`.
        if isinstance(value, list):
            return [{"key": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _one_key_field(self) -> SourceConfig:
        if self.write_key is not None and self.write_keys is not None:
            raise ValueError("give write_key or write_keys, not both")
        if self.write_keys is not None:
            if not self.write_keys:
                raise ValueError("write_keys must not be empty (leave it out to keep the keys)")
            keys = [k.key for k in self.write_keys]
            if len(set(keys)) != len(keys):
                raise ValueError("write_keys lists a key twice")
        return self

    @property
    def keys(self) -> tuple[WriteKeyConfig, ...] | None:
        """The keys the file asks for; None when it leaves the source's keys as they are."""
        if self.write_key is not None:
            return (WriteKeyConfig(key=self.write_key),)
        if self.write_keys is not None:
            return tuple(self.write_keys)
        return None


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# server.functions_fetch_allow: "*", "*.stripe.com", "api.example.com", "127.0.0.1", "[::1]"
_HOST_PATTERN = re.compile(r"\*|(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*|\[[0-9A-Fa-f:.]+\]")


def _from_environment(value: Any) -> Any:
    """``${NAME}`` in a string setting is the environment variable NAME (secrets stay out of
    files in git)."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ValueError(f"the environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _from_environment(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_environment(v) for v in value]
    return value


def _from_segment(actions: Mapping[str, ActionDefinition], item: Any, position: int) -> Any:
    """An item written as a Segment subscription, as a mapping (others are left as they are)."""
    if not is_subscription(item):
        return item
    try:
        return from_subscription(actions, item)
    except ItemError as exc:
        inside = f".{exc.where}" if exc.where else ""
        raise ValueError(f"mappings[{position}]{inside}: {exc}") from None


class DestinationConfig(_Section):
    name: StrictStr
    type: StrictStr
    source: StrictStr
    enabled: StrictBool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    delivery: dict[str, Any] = Field(default_factory=dict)
    filters: list[dict[str, Any]] = Field(default_factory=list)
    mappings: list[dict[str, Any]] = Field(default_factory=list)
    # The insert function run before delivery (by name) and this instance's settings for it.
    insert_function: StrictStr | None = None
    insert_function_settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("insert_function_settings")
    @classmethod
    def _insert_function_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, _from_environment(value)))

    @model_validator(mode="after")
    def _insert_settings_need_a_function(self) -> DestinationConfig:
        if self.insert_function_settings and self.insert_function is None:
            raise ValueError("insert_function_settings: give `insert_function:` too")
        return self

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> list[dict[str, Any]]:
        return [f.written() for f in check_filters(value)]

    @model_validator(mode="before")
    @classmethod
    def _mappings(cls, data: Any) -> Any:
        """Mappings are checked against the actions of the destination's type. ``presets`` is
        the definition's automatic presets (Segment's default subscriptions), and an item in
        Segment's shape (``actionSlug``, ``settings``) is read as a mapping."""
        if not isinstance(data, dict) or not data.get("mappings"):
            return data
        raw = data["mappings"]
        if isinstance(raw, list) and PRESETS in raw:
            raise ValueError(
                f"mappings[{raw.index(PRESETS)}]: `presets` stands for the whole list: write "
                "`mappings: presets`, or list every mapping (`headwater export` writes the "
                "presets out as mappings to edit)"
            )
        if isinstance(raw, str) and raw != PRESETS:
            raise ValueError("mappings: must be a list of mappings, or `presets`")
        try:
            definition = get_definition(str(data.get("type")))
        except UnknownDestinationType:
            # The type's own error is reported where the type is used.
            return {**data, "mappings": []} if raw == PRESETS else data
        actions = definition.actions
        if not actions:
            raise ValueError(f"mappings: {data.get('type')} is not an Actions destination")
        if raw == PRESETS:
            try:
                raw = preset_mappings(definition)
            except InvalidError as exc:
                raise ValueError(f"mappings: {exc.message}") from None
        elif isinstance(raw, list):
            raw = [_from_segment(actions, item, i) for i, item in enumerate(raw)]
        try:
            checked = check_mappings(actions, raw)
        except ListError as exc:
            message = str(exc)
            raise ValueError(
                f"mappings{message}" if message.startswith("[") else f"mappings: {message}"
            ) from None
        return {**data, "mappings": [m.written() for m in checked]}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, _from_environment(value)))


class WarehouseConfig(_Section):
    """A warehouse: its connection, and ``WarehouseOptions`` (schedule, sources, schema names,
    Selective Sync) written at the same level."""

    name: StrictStr
    type: StrictStr
    enabled: StrictBool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    syncs_per_day: StrictInt | None = None
    sources: list[StrictStr] | None = None
    schema_names: dict[str, str] | None = None
    selective_sync: dict[str, dict[str, Any]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, _from_environment(value)))

    @model_validator(mode="after")
    def _options(self) -> WarehouseConfig:
        WarehouseOptions.model_validate(self.options())
        return self

    def options(self) -> dict[str, Any]:
        return self.model_dump(
            include={"syncs_per_day", "sources", "schema_names", "selective_sync"},
            exclude_none=True,
        )


class RuleConfig(_Section):
    """A tracking-plan rule (Segment's `RuleV1`, `json_schema` for `jsonSchema`; a rule written
    with `jsonSchema`, as the Public API gives it, is read the same)."""

    type: Literal["COMMON", "TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN"]
    key: StrictStr = ""
    version: StrictInt = Field(default=1, ge=1)
    json_schema: dict[str, Any]

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(check_settings, value))

    def rule(self) -> Rule:
        return Rule(self.type, self.key, self.json_schema, self.version)


class TrackingPlanConfig(_Section):
    """A tracking plan; ``rules`` inline, or ``- file: path`` (JSON or YAML, relative to the
    config file) holding one rule or a list in the Public API's `RuleV1` shape."""

    name: StrictStr
    type: Literal["LIVE", "RULE_LIBRARY", "PROPERTY_LIBRARY"] = "LIVE"
    description: StrictStr = ""
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    libraries: list[StrictStr] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("rules", mode="before")
    @classmethod
    def _files(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        base = (info.context or {}).get("base_dir") or Path.cwd()
        out: list[Any] = []
        for i, item in enumerate(value):
            if isinstance(item, dict) and set(item) == {"file"}:
                out += _rules_from_file(Path(base), item["file"], f"rules[{i}]")
            elif isinstance(item, dict) and "jsonSchema" in item:
                out.append(_public_api_rule(item))  # pasted from Segment's API: accepted as is
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _compiles(self) -> TrackingPlanConfig:
        seen: set[tuple[str, str, int]] = set()
        for rule in self.rules:
            ident = (rule.type, rule.key, rule.version)
            if ident in seen:
                raise ValueError(f"rules: {rule.rule().name()} is listed twice")
            seen.add(ident)
        try:
            compile_plan(rule.rule() for rule in self.rules)
        except PlanError as exc:
            raise ValueError(f"rules: {exc}") from None
        if self.type != "LIVE" and self.libraries:
            raise ValueError("libraries: only LIVE plans sync libraries")
        return self


_RULE_TIMES = ("createdAt", "updatedAt", "deprecatedAt")


def _rules_from_file(base: Path, name: Any, where: str) -> list[dict[str, Any]]:
    """The rules a `file:` item names, as inline rules (`jsonSchema` → `json_schema`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.file: must be a path")
    path = base / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{where}.file: cannot read {name}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else read_yaml(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{where}.file: {name} is not valid JSON or YAML: {exc}") from None
    items = data if isinstance(data, list) else [data]
    rules = []
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{where}.file: {name}[{j}]: must be a rule object")
        rules.append(_public_api_rule(item))
    return rules


def _public_api_rule(item: dict[str, Any]) -> dict[str, Any]:
    """A `RuleV1` as an inline rule: `jsonSchema` → `json_schema`, timestamps dropped."""
    rule = {k: v for k, v in item.items() if k not in _RULE_TIMES}
    if "jsonSchema" in rule:
        rule["json_schema"] = rule.pop("jsonSchema")
    return rule


# --- transformations: (Protocols Transformations, the Public API's input by names) -------------


class TransformationConfig(_Section):
    """A transformation as ``CreateTransformationV1Input``, with ``source`` (a source name)
    for ``sourceId`` and ``destination`` (a destination instance on that source, or a
    destination type) for ``destinationMetadataId``: the transformation applies to every
    instance of that type on the source, as Segment's does."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: StrictStr
    source: StrictStr
    destination: StrictStr | None = None
    enabled: StrictBool = True
    if_: StrictStr = Field(alias="if")
    drop: StrictBool = False
    newEventName: StrictStr | None = None
    propertyRenames: list[Any] = Field(default_factory=list)
    propertyValueTransformations: list[Any] = Field(default_factory=list)
    fqlDefinedProperties: list[Any] = Field(default_factory=list)
    allowProperties: list[Any] = Field(default_factory=list)
    hashPropertiesConfiguration: dict[str, Any] | None = None

    def body(self, source_id: str, destination_type: str | None) -> dict[str, Any]:
        """The Public API body for the source's id and the destination's type."""
        found = self.model_dump(by_alias=True, exclude={"source", "destination"})
        found = {k: v for k, v in found.items() if v is not None}
        found["sourceId"] = source_id
        if destination_type is not None:
            found["destinationMetadataId"] = destination_type
        return found

    @model_validator(mode="after")
    def _checked(self) -> TransformationConfig:
        try:
            from_api(self.body("source", self.destination))
        except InvalidError as exc:
            raise ValueError(exc.message) from None
        return self


# --- the Privacy Portal ------------------------------------------------------------------------


class PrivacyControlConfig(_Section):
    blockRed: StrictBool = False
    blockYellow: StrictBool = False


class PrivacyConfig(_Section):
    """The Privacy Portal (§9): custom matchers, the Inventory (path → RED|YELLOW|GREEN),
    controls by source name and the SLACK / SOURCE alerts, in the REST API's shapes. Each key
    left out is left as it is; a key given is the complete set."""

    matchers: list[dict[str, Any]] | None = None
    inventory: dict[StrictStr, StrictStr] | None = None
    controls: dict[StrictStr, PrivacyControlConfig] | None = None
    alerts: dict[StrictStr, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _valid(self) -> PrivacyConfig:
        problems: list[str] = []
        names: dict[str, int] = {}
        for i, item in enumerate(self.matchers or []):
            try:
                matcher = check_matcher(item)
            except InvalidError as exc:
                where = f"matchers[{i}].{exc.field}" if exc.field else f"matchers[{i}]"
                problems.append(f"{where}: {exc.message}")
                continue
            if words(matcher.name) in names:
                problems.append(f"matchers[{i}]: {matcher.name!r} is listed twice")
            names.setdefault(words(matcher.name), i)
        if len(self.matchers or []) > MAX_CUSTOM:
            problems.append(f"matchers: at most {MAX_CUSTOM} custom matchers")
        for path, chosen in (self.inventory or {}).items():
            for check, value in ((check_path, path), (check_classification, chosen)):
                try:
                    check(value)
                except InvalidError as exc:
                    problems.append(f"inventory.{path}: {exc.message}")
        for channel, body in (self.alerts or {}).items():
            try:
                check_alert(channel.lower(), body)
            except InvalidError as exc:
                where = f"alerts.{channel}.{exc.field}" if exc.field else f"alerts.{channel}"
                problems.append(f"{where}: {exc.message}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --- Unify spaces ------------------------------------------------------------------------------


class AccessTokenConfig(_Section):
    """A Profile API access token. ``token`` is given (``${ENV}`` expands), ``[redacted]`` (as
    ``export`` writes it: the stored token stays), or left out: a token of that name stays as
    it is, and a new one is generated and shown once by ``apply``."""

    name: StrictStr
    token: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = str(_from_environment(value))
        return value if value == REDACTED else str(_checked(check_access_token, value))


class ProfilesSyncConfig(_Section):
    """Profiles Sync into a warehouse of the workspace (by name); ``schema`` defaults to the
    space's slug."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    warehouse: StrictStr
    schema_name: StrictStr | None = Field(default=None, alias="schema")

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(check_slug, value))


class BlockedValueConfig(_Section):
    """A value never promoted: an exact match, or (``regex: true``) a pattern searched for."""

    value: StrictStr
    regex: StrictBool = False


class IdentifierConfig(_Section):
    """One identifier type of a space (headwater.unify.settings.IdentifierSetting); what is left
    out takes Segment's preset: limit 1 for ``user_id`` and 5 for the others, period ``ever``,
    no priority (ranked after the ranked types, alphabetically), nothing blocked, the type's
    own collection (``users``; ``accounts`` for ``group_id``). ``key``: a custom identifier's
    trait or property key (its type when left out). Checked with the space's other identifiers
    (``space_identities``), so every refusal names its field the same way."""

    type: StrictStr
    limit: StrictInt | None = None
    period: Literal["ever", "weekly", "monthly", "annually"] | None = None
    priority: StrictInt | None = None
    blocked: list[BlockedValueConfig] = Field(default_factory=list)
    key: StrictStr | None = None
    collection: Literal["users", "accounts"] | None = None


class IdentityConfig(_Section):
    """A space's identity settings: ``identifiers``, the complete list (left out: Segment's 11
    defaults), or ``import_from``, another space of the file whose settings to copy (§2.10)."""

    identifiers: list[IdentifierConfig] | None = None
    import_from: StrictStr | None = None

    @model_validator(mode="after")
    def _one(self) -> IdentityConfig:
        if self.identifiers is not None and self.import_from is not None:
            raise ValueError("give identifiers or import_from, not both")
        return self


class SubscriptionGroupConfig(_Section):
    """An email subscription group of a space (headwater.unify.subscription_groups)."""

    name: StrictStr
    description: StrictStr = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_group_name, value))

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return str(_checked(check_description, value))


class ConsentCategoryConfig(_Section):
    """A consent category (headwater.privacy.consent): ``destinations`` are destination types
    (or catalog names), each covering every instance of its type."""

    id: StrictStr
    name: StrictStr
    destinations: list[StrictStr] = Field(default_factory=list)
    enabled: StrictBool = True

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return str(_checked(check_category_id, value))

    @field_validator("name")
    @classmethod
    def _category_name(cls, value: str) -> str:
        return str(_checked(check_category_name, value))

    @field_validator("destinations")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        try:
            return sorted({type_named(v) for v in value})
        except UnknownDestinationType as exc:
            raise ValueError(exc.message) from exc


class SpaceConfig(_Section):
    """A Unify space: the sources connected to it (by name; the list is the complete set), its
    Profile API access tokens (left out: the tokens stay as they are; a list is the complete
    set), Profiles Sync (left out: off), its identity settings (left out: Segment's
    defaults) and its email subscription groups (left out: the groups stay as they are; a list
    is the complete set, matched by name regardless of case)."""

    name: StrictStr
    sources: list[StrictStr] = Field(default_factory=list)
    access_tokens: list[AccessTokenConfig] | None = None
    profiles_sync: ProfilesSyncConfig | None = None
    identity: IdentityConfig | None = None
    subscription_groups: list[SubscriptionGroupConfig] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @model_validator(mode="after")
    def _unique(self) -> SpaceConfig:
        problems = []
        for i, source in enumerate(self.sources):
            if source in self.sources[:i]:
                problems.append(f"sources[{i}]: {source!r} is listed twice")
        names = [token.name for token in self.access_tokens or []]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f"access_tokens[{i}]: the name {name!r} is listed twice")
        groups = self.subscription_groups or []
        keys = [group_key(group.name) for group in groups]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                problems.append(
                    f"subscription_groups[{i}]: the name {groups[i].name!r} is listed twice "
                    "(names are compared regardless of case)"
                )
        if len(keys) > MAX_GROUPS:
            problems.append(f"subscription_groups: a space has at most {MAX_GROUPS} groups")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --- Engage ------------------------------------------------------------------------------------


class EngageDestinationConfig(_Section):
    """A destination (on the space's Engage source) a computation is sent to, and how."""

    name: StrictStr
    send_identify: StrictBool | None = None
    send_track: StrictBool | None = None
    entered_event: StrictStr | None = None
    exited_event: StrictStr | None = None
    trait_event: StrictStr | None = None
    id_sync: list[dict[str, Any]] | None = None  # [{identifier, field, strategy}] (§14.6)
    trait_enrichment: list[dict[str, Any]] | None = None  # [{trait, field}]
    audience_settings: dict[str, Any] | None = None  # a list destination's (its audienceFields)

    def written(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ComputationConfig(_Section):
    """An audience or a computed trait: matched by its space and key (the snake_cased name,
    or ``key`` when a rename keeps an existing one); ``definition`` is Segment Query Language
    or the builder's shape."""

    space: StrictStr
    name: StrictStr
    key: StrictStr | None = None
    definition: StrictStr | dict[str, Any]
    level: Literal["users", "accounts"] = "users"
    include_anonymous: StrictBool = False
    include_historical: StrictBool = True
    description: StrictStr = ""
    destinations: list[EngageDestinationConfig] = Field(default_factory=list)


# --- Engage: SQL traits ------------------------------------------------------------------------


class ScheduleConfig(_Section):
    """How often a SQL trait runs: every ``every_hours`` hours (1 to 168; Segment's default,
    twice a day, is 12)."""

    every_hours: StrictInt = Field(default=DEFAULT_EVERY_HOURS, ge=1, le=MAX_EVERY_HOURS)


class SqlTraitConfig(_Section):
    """A SQL trait (headwater.engage.sql_traits) of a space, by name: a query on a warehouse
    (by name), run on a schedule. ``key`` (left out: the name in snake_case), ``warehouse`` and
    ``level`` never change once the trait exists."""

    space: StrictStr
    name: StrictStr
    key: StrictStr | None = None
    warehouse: StrictStr
    query: StrictStr
    level: Literal["users", "accounts"] = "users"
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(check_key, value))

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return str(_checked(check_query, value))

    @model_validator(mode="after")
    def _name_makes_a_key(self) -> SqlTraitConfig:
        if self.key is None:
            _checked(check_key, _checked(key_of, self.name))
        return self

    @property
    def trait_key(self) -> str:
        return self.key if self.key is not None else key_of(self.name)


class FunctionConfig(_Section):
    """A function: its code inline (``code:``) or in a file (``file:``, relative to the YAML
    file), and the settings its instances give it. ``apply`` saves changed code as a new
    version and deploys it."""

    name: StrictStr
    kind: Literal["source", "destination", "insert"]
    language: Literal["javascript", "python"] = "javascript"
    code: StrictStr | None = None
    file: StrictStr | None = None
    description: StrictStr = ""
    settings: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return [s.shown() for s in check_declarations(value)]
        except InvalidError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return str(_checked(check_function_description, value))

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or "file" not in data:
            return data
        if "code" in data:
            raise ValueError("give code or file, not both")
        name = data["file"]
        if not isinstance(name, str) or not name:
            raise ValueError("file: must be a path")
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        try:
            text = (base / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"file: cannot read {name}: {reason}") from None
        return {**data, "code": text}

    @model_validator(mode="after")
    def _checks(self) -> FunctionConfig:
        try:
            check_function_name(self.name, self.kind)
            if self.code is None:
                raise InvalidError("give the code (`code:`) or a file holding it (`file:`)")
            check_code_text(self.code, self.kind)
        except InvalidError as exc:
            raise ValueError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        return self


class ServerConfig(_Section):
    """Read by ``headwater serve --config``; not part of the workspace, so ``apply`` skips it."""

    host: StrictStr | None = None
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    public_url: StrictStr | None = None
    durability: Literal["normal", "full"] = "normal"
    archive_retention_days: StrictInt = Field(default=90, ge=1)
    dedup_window_hours: StrictInt = Field(default=48, ge=1)
    rate_limit_events_per_second: StrictInt | None = Field(default=None, ge=1)
    profile_api_requests_per_second: StrictInt = Field(default=100, ge=1)
    header_timeout_seconds: StrictInt | StrictFloat = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: StrictInt | StrictFloat = Field(default=60.0, gt=0, le=3600)
    max_connections: StrictInt | None = Field(default=None, ge=1)
    # Outgoing destination requests: URL prefix -> URL prefix (headwater.destinations.redirects)
    request_redirects: dict[StrictStr, StrictStr] | None = None
    actions_processes: StrictInt | None = Field(default=None, ge=1, le=64)
    functions_limit: StrictInt = Field(default=25, ge=0, le=10_000)
    # Hosts a function's fetch may call (headwater.functions.sandbox.fetch)
    functions_fetch_allow: list[StrictStr] | None = None

    @field_validator("functions_fetch_allow")
    @classmethod
    def _fetch_allow(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            if not _HOST_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{pattern!r} is not a host pattern; write e.g. "
                    '"api.example.com", "*.stripe.com" or "*"'
                )
        return value

    @field_validator("request_redirects")
    @classmethod
    def _redirects(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            try:
                Redirects(value)
            except ConfigError as exc:
                raise ValueError("; ".join(exc.problems)) from None
        return value


class ConfigFile(_Section):
    workspace: StrictStr
    # None: the file does not manage sources (the key is absent). A list, even empty, is the
    # complete set: sources missing from it are deleted.
    sources: list[SourceConfig] | None = None
    # Like sources: None leaves destinations alone; a list is the complete set.
    destinations: list[DestinationConfig] | None = None
    # Like sources: None leaves warehouses alone; a list is the complete set.
    warehouses: list[WarehouseConfig] | None = None
    # Like sources: None leaves tracking plans alone; a list is the complete set.
    tracking_plans: list[TrackingPlanConfig] | None = None
    server: ServerConfig | None = None
    # Like destinations: None leaves transformations alone; a list is the complete set.
    transformations: list[TransformationConfig] | None = None
    # Like tracking plans: None leaves spaces alone; a list is the complete set.
    spaces: list[SpaceConfig] | None = None
    # Like spaces: None leaves them alone; a list is the complete set (in every space).
    computed_traits: list[ComputationConfig] | None = None
    audiences: list[ComputationConfig] | None = None
    # Like spaces: None leaves SQL traits alone; a list is the complete set of every space's.
    sql_traits: list[SqlTraitConfig] | None = None
    # Like spaces: None leaves journeys alone; a list is the complete set of every space's.
    journeys: list[JourneyConfig] | None = None
    # The Privacy Portal: None leaves it alone; each key given inside is a complete set.
    privacy: PrivacyConfig | None = None
    # Like spaces: None leaves consent categories alone; a list is the complete set.
    consent_categories: list[ConsentCategoryConfig] | None = None
    # The workspace's data retention (days, or "unlimited"); None leaves it as it is.
    data_retention: StrictInt | Literal["unlimited"] | None = None
    # Like sources: None leaves functions alone; a list is the complete set.
    functions: list[FunctionConfig] | None = None

    @field_validator("workspace")
    @classmethod
    def _workspace(cls, value: str) -> str:
        return str(_checked(check_name, value))

    @field_validator("sources", "destinations", "warehouses", "tracking_plans", mode="before")
    @classmethod
    def _list_not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(
                f"is empty; write `{info.field_name}: []` to have none, or leave the key out "
                f"to leave {info.field_name} as they are"
            )
        return value

    @field_validator(
        "transformations",
        "spaces",
        "computed_traits",
        "audiences",
        "sql_traits",
        "journeys",
        "consent_categories",
        "functions",
        mode="before",
    )
    @classmethod
    def _transformations_not_null(cls, value: Any, info: ValidationInfo) -> Any:
        return cls._list_not_null(value, info)

    @field_validator("data_retention")
    @classmethod
    def _data_retention(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            _checked(parse_retention, value)
        return value

    @model_validator(mode="after")
    def _unique(self) -> ConfigFile:
        problems: list[str] = []
        seen: dict[str, dict[str, int]] = {"name": {}, "slug": {}, "write key": {}}
        for i, source in enumerate(self.sources or []):
            values = {
                "name": [source.name],
                "slug": [source.slug] if source.slug else [],
                "write key": [k.key for k in source.keys or ()],
            }
            for what, items in values.items():
                for item in items:
                    if item in seen[what]:
                        problems.append(
                            f"sources[{i}]: {what} {item!r} is already used by "
                            f"sources[{seen[what][item]}]"
                        )
                    seen[what].setdefault(item, i)
        sections: list[
            tuple[
                str,
                Sequence[
                    DestinationConfig
                    | WarehouseConfig
                    | TrackingPlanConfig
                    | SpaceConfig
                    | FunctionConfig
                ],
            ]
        ] = [
            ("destinations", self.destinations or []),
            ("warehouses", self.warehouses or []),
            ("tracking_plans", self.tracking_plans or []),
            ("spaces", self.spaces or []),
            ("functions", self.functions or []),
        ]
        for section, entries in sections:
            names: dict[str, int] = {}
            for i, entry in enumerate(entries):
                if entry.name in names:
                    problems.append(
                        f"{section}[{i}]: name {entry.name!r} is already used "
                        f"by {section}[{names[entry.name]}]"
                    )
                names.setdefault(entry.name, i)
        problems += self._plan_references()
        problems += self._function_references()
        problems += self._space_references()
        problems += self._sql_trait_problems()
        problems += space_identities(self.spaces or [])[1]
        problems += self._computations()
        problems += journey_problems(
            self.journeys or [], None if self.spaces is None else {s.name for s in self.spaces}
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _function_references(self) -> list[str]:
        """Sources, destinations and insert functions name functions of the right kind (when
        the file lists functions; else ``apply`` checks them against the workspace's)."""
        if self.functions is None:
            return []
        kinds = {f.name: f.kind for f in self.functions}
        problems = []
        uses: list[tuple[str, str | None, str]] = [
            (f"sources[{i}].function", s.function, "source")
            for i, s in enumerate(self.sources or [])
        ]
        for i, d in enumerate(self.destinations or []):
            uses.append((f"destinations[{i}].insert_function", d.insert_function, "insert"))
            uses.append((f"destinations[{i}].type", function_name_of_type(d.type), "destination"))
        for where, name, kind in uses:
            if name is None:
                continue
            if name not in kinds:
                problems.append(f"{where}: no function named {name!r} in functions")
            elif kinds[name] != kind:
                problems.append(
                    f"{where}: function {name!r} is a {kinds[name]} function, not a {kind} function"
                )
        return problems

    def _plan_references(self) -> list[str]:
        """Libraries name library plans of the file (when the file lists plans)."""
        if self.tracking_plans is None:
            return []
        kinds = {plan.name: plan.type for plan in self.tracking_plans}
        problems = []
        for i, plan in enumerate(self.tracking_plans):
            for j, library in enumerate(plan.libraries):
                if library not in kinds:
                    problems.append(
                        f"tracking_plans[{i}].libraries[{j}]: no tracking plan named {library!r}"
                    )
                elif kinds[library] == "LIVE":
                    problems.append(
                        f"tracking_plans[{i}].libraries[{j}]: {library!r} is a LIVE plan, "
                        "not a library (type RULE_LIBRARY or PROPERTY_LIBRARY)"
                    )
        for i, source in enumerate(self.sources or []):
            wanted = source.tracking_plan
            if wanted is not None and wanted in kinds and kinds[wanted] != "LIVE":
                problems.append(
                    f"sources[{i}].tracking_plan: {wanted!r} is a library; connect a LIVE plan"
                )
            elif wanted is not None and wanted not in kinds:
                problems.append(f"sources[{i}].tracking_plan: no tracking plan named {wanted!r}")
        return problems

    def _computations(self) -> list[str]:
        """Definitions parse, keys are unique in their space, spaces exist in the file (when
        it lists them; else the planner checks the stored ones)."""
        problems: list[str] = []
        spaces = None if self.spaces is None else {s.name for s in self.spaces}
        keys: dict[tuple[str, str], str] = {}
        sections: tuple[tuple[str, Literal["trait", "audience"]], ...] = (
            ("computed_traits", "trait"),
            ("audiences", "audience"),
        )
        for section, kind in sections:
            entries: list[ComputationConfig] = getattr(self, section) or []
            for i, entry in enumerate(entries):
                where = f"{section}[{i}]"
                if spaces is not None and entry.space not in spaces:
                    problems.append(f"{where}.space: no space named {entry.space!r}")
                try:
                    key = entry.key or computation_key(entry.name)
                    definition_of(entry.definition, kind=entry.level, purpose=kind)
                except InputError as exc:
                    problems.append(f"{where}.{exc.field or 'definition'}: {exc.message}")
                    continue
                if (entry.space, key) in keys:
                    problems.append(
                        f"{where}: the key {key!r} is already used by {keys[entry.space, key]}"
                    )
                keys.setdefault((entry.space, key), where)
        return problems

    def _sql_trait_problems(self) -> list[str]:
        """Names and keys unique per space (keys among the file's audiences and computed
        traits too), at most 25 a space, and the spaces and warehouses they name in the file
        (when it lists them; else the planner checks the stored ones)."""
        problems: list[str] = []
        spaces = None if self.spaces is None else {s.name for s in self.spaces}
        warehouses = None if self.warehouses is None else {w.name for w in self.warehouses}
        names: dict[tuple[str, str], str] = {}
        keys: dict[tuple[str, str], str] = {}
        for section in ("computed_traits", "audiences"):
            entries: list[ComputationConfig] = getattr(self, section) or []
            for i, entry in enumerate(entries):
                try:
                    keys[(entry.space, entry.key or computation_key(entry.name))] = (
                        f"{section}[{i}]"
                    )
                except InputError:
                    continue  # _computations says why
        counts: dict[str, int] = {}
        for i, trait in enumerate(self.sql_traits or []):
            where = f"sql_traits[{i}]"
            if spaces is not None and trait.space not in spaces:
                problems.append(f"{where}.space: no space named {trait.space!r}")
            if warehouses is not None and trait.warehouse not in warehouses:
                problems.append(f"{where}.warehouse: no warehouse named {trait.warehouse!r}")
            for seen, value, what in (
                (names, trait.name, "name"),
                (keys, trait.trait_key, "key"),
            ):
                first = seen.setdefault((trait.space, value), where)
                if first != where:
                    problems.append(
                        f"{where}: {what} {value!r} is already used in space {trait.space!r} "
                        f"by {first}"
                    )
            counts[trait.space] = counts.get(trait.space, 0) + 1
        for space, count in counts.items():
            if count > MAX_PER_SPACE:
                problems.append(
                    f"sql_traits: space {space!r} has {count} SQL traits; a space may have at "
                    f"most {MAX_PER_SPACE}"
                )
        return problems

    def _space_references(self) -> list[str]:
        """Sources and warehouses the spaces name exist in the file (when it lists them; else
        the planner checks the stored ones)."""
        problems = []
        sources = None if self.sources is None else {s.name for s in self.sources}
        warehouses = None if self.warehouses is None else {w.name for w in self.warehouses}
        for i, space in enumerate(self.spaces or []):
            for j, source in enumerate(space.sources):
                if sources is not None and source not in sources:
                    problems.append(f"spaces[{i}].sources[{j}]: no source named {source!r}")
            sync = space.profiles_sync
            if sync is not None and warehouses is not None and sync.warehouse not in warehouses:
                problems.append(
                    f"spaces[{i}].profiles_sync.warehouse: no warehouse named {sync.warehouse!r}"
                )
        return problems


def space_identities(
    spaces: Sequence[SpaceConfig],
) -> tuple[dict[str, IdentitySettings], list[str]]:
    """Each space's identity settings by name (``import_from`` followed), and the problems
    that stop some (``spaces[0].identity.identifiers[2].priority: …``)."""
    found: dict[str, IdentitySettings] = {}
    problems: list[str] = []
    index = {space.name: i for i, space in enumerate(spaces)}
    for i, space in enumerate(spaces):
        identity = space.identity
        if identity is None or identity.import_from is not None:
            continue
        if identity.identifiers is None:
            found[space.name] = IdentitySettings()
            continue
        try:
            found[space.name] = settings_of([e.model_dump() for e in identity.identifiers])
        except InvalidError as exc:
            problems.append(f"spaces[{i}].identity.{exc.field}: {exc.message}")
    for i, space in enumerate(spaces):
        identity = space.identity
        if identity is None:
            found[space.name] = IdentitySettings()
            continue
        chain = [space.name]
        while identity is not None and identity.import_from is not None:
            name = identity.import_from
            if name not in index:
                problems.append(f"spaces[{i}].identity.import_from: no space named {name!r}")
                break
            if name in chain:
                circle = " → ".join([*chain[chain.index(name) :], name])
                problems.append(
                    f"spaces[{i}].identity.import_from: the spaces import from each other in a "
                    f"circle ({circle}); give one of them identifiers"
                )
                break
            chain.append(name)
            identity = spaces[index[name]].identity
        else:
            if chain[-1] in found:
                found[space.name] = found[chain[-1]]
            elif identity is None:
                found[space.name] = IdentitySettings()
    return found, problems


def parse_config(
    data: object, source: str = "the config", base_dir: Path | None = None
) -> ConfigFile:
    """Validate already-parsed YAML (or JSON) data; `file:` paths are relative to base_dir."""
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping with at least a `workspace:` key"], source)
    try:
        return ConfigFile.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans, so
    ``name: off`` would be ``False`` (the "Norway problem")."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """Parse YAML as ``headwater.yaml`` is read (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def load_config(path: Path | str) -> ConfigFile:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = read_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    except RecursionError:  # PyYAML's parser is recursive
        raise ConfigError(["nests too deeply to read; flatten it"], str(path)) from None
    if data is None:
        raise ConfigError(["the file is empty"], str(path))
    return parse_config(data, str(path), path.parent)


# --- error messages --------------------------------------------------------------------------


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            message = "field required"
        elif kind == "extra_forbidden":
            allowed = ", ".join(_fields_at(loc[:-1]))
            message = f"unknown key {loc[-1]!r}"
            message += f" (expected one of: {allowed})" if allowed else ""
        elif kind == "value_error":
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        else:
            message = error["msg"][0].lower() + error["msg"][1:]
        path = _path(loc)
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed at a path, found by walking the models (for "expected one of")."""
    model: Any = ConfigFile
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
