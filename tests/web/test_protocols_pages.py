"""The Protocols pages (SQLite and PostgreSQL) through the web app and the REST API in process:
tracking plans (creating one, adding, editing and deleting rules with the API's errors shown by
the JSON Schema, connecting sources, CSV download and upload), violations per source and event
with samples, transformations (create, edit, enable), and 403 for roles without the area."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.violations import router as violations_router
from headwater.protocols.schema_messages import Violation
from headwater.protocols.violations import ViolationTallies
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.clock import Clock
from tests.web.conftest import TOKEN, api_token, csrf_of

ORDER_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}},
            "required": ["order_id"],
        }
    },
    "required": ["properties"],
}


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    store.create_source("web")
    store.create_source("ios")
    return create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[violations_router], clock=clock
    )


def create_plan(web: TestClient, name: str = "Ecommerce") -> str:
    csrf = csrf_of(web.get("/protocols").text)
    answer = web.post("/protocols/tracking-plans", data={"csrf": csrf, "name": name})
    assert answer.status_code == 303, answer.text
    location: str = answer.headers["location"]
    return location.removeprefix("/protocols/tracking-plans/")


def add_rule(
    web: TestClient, plan: str, key: str, schema: object, kind: str = "TRACK"
) -> httpx.Response:
    csrf = csrf_of(web.get(f"/protocols/tracking-plans/{plan}").text)
    text = schema if isinstance(schema, str) else json.dumps(schema)
    data = {"csrf": csrf, "slot": "new", "type": kind, "key": key, "version": "1"}
    answer: httpx.Response = web.post(
        f"/protocols/tracking-plans/{plan}/rules", data={**data, "jsonSchema": text}
    )
    return answer


def source_id(engine: Engine, name: str) -> str:
    found = WorkspaceStore(engine).get_source(name)
    assert found is not None
    return found.id


# --- tracking plans ---------------------------------------------------------------------------


def test_creating_a_plan_and_adding_a_rule(web: TestClient) -> None:
    empty = web.get("/protocols")
    assert empty.status_code == 200 and "No tracking plans yet." in empty.text
    plan = create_plan(web)
    page = web.get(f"/protocols/tracking-plans/{plan}")
    assert page.status_code == 200 and "<h1>Ecommerce</h1>" in page.text
    assert "No rules yet" in page.text
    added = add_rule(web, plan, "Order Completed", ORDER_SCHEMA)
    assert added.status_code == 303, added.text
    page = web.get(f"/protocols/tracking-plans/{plan}")
    row = re.search(r'<tr id="rule-0">(.*?)</tr>', page.text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells[:4] == ["Order Completed", "TRACK", "1", "2"]  # two properties
    assert "&#34;order_id&#34;" in page.text  # the schema in its textarea
    listing = web.get("/protocols").text
    assert f'<a href="/protocols/tracking-plans/{plan}">Ecommerce</a>' in listing


def test_a_refused_plan_name_shows_by_the_field(web: TestClient) -> None:
    csrf = csrf_of(web.get("/protocols").text)
    empty = web.post("/protocols/tracking-plans", data={"csrf": csrf, "name": ""})
    assert empty.status_code == 400 and 'id="name-error"' in empty.text
    long = web.post("/protocols/tracking-plans", data={"csrf": csrf, "name": "x" * 5000})
    assert 400 <= long.status_code < 500 and 'id="name-error"' in long.text
    forged = web.post("/protocols/tracking-plans", data={"csrf": "forged", "name": "x"})
    assert forged.status_code == 403


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "object", "properties": {"p": {"type": "strin"}}}, "strin"),
        ({"type": "string", "pattern": "(?!x)"}, "RE2"),
    ],
)
def test_a_rule_that_does_not_compile_shows_the_error_by_its_schema(
    web: TestClient, schema: object, message: str
) -> None:
    plan = create_plan(web)
    answer = add_rule(web, plan, "Signed Up", schema)
    assert 400 <= answer.status_code < 500, answer.text
    text: str = answer.text
    error = re.search(r'<p id="rule-new-error" class="error" role="alert">([^<]+)</p>', text)
    assert error is not None and message.lower() in error.group(1).lower(), error
    assert re.search(r'<textarea id="rule-schema"[^>]*aria-invalid="true"', text)
    assert "Signed Up" in text  # what was typed stays
    assert "No rules yet" in text


def test_editing_and_deleting_a_rule(web: TestClient) -> None:
    plan = create_plan(web)
    add_rule(web, plan, "Order Completed", ORDER_SCHEMA)
    page = web.get(f"/protocols/tracking-plans/{plan}").text
    csrf = csrf_of(page)
    ident = {"csrf": csrf, "slot": "0", "type": "TRACK", "key": "Order Completed", "version": "1"}
    bad = web.post(
        f"/protocols/tracking-plans/{plan}/rules",
        data={**ident, "jsonSchema": '{"type": "object", "required": "x"}'},
    )
    assert 400 <= bad.status_code < 500
    assert re.search(r"<details open>", bad.text)  # the rule's editor stays open
    assert re.search(r'<textarea id="schema-0"[^>]*aria-invalid="true"', bad.text)
    assert 'id="rule-0-error"' in bad.text

    changed = {"type": "object", "properties": {"properties": {"type": "object"}}}
    ok = web.post(
        f"/protocols/tracking-plans/{plan}/rules",
        data={**ident, "jsonSchema": json.dumps(changed)},
    )
    assert ok.status_code == 303
    page = web.get(f"/protocols/tracking-plans/{plan}").text
    assert "&#34;order_id&#34;" not in page
    removed = web.post(
        f"/protocols/tracking-plans/{plan}/rules/delete",
        data={"csrf": csrf, "type": "TRACK", "key": "Order Completed", "version": "1"},
    )
    assert removed.status_code == 303
    assert "No rules yet" in web.get(f"/protocols/tracking-plans/{plan}").text


def test_connecting_and_disconnecting_sources(web: TestClient, engine: Engine) -> None:
    plan = create_plan(web)
    other = create_plan(web, "Other")
    web_id = source_id(engine, "web")
    page = web.get(f"/protocols/tracking-plans/{plan}").text
    assert f'<option value="{web_id}">web</option>' in page
    csrf = csrf_of(page)
    answer = web.post(
        f"/protocols/tracking-plans/{plan}/sources", data={"csrf": csrf, "source": web_id}
    )
    assert answer.status_code == 303
    page = web.get(f"/protocols/tracking-plans/{plan}").text
    assert 'aria-label="Disconnect web"' in page
    assert f'<option value="{web_id}">' not in page
    # A source has at most one plan: the API's refusal shows on the other plan's page.
    taken = web.post(
        f"/protocols/tracking-plans/{other}/sources", data={"csrf": csrf, "source": web_id}
    )
    assert taken.status_code == 409 and 'id="rule-sources-error"' in taken.text
    gone = web.post(
        f"/protocols/tracking-plans/{plan}/sources/remove", data={"csrf": csrf, "source": web_id}
    )
    assert gone.status_code == 303
    assert 'aria-label="Disconnect web"' not in web.get(f"/protocols/tracking-plans/{plan}").text


def test_csv_download_and_upload(web: TestClient) -> None:
    plan = create_plan(web)
    add_rule(web, plan, "Order Completed", ORDER_SCHEMA)
    download = web.get(f"/protocols/tracking-plans/{plan}/csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    assert "acme-Ecommerce--" in download.headers["content-disposition"]
    assert download.text.startswith("Event Type,Event Name")
    assert "Order Completed" in download.text and "order_id" in download.text

    copy = create_plan(web, "Copy")
    csrf = csrf_of(web.get(f"/protocols/tracking-plans/{copy}").text)
    upload = web.post(
        f"/protocols/tracking-plans/{copy}/csv",
        data={"csrf": csrf},
        files={"file": ("plan.csv", download.content, "text/csv")},
    )
    assert upload.status_code == 303, upload.text
    after = web.get(upload.headers["location"]).text
    assert "The CSV was uploaded: the plan has 1 rules." in after
    assert '<tr id="rule-0">' in after and "Order Completed" in after

    broken = b"Event Type,Event Name\nTrack,Fine\nNope,Bad\n"
    refused = web.post(
        f"/protocols/tracking-plans/{copy}/csv",
        data={"csrf": csrf},
        files={"file": ("plan.csv", broken, "text/csv")},
    )
    assert refused.status_code == 422, refused.text
    error = re.search(
        r'<p id="rule-csv-error" class="error" role="alert">([^<]+)</p>', refused.text
    )
    assert error is not None and "line 3" in error.group(1)
    assert "Order Completed" in refused.text  # nothing changed
    nothing = web.post(
        f"/protocols/tracking-plans/{copy}/csv", data={"csrf": csrf}, files={"file": ("e", b"")}
    )
    assert nothing.status_code == 400 and "Choose a CSV file" in nothing.text
    forged = web.post(
        f"/protocols/tracking-plans/{copy}/csv",
        data={"csrf": "forged"},
        files={"file": ("plan.csv", download.content, "text/csv")},
    )
    assert forged.status_code == 403


def test_deleting_a_plan_needs_a_confirmation(web: TestClient) -> None:
    plan = create_plan(web)
    csrf = csrf_of(web.get(f"/protocols/tracking-plans/{plan}").text)
    unconfirmed = web.post(f"/protocols/tracking-plans/{plan}/delete", data={"csrf": csrf})
    assert unconfirmed.status_code == 400 and 'id="rule-delete-error"' in unconfirmed.text
    deleted = web.post(
        f"/protocols/tracking-plans/{plan}/delete", data={"csrf": csrf, "confirm": "on"}
    )
    assert deleted.status_code == 303 and deleted.headers["location"] == "/protocols?deleted=1"
    listing = web.get(deleted.headers["location"]).text
    assert "The tracking plan was deleted." in listing and "Ecommerce" not in listing
    assert web.get(f"/protocols/tracking-plans/{plan}").status_code == 404


@pytest.mark.parametrize("ref", ["nope", "%2E%2E", "x" * 3000, "%00"])
def test_unknown_transformations_are_4xx_pages(web: TestClient, ref: str) -> None:
    csrf = csrf_of(web.get("/protocols/transformations").text)
    assert web.get(f"/protocols/transformations/{ref}").status_code in (400, 404)
    for action in ("", "/enabled", "/delete"):
        data = {"csrf": csrf, "name": "x", "enabled": "true"}
        answer = web.post(f"/protocols/transformations/{ref}{action}", data=data)
        assert answer.status_code in (400, 404), (action, answer.text)


@pytest.mark.parametrize("ref", ["nope", "%2E%2E", "x" * 3000, "%00"])
def test_unknown_plans_are_4xx_pages(web: TestClient, ref: str) -> None:
    csrf = csrf_of(web.get("/protocols").text)
    for path in (f"/protocols/tracking-plans/{ref}", f"/protocols/tracking-plans/{ref}/csv"):
        assert web.get(path).status_code in (400, 404), path
    for action in ("rules", "rules/delete", "sources", "sources/remove", "delete"):
        data = {"csrf": csrf, "type": "TRACK", "key": "a", "jsonSchema": "{}", "source": "web"}
        data["confirm"] = "on"
        answer = web.post(f"/protocols/tracking-plans/{ref}/{action}", data=data)
        assert answer.status_code in (400, 404), (action, answer.text)


# --- violations -------------------------------------------------------------------------------


def test_violations_by_source_and_event_with_samples(
    web: TestClient, engine: Engine, clock: Clock
) -> None:
    web_id = source_id(engine, "web")
    tallies = ViolationTallies()
    now_ms = int(clock() * 1000)
    sample = {"type": "track", "event": "Order Completed", "properties": {"note": "<b>x</b>"}}
    for _ in range(3):
        tallies.add(
            web_id,
            "tp_1",
            "track",
            "Order Completed",
            [Violation("Required", "properties.order_id", "properties.order_id is required")],
            now_ms,
            sample,
        )
    tallies.add(
        web_id,
        "tp_1",
        "track",
        "Signed Up",
        [
            Violation(
                "Invalid Type", "properties.age", "Invalid type. Expected: integer, given: string"
            )
        ],
        now_ms,
        {"type": "track", "event": "Signed Up"},
    )
    with write_transaction(engine) as conn:
        tallies.write_in(conn)

    page = web.get("/protocols/violations")
    assert page.status_code == 200
    text = page.text
    assert '<h2 id="src-1">' in text and "ios" in text and "No violations in the past 24h" in text
    assert text.index("Order Completed") < text.index("Signed Up")  # most violations first
    assert "Required: properties.order_id is required" in text
    assert '<td class="num">3</td>' in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text  # samples escaped
    one = web.get("/protocols/violations", params={"source": web_id, "window": "1h"}).text
    assert "Order Completed" in one and "ios" not in re.sub(
        r"<select.*?</select>", "", one, flags=re.S
    )
    bad = web.get("/protocols/violations", params={"window": "30d"})
    assert bad.status_code == 400 and "Choose a window" in bad.text
    unknown = web.get("/protocols/violations", params={"source": "nope"})
    assert unknown.status_code == 404 and "There is no source" in unknown.text


# --- transformations --------------------------------------------------------------------------


def test_creating_editing_and_enabling_a_transformation(web: TestClient, engine: Engine) -> None:
    web_id = source_id(engine, "web")
    page = web.get("/protocols/transformations")
    assert page.status_code == 200 and "No transformations yet." in page.text
    csrf = csrf_of(page.text)
    form = {
        "csrf": csrf,
        "name": "Fix order event",
        "source": web_id,
        "event_type": "track",
        "event": "order_completed",
        "new_event": "Order Completed",
        "renames": "orderId = order_id\n\ntotal_price = total",
        "enabled": "on",
    }
    created = web.post("/protocols/transformations", data=form)
    assert created.status_code == 303, created.text
    listing = web.get("/protocols/transformations").text
    assert "Fix order event" in listing and "order_completed" in listing
    assert "Rename to “Order Completed”; orderId → order_id; total_price → total" in listing
    found = re.search(r'href="/protocols/transformations/([^"]+)">Fix order event', listing)
    assert found is not None
    ident = found.group(1)

    toggle = web.post(
        f"/protocols/transformations/{ident}/enabled", data={"csrf": csrf, "enabled": "false"}
    )
    assert toggle.status_code == 303
    assert (
        'aria-label="Enable Fix order event">Enable</button>'
        in web.get("/protocols/transformations").text
    )

    edit = web.get(f"/protocols/transformations/{ident}").text
    assert "orderId = order_id" in edit and 'value="Order Completed"' in edit
    saved = web.post(
        f"/protocols/transformations/{ident}",
        data={
            "csrf": csrf,
            "name": "Renamed",
            "new_event": "Order Done",
            "renames": "",
            "enabled": "on",
        },
    )
    assert saved.status_code == 303, saved.text
    listing = web.get("/protocols/transformations").text
    assert "Renamed" in listing and "Rename to “Order Done”" in listing and "orderId" not in listing
    assert 'aria-label="Disable Renamed">Disable</button>' in listing
    assert (
        web.post(f"/protocols/transformations/{ident}/delete", data={"csrf": "x"}).status_code
        == 403
    )
    deleted = web.post(f"/protocols/transformations/{ident}/delete", data={"csrf": csrf})
    assert deleted.status_code == 303
    assert "No transformations yet." in web.get("/protocols/transformations").text


def test_refused_transformations_show_errors_by_their_fields(
    web: TestClient, engine: Engine
) -> None:
    web_id = source_id(engine, "web")
    csrf = csrf_of(web.get("/protocols/transformations").text)
    base = {"csrf": csrf, "name": "t", "source": web_id, "event_type": "track", "event": "E"}
    nameless = web.post("/protocols/transformations", data={**base, "name": ""})
    assert nameless.status_code == 400 and 'id="name-error"' in nameless.text
    eventless = web.post("/protocols/transformations", data={**base, "event": ""})
    assert eventless.status_code == 400 and 'id="event-error"' in eventless.text
    bad_line = web.post("/protocols/transformations", data={**base, "renames": "just-a-name"})
    assert bad_line.status_code == 400 and "Line 1" in bad_line.text
    assert 'id="renames-error"' in bad_line.text and "just-a-name" in bad_line.text
    unknown = web.post(
        "/protocols/transformations", data={**base, "source": "nope", "new_event": "F"}
    )
    assert 400 <= unknown.status_code < 500, unknown.text
    assert 'class="error" role="alert"' in unknown.text
    assert web.post("/protocols/transformations", data={**base, "csrf": "x"}).status_code == 403
    assert web.get("/protocols/transformations/nope").status_code == 404


# --- roles ------------------------------------------------------------------------------------


def test_roles_see_only_their_protocols_sections(
    web: TestClient, app: WebApp, api: FastAPI
) -> None:
    plan = create_plan(web)
    cases = {
        "warehouse-destination-read-only": {"/protocols": 403, "/protocols/violations": 403},
        "tracking-plan-read-only": {"/protocols": 200, "/protocols/violations": 403},
        "source-read-only": {"/protocols": 403, "/protocols/transformations": 200},
    }
    for role, expected in cases.items():
        with TestClient(app, follow_redirects=False) as other:
            token = api_token(api, role)
            assert other.post("/login", data={"token": token, "next": "/"}).status_code == 303
            for path, status in expected.items():
                answer = other.get(path)
                assert answer.status_code == status, (role, path)
                if status == 403:
                    assert "Ecommerce" not in answer.text
            if role == "tracking-plan-read-only":
                page = other.get(f"/protocols/tracking-plans/{plan}").text
                assert "Add a rule" not in page and "Upload CSV" not in page
                assert 'href="/protocols/violations"' not in page
                listing = other.get("/protocols").text
                assert "New tracking plan" not in listing
            if role == "source-read-only":
                assert "New transformation" not in other.get("/protocols/transformations").text
