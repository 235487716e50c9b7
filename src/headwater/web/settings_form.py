"""A destination's settings form, generated from its definition's JSON Schema (the catalog's
``settings``), and the settings read back from what the form posted.

Each type gets its input: text, number, a checkbox for a boolean, a select for an enum, a
textarea of JSON for objects and lists. A secret (``writeOnly``) is a password input that is
never filled in: once saved it shows "set", and leaving it blank keeps the stored value (the
API keeps a secret an update leaves out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

PREFIX = "setting."  # form names of settings, apart from the form's own fields (name, source)


@dataclass
class Field:
    name: str  # the setting's key
    label: str
    kind: str  # text, url, integer, number, checkbox, select, json, secret
    required: bool
    description: str = ""
    choices: list[str] = field(default_factory=list)
    value: str = ""  # never a secret's
    checked: bool = False
    is_set: bool = False  # a secret that has a stored value
    error: str | None = None

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def input_id(self) -> str:
        return "setting-" + "".join(c if c.isalnum() else "-" for c in self.name)


def fields_of(
    schema: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    stored_secrets: frozenset[str] = frozenset(),
) -> list[Field]:
    """The form's fields, filled from ``values`` (the saved settings, or what was posted);
    ``stored_secrets``: the secrets the instance has a value for."""
    values = values or {}
    required = set(schema.get("required", []))
    fields = []
    for name, spec in schema.get("properties", {}).items():
        shape = _shape(spec)
        secret = bool(spec.get("writeOnly"))
        kind = "secret" if secret else _kind(shape)
        found = Field(
            name=name,
            label=str(spec.get("title") or name),
            kind=kind,
            required=name in required,
            description=str(spec.get("description", "")),
            choices=[str(c) for c in shape.get("enum", [])],
            is_set=secret and name in stored_secrets,
        )
        value = values.get(name, spec.get("default"))
        if kind == "checkbox":
            found.checked = value is True
        elif not secret and value is not None:
            found.value = _text(value, kind)
        fields.append(found)
    return fields


def shown_fields(
    schema: Mapping[str, Any],
    saved: Mapping[str, Any] | None,
    form: FormData | None,
    errors: Mapping[str, str] | None = None,
    *,
    stored_secrets: frozenset[str] = frozenset(),
) -> list[Field]:
    """The fields a page shows: the saved settings, or what a refused ``form`` posted (never a
    secret), each with its error by setting name."""
    values = posted_values(schema, form) if form is not None else saved
    fields = fields_of(schema, values, stored_secrets=stored_secrets)
    for found in fields:
        found.error = (errors or {}).get(found.name)
    return fields


def settings_from_form(
    schema: Mapping[str, Any], form: FormData
) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings a form posted, and an error per setting it could not read. A blank field is
    left out: its default applies, or, for a saved secret, the stored value stays."""
    settings: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, spec in schema.get("properties", {}).items():
        shape = _shape(spec)
        kind = "secret" if spec.get("writeOnly") else _kind(shape)
        raw = form.get(PREFIX + name)
        if kind == "checkbox":
            settings[name] = raw is not None
            continue
        text = str(raw or "").strip() if kind != "secret" else str(raw or "")
        if not text.strip():
            continue
        if kind == "secret" and shape.get("type") in ("object", "array"):
            kind = "json"  # a secret map (headers): typed as JSON, never shown back
        try:
            settings[name] = _parse(text, kind, shape)
        except ValueError as exc:
            errors[name] = str(exc)
    return settings, errors


def posted_values(schema: Mapping[str, Any], form: FormData) -> dict[str, Any]:
    """What a refused form showed again: the text as typed (secrets never)."""
    shown: dict[str, Any] = {}
    for name, spec in schema.get("properties", {}).items():
        if spec.get("writeOnly"):
            continue
        raw = form.get(PREFIX + name)
        if _kind(_shape(spec)) == "checkbox":
            shown[name] = raw is not None
        elif raw is not None:
            shown[name] = str(raw)
    return shown


def _shape(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema of a value, without the ``null`` an optional setting adds (``anyOf``)."""
    for option in spec.get("anyOf", []):
        if option.get("type") != "null":
            return {**spec, **option}
    return spec


def _kind(shape: Mapping[str, Any]) -> str:
    if shape.get("enum"):
        return "select"
    kind = shape.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return str(kind)
    if kind in ("object", "array") or kind is None:
        return "json"
    return "url" if shape.get("format") == "uri" else "text"


def _text(value: Any, kind: str) -> str:
    if isinstance(value, str) and kind != "json":
        return value
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


def _parse(text: str, kind: str, shape: Mapping[str, Any]) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("Enter a whole number.") from None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError("Enter a number.") from None
        return int(number) if number.is_integer() else number
    if kind == "json":
        try:
            value = json.loads(text)
        except ValueError:
            expected = "a JSON list" if shape.get("type") == "array" else "JSON"
            raise ValueError(f"Enter {expected}, for example {_example(shape)}.") from None
        return value
    if kind == "select" and text not in [str(c) for c in shape.get("enum", [])]:
        raise ValueError("Choose one of the listed values.")
    return text


def _example(shape: Mapping[str, Any]) -> str:
    return '["a", "b"]' if shape.get("type") == "array" else '{"key": "value"}'
