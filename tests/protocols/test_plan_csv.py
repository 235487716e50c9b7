"""Tracking-plan CSV download and upload (spec §2.5, A-TP-14, A-TP-15)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from headwater.protocols.compiled import Rule, compile_plan
from headwater.protocols.enforce import SchemaSettings, enforce
from headwater.protocols.plan_csv import (
    JSON_SCHEMA,
    MAX_BYTES,
    PlanCsvError,
    csv_filename,
    rules_from_csv,
    rules_to_csv,
)
from headwater.protocols.typewriter import rules_from_api

PLAN = Path(__file__).parent / "typewriter" / "plan.json"
D7 = "http://json-schema.org/draft-07/schema#"
NO_DATA = "Tracking Plan CSV files must contain one header row and one or more rows of data"


def _editor_rule(kind: str, key: str, payload: dict[str, object], **top: object) -> Rule:
    """A rule in the shape Segment's editor writes (spec §2.3)."""
    traits = kind in ("IDENTIFY", "GROUP")
    inner, other = ("traits", "properties") if traits else ("properties", "traits")
    schema: dict[str, object] = {"$schema": D7, "type": "object"}
    if kind in ("TRACK", "PAGE"):
        schema["labels"] = top.pop("labels", {})
    schema["properties"] = {"context": {}, other: {"type": "object"}, inner: payload}
    if payload.get("required"):
        schema["required"] = [inner]
    return Rule(kind, key, {**schema, **top})


EDITOR_RULES = [
    _editor_rule(
        "TRACK",
        "Order Completed",
        {
            "type": "object",
            "properties": {
                "order_id": {"description": "The order's id, as in 'o-1'.", "type": "string"},
                "placed_at": {"type": ["string", "null"], "format": "date-time"},
                "season": {"type": "string", "pattern": "fall|winter|spring"},
                "currency": {"type": "string", "enum": ["USD", "EUR"]},
                "rating": {"type": "integer", "enum": [1, 2, 3]},
                "note": {"description": 'multi\nline, with "quotes"'},
                "products": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
                        "required": ["sku"],
                    },
                },
                "shipping": {
                    "type": "object",
                    "properties": {"carrier": {"type": "string"}},
                    "required": ["carrier"],
                },
            },
            "required": ["order_id", "products"],
        },
        labels={"team": "growth", "priority": "high"},
        description="A customer paid.",
    ),
    _editor_rule(
        "IDENTIFY", "identify", {"type": "object", "properties": {"email": {"type": "string"}}}
    ),
    _editor_rule("PAGE", "page", {"type": "object", "properties": {}}, labels={"team": "web"}),
]


def _table(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_editor_shaped_rules_become_rows_and_come_back_identical() -> None:
    data = rules_to_csv(EDITOR_RULES)
    rows = _table(data)
    assert all(not row[JSON_SCHEMA] for row in rows)  # the spreadsheet can say all of it
    order = [r for r in rows if r["Event Name"] == "Order Completed"]
    assert order[0]["Event Description"] == "A customer paid."
    assert (order[0]["team"], order[0]["priority"]) == ("growth", "high")
    by_name = {r["Property Name"]: r for r in order[1:]}
    assert list(by_name) == [
        "order_id", "placed_at", "season", "currency", "rating", "note",
        "products", "products.$", "products.$.sku", "products.$.price",
        "shipping", "shipping.carrier",
    ]  # fmt: skip
    assert by_name["order_id"]["Status"] == "required"
    assert by_name["placed_at"]["Data Type"] == "Date time, null"
    assert by_name["season"]["Allowed Property Values"] == "fall|winter|spring"
    assert by_name["currency"]["Enum Values"] == "USD|EUR"
    assert by_name["rating"]["Enum Values"] == "[1,2,3]"
    assert by_name["note"]["Data Type"] == "any"
    assert rules_from_csv(data) == EDITOR_RULES


def test_any_plan_round_trips_identically() -> None:
    # Segment's Typewriter fixtures: nested arrays, nullable unions, names with quotes,
    # additionalProperties, a common schema; the rows cannot say all of that.
    checkout = Rule("TRACK", "Checkout Started", EDITOR_RULES[0].json_schema, 3)
    rules = [*rules_from_api(json.loads(PLAN.read_text("utf-8"))), checkout]
    data = rules_to_csv(rules)
    assert rules_from_csv(data) == rules
    rows = _table(data)
    assert any(r[JSON_SCHEMA] for r in rows) and any(r["Property Name"] for r in rows)


def test_hand_written_csv_builds_schemas_that_enforce() -> None:
    data = (
        b"Event Type,Event Name,Property Name,Status,Data Type,Allowed Property Values\n"
        b"Track,Signed Up,,,,\n"
        b"Track,Signed Up,plan,required,string,free|pro\n"
        b"Track,Signed Up,seats,optional,integer,\n"
    )
    (rule,) = rules_from_csv(data)
    assert (rule.type, rule.key, rule.version) == ("TRACK", "Signed Up", 1)
    plan = compile_plan([rule])
    settings = SchemaSettings()
    event = {"type": "track", "event": "Signed Up", "properties": {"seats": "two"}}
    verdict = enforce(event, plan, settings, "src")
    fields = sorted(v.field for v in verdict.violations)
    assert fields == ["properties.plan", "properties.seats"]  # missing; not an integer
    odd = {"type": "track", "event": "Signed Up", "properties": {"plan": "team"}}
    (violation,) = enforce(odd, plan, settings, "src").violations
    assert violation.field == "properties.plan"  # outside the allowed values free|pro
    good = {"type": "track", "event": "Signed Up", "properties": {"plan": "pro", "seats": 2}}
    assert enforce(good, plan, settings, "src").violations == ()


def test_upload_limits_and_segments_messages() -> None:
    header = b"Event Type,Event Name\n"
    with pytest.raises(PlanCsvError, match=NO_DATA):
        rules_from_csv(header)
    with pytest.raises(PlanCsvError, match=NO_DATA):
        rules_from_csv(b"")
    with pytest.raises(PlanCsvError, match="smaller than 15 MB"):
        rules_from_csv(header + b"Track,x\n" + b" " * (MAX_BYTES - len(header) - 8))
    with_properties = b"Event Type,Event Name,Property Name\n"
    rows = b"".join(b"Track,e%d,p%d\n" % (n % 10, n) for n in range(99_999))
    with pytest.raises(PlanCsvError, match="fewer than 100,000 rows"):
        rules_from_csv(with_properties + rows)  # 100,000 rows with the header
    last = rows.rindex(b"Track,")
    assert len(rules_from_csv(with_properties + rows[:last])) == 10  # 99,999 rows
    rules = b"".join(b"Track,e%d\n" % n for n in range(2_000))
    with pytest.raises(PlanCsvError, match="fewer than 2,000 rules") as refused:
        rules_from_csv(header + rules)
    assert refused.value.line == 2_001  # the 2,000th rule's row
    assert len(rules_from_csv(header + rules[: rules.index(b"Track,e1999")])) == 1_999


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Event Type,Event Name\nTrack,a\nBogus,b\n", 3, "Event Type 'Bogus' is not one of"),
        ("Event Type,Event Name\nTrack,\n", 2, "Event Name is empty"),
        ("Event Type,Event Name,Event Version\nTrack,a,1.5\n", 2, "not a whole number"),
        ("Event Type,Event Name\nTrack,a\nTrack,a\n", 3, "a second row for Track 'a'"),
        (
            "Event Type,Event Name,Property Name,Data Type\nTrack,a,b.c,string\n",
            2,
            "'b.c' comes before a row for 'b'",
        ),
        (
            "Event Type,Event Name,Property Name,Data Type\nTrack,a,b,text\n",
            2,
            "Data Type 'text' is not one of",
        ),
        (
            "Event Type,Event Name,Property Name,Data Type\nTrack,a,b,string\nTrack,a,b.c,string\n",
            3,
            "'b' is not an object",
        ),
        (
            'Event Type,Event Name,JSON Schema\nTrack,a,"{nope"\n',
            2,
            "JSON Schema is not JSON",
        ),
        (
            "Event Type,Event Name,Property Name,Allowed Property Values\n"
            "Track,a,,\nTrack,a,b,^(?!test).*\n",
            2,
            "TRACK rule 'a' version 1",  # refused like a plan saved through the API
        ),
        ("Event Type,Event Name,team\nIdentify,identify,growth\n", 2, "only for Track and Page"),
        ("Event Type,Event Name\nTrack,a,extra\n", 2, "3 cells but the header has 2"),
        ("Event Name\nTrack\n", 1, "no 'Event Type' column"),
    ],
)
def test_bad_rows_are_named_by_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PlanCsvError) as refused:
        rules_from_csv(text.encode())
    assert refused.value.line == line
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"line {line}: ")


def test_line_numbers_count_multi_line_cells() -> None:
    text = 'Event Type,Event Name,Event Description\nTrack,a,"two\nlines"\nNope,b,\n'
    with pytest.raises(PlanCsvError) as refused:
        rules_from_csv(text.encode())
    assert refused.value.line == 4


def test_download_file_name() -> None:
    at = datetime(2025, 2, 3, 14, 5, 59, tzinfo=UTC)
    assert csv_filename("Web Plan", "acme", at) == "acme-Web Plan--2025-02-03--14-05-utc.csv"
    paris = at.astimezone(timezone(timedelta(hours=1)))
    assert csv_filename("Web Plan", "acme", paris) == "acme-Web Plan--2025-02-03--14-05-utc.csv"
    assert csv_filename("a/b: c", "acme", at) == "acme-a-b- c--2025-02-03--14-05-utc.csv"
