"""Segment's published Actions destinations as catalog entries, from ``catalog.json``.

``catalog.js`` writes the package's metadata once per install, so a process builds the 214
definitions from JSON without starting Node: settings from each definition's
``authentication.fields``, actions with their fields as ``FieldSpec``s (so the mapping kit checks
mappings on save), presets and the names of its hooks. Their actions have no ``perform``: the
actions runtime runs the package's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

import msgspec
from pydantic import AfterValidator, BaseModel, Field, create_model, model_validator

from headwater.destinations.actions import ActionDefinition, Preset
from headwater.destinations.definition import (
    OAUTH_SETTING,
    DestinationDefinition,
    DestinationSettings,
)
from headwater.destinations.mapping import FieldSpec
from headwater.destinations.mapping.fields import FieldType
from headwater.destinations.runtime.install import CATALOG

TYPE_PREFIX = "actions:"
# The settings key holding an OAuth destination's app and tokens, keyed as Segment's settings
# and actions-core key them (``getOAuth2Data``).
OAUTH = OAUTH_SETTING
OAUTH_SCHEMES = frozenset({"oauth2", "oauth-managed"})
HOOKS = frozenset(
    {"createAudience", "getAudience", "onDelete", "refreshAccessToken", "testAuthentication"}
)

# actions-core's field types -> the mapping kit's (``text`` is a long string, ``password`` a
# string shown masked).
_FIELD_TYPES: dict[str, FieldType] = {
    "string": "string",
    "text": "string",
    "password": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "object": "object",
    "datetime": "datetime",
}
_SETTING_TYPES: dict[str, Any] = {
    "string": str,
    "text": str,
    "password": str,
    "number": float,
    "integer": int,
    "boolean": bool,
    "object": dict[str, Any],
}


class CatalogError(Exception):
    """A ``catalog.json`` that cannot be read, or a definition in it that does not build."""


class OAuthTokens(DestinationSettings):
    """An OAuth destination's credentials (Segment's ``settings.oauth``, keys as actions-core
    reads them)."""

    access_token: str | None = None
    refresh_token: str | None = None
    refresh_token_url: str | None = None
    clientId: str | None = None
    clientSecret: str | None = None


def catalog_path(actions_dir: Path) -> Path:
    return actions_dir / CATALOG


def read_catalog(actions_dir: Path) -> dict[str, Any]:
    """The package's metadata as ``catalog.js`` wrote it."""
    path = catalog_path(actions_dir)
    try:
        document = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("destinations"), list):
        raise CatalogError(f"{path} is not a catalog written by catalog.js")
    return document


def destination_type(directory: str) -> str:
    return f"{TYPE_PREFIX}{directory}"


def is_package_type(destination_type: str) -> bool:
    return destination_type.startswith(TYPE_PREFIX)


def build_all(
    document: Mapping[str, Any],
) -> tuple[dict[str, DestinationDefinition], dict[str, str]]:
    """Every definition that builds, by type, and the error of each one that does not."""
    built: dict[str, DestinationDefinition] = {}
    failed: dict[str, str] = {}
    for entry in document["destinations"]:
        kind = destination_type(str(entry.get("directory")))
        try:
            built[kind] = build(entry)
        except (CatalogError, ValueError, TypeError, KeyError) as exc:
            failed[kind] = f"{type(exc).__name__}: {exc}"
    return built, failed


def build(entry: Mapping[str, Any]) -> DestinationDefinition:
    """One package definition as a catalog entry."""
    directory = str(entry["directory"])
    authentication = entry.get("authentication") or {}
    setting_fields: Mapping[str, Any] = authentication.get("fields") or {}
    oauth = authentication.get("scheme") in OAUTH_SCHEMES
    secrets = {name for name, spec in setting_fields.items() if spec.get("type") == "password"}
    if oauth:
        secrets.add(OAUTH)
    actions = {a["key"]: _action(a) for a in entry.get("actions") or ()}
    return DestinationDefinition(
        type=destination_type(directory),
        name=str(entry["name"]),
        settings=_settings_model(directory, setting_fields, oauth),
        secrets=frozenset(secrets),
        description=str(entry.get("description") or ""),
        actions=actions,
        package_directory=directory,
        # A preset of an action the definition lacks is its browser counterpart's (a plugin
        # such as "Browser Session Tracking"): Headwater runs no browser destinations.
        presets=tuple(
            _preset(p) for p in entry.get("presets") or () if p.get("partnerAction") in actions
        ),
        hooks=frozenset(entry.get("hooks") or ()) & HOOKS,
        metadata_id=str(entry["id"]) if entry.get("id") else None,
        slug=str(entry["slug"]) if entry.get("slug") else None,
    )


def _settings_model(
    directory: str, fields: Mapping[str, Any], oauth: bool
) -> type[DestinationSettings]:
    """A settings model checking what actions-core's ``validateSettings`` checks: each field's
    type, choices and whether it is required. Fields are declared by alias: the package's names
    need not be Python identifiers."""
    declared: dict[str, Any] = {}
    conditional: dict[str, Mapping[str, Any]] = {}
    for position, (name, spec) in enumerate(fields.items()):
        annotation = _setting_annotation(spec)
        required = spec.get("required") is True
        if isinstance(spec.get("required"), Mapping):  # required when other settings say so
            conditional[name] = spec["required"]
        title = str(spec.get("label") or name)
        description = str(spec.get("description") or "")
        choices = _choice_values(spec.get("choices"))
        if spec.get("default") is not None and (not choices or spec["default"] in choices):
            # (a default outside the choices, as pendo-audiences' region has, is no default:
            # actions-core would refuse it)
            default: Any = spec["default"]
        elif required:
            default = ...
        else:
            annotation = annotation | None
            default = None
        declared[f"field_{position}"] = (
            annotation,
            Field(
                default,
                alias=name,
                title=title,
                description=description,
                json_schema_extra={"format": spec["format"]} if spec.get("format") else None,
            ),
        )
    if oauth and OAUTH not in fields:
        declared["field_oauth"] = (OAuthTokens | None, Field(None, alias=OAUTH))
    model_name = "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", directory))
    validators: dict[str, Any] = {
        "conditions": model_validator(mode="after")(_required_when(conditional))
    }
    return create_model(
        f"{model_name}Settings",
        __base__=DestinationSettings,
        __validators__=validators if conditional else None,
        **declared,
    )


def _required_when(
    conditional: Mapping[str, Mapping[str, Any]],
) -> Callable[[BaseModel], BaseModel]:
    """actions-core's conditional ``required``: {match: all|any, conditions: [{fieldKey,
    operator: is|is_not, value}]}."""

    def check(model: BaseModel) -> BaseModel:
        values = model.model_dump(by_alias=True)
        for name, rule in conditional.items():
            if values.get(name) not in (None, ""):
                continue
            met = [
                (values.get(c.get("fieldKey")) == c.get("value")) == (c.get("operator") != "is_not")
                for c in rule.get("conditions") or ()
            ]
            if met and (any(met) if rule.get("match") == "any" else all(met)):
                raise ValueError(f"{name} is required with these settings")
        return model

    return check


def _setting_annotation(spec: Mapping[str, Any]) -> Any:
    kind = str(spec.get("type"))
    values = _choice_values(spec.get("choices"))
    annotation: Any
    if values:
        annotation = Literal[tuple(values)]
    elif kind in _SETTING_TYPES and spec.get("format") == "uri":
        annotation = Annotated[str, AfterValidator(_uri)]
    elif kind in _SETTING_TYPES:
        annotation = _SETTING_TYPES[kind]
    else:
        raise CatalogError(f"setting type {kind!r} is not one Headwater knows")
    return list[annotation] if spec.get("multiple") else annotation


def _uri(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError("should be a URL, such as https://example.com/path")
    return value


def _choice_values(choices: Any) -> list[Any]:
    if not isinstance(choices, list):
        return []
    return [c.get("value") if isinstance(c, dict) else c for c in choices]


def _action(action: Mapping[str, Any]) -> ActionDefinition:
    fields = {name: field_spec(spec) for name, spec in (action.get("fields") or {}).items()}
    secret = frozenset(
        name
        for name, spec in (action.get("fields") or {}).items()
        if spec.get("type") == "password" or _webhook_url(spec)
    )
    batches = bool(action.get("hasPerformBatch"))
    return ActionDefinition(
        name=str(action["key"]),
        title=str(action.get("title") or action["key"]),
        fields=fields,
        perform=None,
        description=str(action.get("description") or ""),
        default_trigger=str(action.get("defaultSubscription") or "").strip(),
        batch_size_field="batch_size" if batches and "batch_size" in fields else None,
        secret_fields=secret,
        batches=batches,
    )


def _webhook_url(spec: Mapping[str, Any]) -> bool:
    """A webhook URL (Slack's, Teams') is a credential: whoever has it can post."""
    return spec.get("format") == "uri" and "webhook" in str(spec.get("label") or "").lower()


def field_spec(spec: Mapping[str, Any]) -> FieldSpec:
    """An action field as the mapping kit checks it; a default that is a mapping directive
    (``{"@path": "$.userId"}``) stays one."""
    kind = str(spec.get("type"))
    if kind not in _FIELD_TYPES:
        raise CatalogError(f"field type {kind!r} is not one Headwater knows")
    values = _choice_values(spec.get("choices"))
    choices = (
        tuple(cast(list[str], values))
        if values and all(isinstance(v, str) for v in values)
        else None
    )
    return FieldSpec(
        _FIELD_TYPES[kind],
        required=spec.get("required") is True,
        multiple=bool(spec.get("multiple")),
        choices=choices,
        description=str(spec.get("description") or ""),
        default=spec.get("default"),
    )


def _preset(preset: Mapping[str, Any]) -> Preset:
    return Preset(
        name=str(preset["name"]),
        action=str(preset.get("partnerAction") or ""),
        trigger=str(preset.get("subscribe") or ""),
        fields=dict(preset.get("mapping") or {}),
        automatic=preset.get("type", "automatic") == "automatic",
    )
