"""Segment's published Actions destinations as catalog entries, from ``catalog.json``.

``catalog.js`` writes the package's metadata once per install, so a process builds the 214
definitions from JSON without starting Node: settings from each definition's
``authentication.fields``, actions with their fields as ``FieldSpec``s (so the mapping kit checks
mappings on save), presets and the names of its hooks. Their actions have no ``perform``: the
actions runtime runs the package's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import msgspec
from pydantic import Field, create_model

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
    )


def _settings_model(
    directory: str, fields: Mapping[str, Any], oauth: bool
) -> type[DestinationSettings]:
    """A settings model checking what actions-core's ``validateSettings`` checks: each field's
    type, choices and whether it is required. Fields are declared by alias: the package's names
    need not be Python identifiers."""
    declared: dict[str, Any] = {}
    for position, (name, spec) in enumerate(fields.items()):
        annotation = _setting_annotation(spec)
        required = spec.get("required") is True  # an object: required only on a condition
        title = str(spec.get("label") or name)
        description = str(spec.get("description") or "")
        if "default" in spec and spec["default"] is not None:
            default: Any = spec["default"]
        elif required:
            default = ...
        else:
            annotation = annotation | None
            default = None
        declared[f"field_{position}"] = (
            annotation,
            Field(default, alias=name, title=title, description=description),
        )
    if oauth and OAUTH not in fields:
        declared["field_oauth"] = (OAuthTokens | None, Field(None, alias=OAUTH))
    model_name = "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", directory))
    return create_model(f"{model_name}Settings", __base__=DestinationSettings, **declared)


def _setting_annotation(spec: Mapping[str, Any]) -> Any:
    kind = str(spec.get("type"))
    values = _choice_values(spec.get("choices"))
    annotation: Any
    if values:
        annotation = Literal[tuple(values)]
    elif kind in _SETTING_TYPES:
        annotation = _SETTING_TYPES[kind]
    else:
        raise CatalogError(f"setting type {kind!r} is not one Headwater knows")
    return list[annotation] if spec.get("multiple") else annotation


def _choice_values(choices: Any) -> list[Any]:
    if not isinstance(choices, list):
        return []
    return [c.get("value") if isinstance(c, dict) else c for c in choices]


def _action(action: Mapping[str, Any]) -> ActionDefinition:
    fields = {name: field_spec(spec) for name, spec in (action.get("fields") or {}).items()}
    secret = frozenset(
        name
        for name, spec in (action.get("fields") or {}).items()
        if spec.get("type") == "password"
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
