"""A tracking plan as a spreadsheet: Segment's CSV download and upload (spec §2.5, A-TP-14,
A-TP-15).

One row per rule (the event row: `Property Name` empty) and one row per property below it,
in the editor's columns (§2.2: name, description, status, data type, permitted values).
Nested properties are dotted paths, array items `$` (`products.$.sku`), as the editor names
them. A rule the rows cannot say exactly (`allOf`, `minLength`, a key with a dot, …) is
written as one event row carrying its whole schema in `JSON Schema`, so download → upload
gives back the very same rules. Any other column is a label key (Track and Page only).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headwater.protocols.compiled import PlanError, Rule, compile_plan

MAX_BYTES = 15 * 1024 * 1024  # "smaller than 15 mb"
MAX_ROWS = 100_000  # "fewer than 100,000 rows"
MAX_RULES = 2_000  # "and 2,000 rules"

EVENT_TYPE = "Event Type"
EVENT_NAME = "Event Name"
EVENT_VERSION = "Event Version"
EVENT_DESCRIPTION = "Event Description"
PROPERTY_NAME = "Property Name"
PROPERTY_DESCRIPTION = "Property Description"
STATUS = "Status"
DATA_TYPE = "Data Type"
ALLOWED_VALUES = "Allowed Property Values"
ENUM_VALUES = "Enum Values"
JSON_SCHEMA = "JSON Schema"
COLUMNS = (
    EVENT_TYPE,
    EVENT_NAME,
    EVENT_VERSION,
    EVENT_DESCRIPTION,
    PROPERTY_NAME,
    PROPERTY_DESCRIPTION,
    STATUS,
    DATA_TYPE,
    ALLOWED_VALUES,
    ENUM_VALUES,
    JSON_SCHEMA,
)

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_TYPES = {"Track": "TRACK", "Identify": "IDENTIFY", "Group": "GROUP", "Page": "PAGE"}
_TYPES |= {"Screen": "SCREEN", "Common": "COMMON"}
_TYPE_NAMES = {v: k for k, v in _TYPES.items()}
_DATA_TYPES = ("any", "array", "object", "boolean", "integer", "number", "string", "null")
_DATE_TIME = "Date time"
_LABELLED = frozenset({"TRACK", "PAGE"})
_UNSAFE_IN_FILE_NAMES = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


class PlanCsvError(ValueError):
    """An upload Segment would fail; `line` is the CSV line at fault, when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


def csv_filename(plan_name: str, workspace_slug: str, at: datetime) -> str:
    """`workspaceSlug-trackingPlanName--yyyy-mm-dd--hh-mm-utc.csv` (A-TP-15); spaces are
    kept, characters no file system takes become `-`."""
    moment = at.astimezone(UTC) if at.tzinfo else at
    name = f"{workspace_slug}-{plan_name}--{moment:%Y-%m-%d--%H-%M}-utc"
    return _UNSAFE_IN_FILE_NAMES.sub("-", name) + ".csv"


# ---------------------------------------------------------------------------------- export


def rules_to_csv(rules: Iterable[Rule]) -> bytes:
    """The plan's CSV, UTF-8; every rule round-trips through `rules_from_csv` unchanged."""
    rules = list(rules)
    labels = sorted(
        {key for r in rules if r.type in _LABELLED for key in _labels(r.json_schema)} - set(COLUMNS)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*COLUMNS, *labels])
    for rule in rules:
        for row in _rows(rule, labels):
            writer.writerow([row.get(c, "") for c in (*COLUMNS, *labels)])
    return out.getvalue().encode("utf-8")


def _rows(rule: Rule, labels: list[str]) -> list[dict[str, str]]:
    event = {
        EVENT_TYPE: _TYPE_NAMES[rule.type],
        EVENT_NAME: rule.key,
        EVENT_VERSION: str(rule.version),
    }
    try:
        head, properties = _spread(rule, labels)
        rows = [{**event, **head}] + [{**event, **p} for p in properties]
        # The rows are kept only if reading them back gives exactly this schema.
        if _build(rule.type, rows[0], rows[1:], labels, line=None) == rule.json_schema:
            return rows
    except (_NotSayable, PlanCsvError):
        pass
    # Not something the spreadsheet columns can say exactly: carry the whole schema.
    return [{**event, JSON_SCHEMA: json.dumps(rule.json_schema, separators=(",", ":"))}]


class _NotSayable(Exception):
    pass


def _spread(rule: Rule, labels: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    schema = rule.json_schema
    if not isinstance(schema, Mapping):
        raise _NotSayable
    head: dict[str, str] = {}
    description = schema.get("description")
    if description is not None:
        if not isinstance(description, str) or not description:
            raise _NotSayable
        head[EVENT_DESCRIPTION] = description
    for key, value in _labels(schema).items():
        if key not in labels or not isinstance(value, str) or not value:
            raise _NotSayable
        head[key] = value
    payload = _payload(rule.type, schema)
    rows: list[dict[str, str]] = []
    if payload is not None:
        _property_rows(payload, "", rows)
    return head, rows


def _payload(kind: str, schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if kind == "COMMON":
        return schema
    top = _top(kind)
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and isinstance(properties.get(top), Mapping):
        inner: Mapping[str, Any] = properties[top]
        return inner
    return None


def _property_rows(obj: Mapping[str, Any], prefix: str, rows: list[dict[str, str]]) -> None:
    properties = obj.get("properties")
    if not isinstance(properties, Mapping):
        return
    listed = obj.get("required")
    required: list[Any] = listed if isinstance(listed, list) else []
    for name, sub in properties.items():
        if "." in name or name == "$" or not isinstance(sub, Mapping):
            raise _NotSayable
        path = f"{prefix}{name}"
        rows.append(_property_row(path, sub, name in required))
        _property_rows(sub, f"{path}.", rows)
        if isinstance(sub.get("items"), Mapping):
            rows.append(_property_row(f"{path}.$", sub["items"], False))
            _property_rows(sub["items"], f"{path}.$.", rows)


def _property_row(path: str, schema: Mapping[str, Any], required: bool) -> dict[str, str]:
    row = {PROPERTY_NAME: path, STATUS: "required" if required else "optional"}
    if isinstance(schema.get("description"), str):
        row[PROPERTY_DESCRIPTION] = schema["description"]
    kinds = schema.get("type")
    names = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else ["any"]
    if schema.get("format") == "date-time":
        names = [_DATE_TIME if k == "string" else k for k in names]
    row[DATA_TYPE] = ", ".join(str(k) for k in names)
    if isinstance(schema.get("pattern"), str):
        row[ALLOWED_VALUES] = schema["pattern"]
    enum = schema.get("enum")
    if isinstance(enum, list):
        plain = enum and all(isinstance(v, str) and v and "|" not in v for v in enum)
        if plain and not enum[0].startswith("["):
            row[ENUM_VALUES] = "|".join(enum)
        else:
            row[ENUM_VALUES] = json.dumps(enum, separators=(",", ":"))
    return row


# ---------------------------------------------------------------------------------- import


@dataclass
class _Event:
    kind: str
    key: str
    version: int
    line: int
    head: dict[str, str] | None = None
    properties: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def rules_from_csv(data: bytes) -> list[Rule]:
    """The rules a Tracking Plan CSV describes, or PlanCsvError naming the line at fault."""
    if len(data) >= MAX_BYTES:
        raise PlanCsvError("Tracking Plan CSV files must be smaller than 15 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanCsvError(f"the file is not UTF-8 text ({exc})") from None
    records = _records(text)
    if len(records) >= MAX_ROWS:
        raise PlanCsvError("Tracking Plan CSV files must have fewer than 100,000 rows")
    if len(records) < 2:
        raise PlanCsvError(
            "Tracking Plan CSV files must contain one header row and one or more rows of data"
        )
    header_line, header = records[0]
    columns = [c.strip() for c in header]
    for required_column in (EVENT_TYPE, EVENT_NAME):
        if required_column not in columns:
            raise PlanCsvError(f"the header has no {required_column!r} column", header_line)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise PlanCsvError(f"the header repeats {', '.join(duplicated)}", header_line)
    labels = [c for c in columns if c and c not in COLUMNS]

    events: dict[tuple[str, str, int], _Event] = {}
    for line, record in records[1:]:
        if not any(cell.strip() for cell in record):
            continue  # a blank line, as spreadsheets leave at the end
        if len(record) > len(columns):
            raise PlanCsvError(f"{len(record)} cells but the header has {len(columns)}", line)
        row = {c: v for c, v in zip(columns, record, strict=False) if c}
        ident = _identity(row, line)
        event = events.get(ident)
        if event is None:
            if len(events) + 1 >= MAX_RULES:
                raise PlanCsvError("Tracking Plan CSV files must have fewer than 2,000 rules", line)
            event = events[ident] = _Event(*ident, line=line)
        if row.get(PROPERTY_NAME, "").strip():
            for label in labels:
                if row.get(label, "").strip():
                    raise PlanCsvError(f"label {label!r} belongs on the event row", line)
            event.properties.append((line, row))
        elif event.head is not None:
            first = event.line
            raise PlanCsvError(f"a second row for {_name(ident)} (first on line {first})", line)
        else:
            event.head, event.line = row, line
    if not events:
        raise PlanCsvError(
            "Tracking Plan CSV files must contain one header row and one or more rows of data"
        )

    rules: list[Rule] = []
    lines: dict[tuple[str, str, int], int] = {}
    for ident, event in events.items():
        head = event.head or {}
        schema = _build(event.kind, head, event.properties, labels, line=event.line)
        rules.append(Rule(event.kind, event.key, schema, event.version))
        lines[ident] = event.line
    try:
        compile_plan(rules)
    except PlanError as exc:
        at = lines.get((exc.rule.type, exc.rule.key, exc.rule.version))
        raise PlanCsvError(str(exc), at) from None
    return rules


def _records(text: str) -> list[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on (a quoted cell may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for record in reader:
            records.append((start, record))
            start = reader.line_num + 1
            if len(records) > MAX_ROWS:
                break  # enough to refuse the file
    except csv.Error as exc:
        raise PlanCsvError(f"not valid CSV: {exc}", start) from None
    return records


def _identity(row: Mapping[str, str], line: int) -> tuple[str, str, int]:
    kind_name = row.get(EVENT_TYPE, "").strip()
    kind = next((v for k, v in _TYPES.items() if k.lower() == kind_name.lower()), None)
    if kind is None:
        raise PlanCsvError(f"{EVENT_TYPE} {kind_name!r} is not one of {', '.join(_TYPES)}", line)
    key = row.get(EVENT_NAME, "")
    if not key.strip():
        raise PlanCsvError(f"{EVENT_NAME} is empty", line)
    version_text = row.get(EVENT_VERSION, "").strip() or "1"
    if not version_text.isdigit() or int(version_text) < 1:
        raise PlanCsvError(f"{EVENT_VERSION} {version_text!r} is not a whole number from 1", line)
    return kind, key, int(version_text)


def _name(ident: tuple[str, str, int]) -> str:
    return f"{_TYPE_NAMES[ident[0]]} {ident[1]!r} version {ident[2]}"


def _build(
    kind: str,
    head: Mapping[str, str],
    properties: Iterable[tuple[int, Mapping[str, str]] | Mapping[str, str]],
    labels: list[str],
    line: int | None,
) -> Any:
    numbered = [(p if isinstance(p, tuple) else (None, p)) for p in properties]
    given = head.get(JSON_SCHEMA, "").strip()
    if given:
        if numbered:
            raise PlanCsvError(
                "a rule is either a JSON Schema or property rows, not both "
                f"(property row on line {numbered[0][0]})",
                line,
            )
        try:
            schema = json.loads(given)
        except ValueError as exc:
            raise PlanCsvError(f"{JSON_SCHEMA} is not JSON: {exc}", line) from None
        if isinstance(schema, dict):
            schema = _with_head(kind, schema, head, labels, line)
        return schema
    payload: dict[str, Any] = {"type": "object", "properties": {}}
    nodes: dict[str, dict[str, Any]] = {"": payload}
    for row_line, row in numbered:
        _add_property(nodes, row, row_line)
    if kind == "COMMON":
        schema = {"$schema": DRAFT_07, **payload}
    else:
        # The shape Segment's editor writes (spec §2.3): context, the other payload object
        # open, and `labels` on the event kinds that have them.
        top = _top(kind)
        other = "properties" if top == "traits" else "traits"
        schema = {"$schema": DRAFT_07, "type": "object"}
        if kind in _LABELLED:
            schema["labels"] = {}
        schema["properties"] = {"context": {}, other: {"type": "object"}, top: payload}
        if payload.get("required"):
            schema["required"] = [top]
    return _with_head(kind, schema, head, labels, line)


def _with_head(
    kind: str, schema: dict[str, Any], head: Mapping[str, str], labels: list[str], line: int | None
) -> dict[str, Any]:
    description = head.get(EVENT_DESCRIPTION, "")
    if description:
        schema = {**schema, "description": description}
    given = {label: head[label] for label in labels if head.get(label, "").strip()}
    if given:
        if kind not in _LABELLED:
            raise PlanCsvError("labels are only for Track and Page events", line)
        schema = {**schema, "labels": {**_labels(schema), **given}}
    return schema


def _add_property(
    nodes: dict[str, dict[str, Any]], row: Mapping[str, str], line: int | None
) -> None:
    path = row[PROPERTY_NAME].strip()
    parent_path, _, name = path.rpartition(".")
    parent = nodes.get(parent_path)
    if parent is None:
        raise PlanCsvError(f"{path!r} comes before a row for {parent_path!r}", line)
    if path in nodes:
        raise PlanCsvError(f"a second row for property {path!r}", line)
    schema = _property_schema(row, path, line)
    status = row.get(STATUS, "").strip().lower() or "optional"
    if status not in ("required", "optional"):
        raise PlanCsvError(f"{STATUS} {status!r} is not required or optional", line)
    if name == "$":
        if _types(parent) and "array" not in _types(parent):
            raise PlanCsvError(f"{parent_path!r} is not an array, so it has no items", line)
        if status == "required":
            raise PlanCsvError("array items cannot be required", line)
        parent["items"] = schema
    else:
        if _types(parent) and "object" not in _types(parent):
            raise PlanCsvError(f"{parent_path!r} is not an object, so it has no properties", line)
        parent.setdefault("properties", {})[name] = schema
        if status == "required":
            parent.setdefault("required", []).append(name)
    nodes[path] = schema


def _property_schema(row: Mapping[str, str], path: str, line: int | None) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    description = row.get(PROPERTY_DESCRIPTION, "")
    if description:
        schema["description"] = description
    names = [n.strip() for n in row.get(DATA_TYPE, "").split(",") if n.strip()] or ["any"]
    types: list[str] = []
    for n in names:
        if n.lower() in ("date time", "date-time", "datetime"):
            types.append("string")
            schema["format"] = "date-time"
        elif n.lower() in _DATA_TYPES:
            types.append(n.lower())
        else:
            known = ", ".join((*_DATA_TYPES, _DATE_TIME))
            raise PlanCsvError(f"{path!r}: {DATA_TYPE} {n!r} is not one of {known}", line)
    if "any" in types:
        if len(types) > 1:
            raise PlanCsvError(f"{path!r}: 'any' cannot be combined with other types", line)
    else:
        schema["type"] = types[0] if len(types) == 1 else types
    pattern = row.get(ALLOWED_VALUES, "")
    if pattern:
        schema["pattern"] = pattern
    enum = row.get(ENUM_VALUES, "").strip()
    if enum:
        if enum.startswith("["):
            try:
                values = json.loads(enum)
            except ValueError as exc:
                message = f"{path!r}: {ENUM_VALUES} is not a JSON list: {exc}"
                raise PlanCsvError(message, line) from None
            if not isinstance(values, list):
                raise PlanCsvError(f"{path!r}: {ENUM_VALUES} is not a JSON list", line)
            schema["enum"] = values
        else:
            schema["enum"] = enum.split("|")
    return schema


def _types(schema: Mapping[str, Any]) -> list[str]:
    kinds = schema.get("type")
    return [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []


def _top(kind: str) -> str:
    return "traits" if kind in ("IDENTIFY", "GROUP") else "properties"


def _labels(schema: Any) -> dict[str, Any]:
    labels = schema.get("labels") if isinstance(schema, Mapping) else None
    return dict(labels) if isinstance(labels, Mapping) else {}
