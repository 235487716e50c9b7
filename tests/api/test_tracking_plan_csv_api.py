"""Tracking-plan CSV download and upload through the API (A-TP-14, A-TP-15), SQLite and PostgreSQL."""

from __future__ import annotations

import re
from urllib.parse import unquote

from fastapi.testclient import TestClient

from tests.api.test_sources_api import assert_error
from tests.api.test_tracking_plans_api import PLANS, client, create_plan, rules_of, track_rule

__all__ = ["client"]  # the fixture, shared with the plan routes' tests

RULES = [
    track_rule("Order Completed", {"order_id": {"type": "string"}, "total": {"type": "number"}}),
    track_rule("Signed Up", {"plan": {"type": "string", "enum": ["free", "pro"]}}),
]


def _without_times(rules: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if not k.endswith("At")} for r in rules]


def test_a_downloaded_plan_uploads_into_another_unchanged(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan")
    assert client.put(f"{PLANS}/{plan['id']}/rules", json={"rules": RULES}).status_code == 200
    download = client.get(f"{PLANS}/Web Plan/csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    name = unquote(download.headers["content-disposition"].split("''", 1)[1])
    assert re.fullmatch(r"acme-Web Plan--\d{4}-\d\d-\d\d--\d\d-\d\d-utc\.csv", name), name
    assert download.text.splitlines()[0].startswith("Event Type,Event Name,Event Version")

    copy = create_plan(client, name="Copy")
    uploaded = client.put(f"{PLANS}/{copy['id']}/csv", content=download.content)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["data"] == {"status": "SUCCESS", "rules": 2}
    assert _without_times(rules_of(client, copy["id"])) == _without_times(
        rules_of(client, plan["id"])
    )


def test_a_file_segment_would_fail_changes_nothing(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan")
    client.put(f"{PLANS}/{plan['id']}/rules", json={"rules": RULES})
    before = rules_of(client, plan["id"])
    header = client.get(f"{PLANS}/{plan['id']}/csv").text.splitlines()[0]
    only_header = client.put(f"{PLANS}/{plan['id']}/csv", content=header.encode())
    assert_error(only_header, 422, "validation")
    bad_row = f"{header}\r\nTrack,Broken,1,,x,,,no such type,,,\r\n".encode()
    refused = client.put(f"{PLANS}/{plan['id']}/csv", content=bad_row)
    assert_error(refused, 422, "validation", "line 2")
    assert rules_of(client, plan["id"]) == before


def test_a_plan_with_synced_libraries_takes_no_upload(client: TestClient) -> None:
    library = create_plan(client, name="Shared", type="RULE_LIBRARY")
    client.put(f"{PLANS}/{library['id']}/rules", json={"rules": RULES[:1]})
    plan = create_plan(client, name="Web Plan", libraries=[library["id"]])
    csv = client.get(f"{PLANS}/{library['id']}/csv").content
    assert_error(client.put(f"{PLANS}/{plan['id']}/csv", content=csv), 409, "conflict")
