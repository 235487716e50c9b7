"""An Actions destination's mappings pages (SQLite and PostgreSQL) through the web app's routes
and the REST API in process: the list, adding a mapping with the action's defaults, the
trigger builder (and reading a trigger back into it), raw FQL with the parser's error by the
field, field mapping (paths, literals, JSON, secrets kept), enabling, the Event Tester on a
loopback receiver, deleting, CSRF, a destination without actions, and 403 without Sources."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.tester import router as event_tester_router
from headwater.api.tester import use_delivery
from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.mappings import built_trigger, read_trigger
from tests.support.clock import Clock
from tests.support.receiver import Receiver
from tests.web.conftest import TOKEN, csrf_of
from tests.web.test_web_app import api_token


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    workspace = WorkspaceStore(engine, clock=clock)
    workspace.ensure_workspace("acme")
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[event_tester_router], clock=clock
    )
    use_delivery(
        app, DeliveryEngine(engine, DestinationCache(DestinationStore(workspace), workspace))
    )
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        assert rest.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        for body in (
            {"name": "orders", "type": "webhook-actions"},
            {"name": "plain", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}},
        ):
            made = rest.post("/api/v1/destinations", json={"source": "web", **body})
            assert made.status_code == 201, made.text
    return app


def destination_id(web: TestClient, name: str) -> str:
    found = re.search(
        r"/destinations/(dst_[^/\"]+)", web.get(f"/destinations/{name}/mappings").text
    )
    assert found is not None
    return found.group(1)


def add(web: TestClient, name: str = "Orders", url: str = "http://127.0.0.1:9/orders") -> str:
    """A saved mapping of Send: set up with the action's defaults, the URL filled in."""
    page = web.get("/destinations/orders/mappings/new", params={"name": name, "action": "send"})
    assert page.status_code == 200, page.text
    data = mapping_form(page.text, **{"source:url": "literal", "value:url": url})
    answer = web.post("/destinations/orders/mappings", data=data)
    assert answer.status_code == 303, answer.text
    location: str = answer.headers["location"]
    return location.removesuffix("?saved=1")


def mapping_form(page: str, **changes: str) -> dict[str, str]:
    """The mapping page's form as a browser would send it, with ``changes``."""
    form = page.split('<section class="card" aria-labelledby="tester-title">')[0]
    data: dict[str, str] = {"csrf": csrf_of(page)}
    for name, value in re.findall(r'<input [^>]*name="([^"]+)" [^>]*value="([^"]*)"', form):
        data[name] = value.replace("&#34;", '"').replace("&amp;", "&")
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if name and 'type="checkbox"' in tag:
            data.pop(name.group(1), None)
            if " checked" in tag:
                data[name.group(1)] = "1"
        value = re.search(r'value="([^"]*)"', tag)
        if name and value and 'type="radio"' in tag and " checked" in tag:
            data[name.group(1)] = value.group(1)
    for name, body in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        data[name] = chosen.group(1) if chosen else ""
    trigger = re.search(r'<textarea id="trigger"[^>]*>([^<]*)</textarea>', form)
    data["trigger"] = trigger.group(1).replace("&#34;", '"') if trigger else ""
    data.update(changes)
    return data


def test_the_builder_writes_and_reads_segments_trigger_syntax() -> None:
    assert built_trigger(["track"], "is", "Order Completed") == (
        'type = "track" and event = "Order Completed"',
        None,
    )
    both = built_trigger(["track", "page"], "starts_with", "Order")[0]
    assert both == '(type = "track" or type = "page") and match(event, "Order*")'
    assert read_trigger(both) == {
        "types": ["track", "page"],
        "operator": "starts_with",
        "name": "Order",
    }
    assert read_trigger('contains(event, "Sign")') == {
        "types": [],
        "operator": "contains",
        "name": "Sign",
    }
    assert read_trigger('type = "track" or event = "x"') is None  # FQL only
    assert read_trigger("properties.plan != null") is None
    assert built_trigger([], "is", 'say "hi"')[1] is not None
    assert built_trigger([], "", "")[1] is not None


def test_a_new_mapping_starts_from_the_actions_defaults_and_saves_disabled(
    web: TestClient,
) -> None:
    listing = web.get("/destinations/orders/mappings")
    assert listing.status_code == 200 and "No mappings yet" in listing.text
    assert ">Event Delivery</a>" in listing.text
    assert '<option value="send">Send</option>' in listing.text
    new = web.get("/destinations/orders/mappings/new", params={"action": "send", "name": "Orders"})
    assert new.status_code == 200 and "not saved yet" in new.text
    for field in ("url", "method", "headers", "data"):
        assert f'id="source-{field}"' in new.text
    assert 'value="builder" checked' in new.text  # type = "track" reads into the builder
    assert 'name="type_track" value="1" checked' in new.text
    assert "Send test event" not in new.text  # the tester needs a saved mapping
    # Send's URL is required and has no default: the API's refusal shows by the field.
    missing = web.post("/destinations/orders/mappings", data=mapping_form(new.text))
    assert missing.status_code == 422, missing.text
    error = re.search(r'<p id="error-url" class="error" role="alert">([^<]+)</p>', missing.text)
    assert error is not None and "is required" in error.group(1)
    location = add(web)
    page = web.get(location)
    assert page.status_code == 200, page.text
    assert "Send, disabled" in page.text and 'value="http://127.0.0.1:9/orders"' in page.text
    listing = web.get("/destinations/orders/mappings").text
    assert "<td>Disabled</td>" in listing and "<code>type = &#34;track&#34;</code>" in listing
    bare = web.get("/destinations/orders/mappings/new")
    assert bare.status_code == 303 and bare.headers["location"].endswith("/mappings")
    refused = web.get("/destinations/orders/mappings/new", params={"action": "nope"})
    assert refused.status_code == 400 and 'id="action-error"' in refused.text


def test_saving_the_builder_fields_and_enabling(web: TestClient, receiver: Receiver) -> None:
    location = add(web)
    page = web.get(location).text
    data = mapping_form(
        page,
        name="Completed orders",
        enabled="1",
        mode="builder",
        type_page="1",
        operator="is",
        event_name="Order Completed",
        **{
            "source:url": "literal",
            "value:url": receiver.url + "/orders",
            "source:method": "literal",
            "value:method": "PUT",
            "source:headers": "json",
            "value:headers": '{"X-Token": "hdr-secret"}',
            "source:data": "json",
            "value:data": '{"order": {"@path": "$.properties.order_id"}}',
        },
    )
    saved = web.post(location, data=data)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == location + "?saved=1"
    shown = web.get(saved.headers["location"]).text
    assert "Mapping saved." in shown and "Send, enabled" in shown
    assert 'name="type_page" value="1" checked' in shown
    assert 'name="type_track" value="1" checked' in shown
    assert 'value="Order Completed"' in shown
    assert "hdr-secret" not in shown and "[redacted]" in shown  # the secret header
    listing = web.get("/destinations/orders/mappings").text
    assert (
        "(type = &#34;track&#34; or type = &#34;page&#34;) and event = &#34;Order Completed&#34;"
        in listing
    )
    # Saving again as shown keeps the secret; the tester sends through the mapping.
    assert web.post(location, data=mapping_form(shown)).status_code == 303
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "properties": {"order_id": "o-9"},
    }
    tested = web.post(location + "/test", data={"csrf": csrf_of(shown), "event": json.dumps(event)})
    assert tested.status_code == 200, tested.text
    assert "Delivered: the destination accepted the event (200)." in tested.text
    [received] = receiver.wait_for(1)
    assert received.method == "PUT" and received.path == "/orders"
    assert received.headers["x-token"] == "hdr-secret"
    assert received.json() == {"order": "o-9"}
    assert "hdr-secret" not in tested.text
    bad = web.post(location + "/test", data={"csrf": csrf_of(shown), "event": "{nope"})
    assert bad.status_code == 400 and 'id="event-error"' in bad.text and "{nope" in bad.text
    dropped = web.post(
        location + "/test", data={"csrf": csrf_of(shown), "event": '{"type": "track"}'}
    )
    assert dropped.status_code == 400 and 'id="event-error"' in dropped.text


def test_fql_triggers_and_field_errors_show_by_their_fields(web: TestClient) -> None:
    location = add(web)
    page = web.get(location).text
    wrong = web.post(location, data=mapping_form(page, mode="fql", trigger="nope = 1"))
    assert wrong.status_code == 422, wrong.text
    error = re.search(r'<p id="trigger-error" class="error" role="alert">([^<]+)</p>', wrong.text)
    assert error is not None and "not a valid trigger" in error.group(1)
    assert "nope = 1</textarea>" in wrong.text
    fields = web.post(
        location,
        data=mapping_form(
            page,
            **{
                "source:data": "json",
                "value:data": "{oops",
                "source:url": "path",
                "value:url": "url",
            },
        ),
    )
    assert fields.status_code == 400
    assert 'id="error-data"' in fields.text and "Not valid JSON" in fields.text
    assert 'id="error-url"' in fields.text and "starts with $." in fields.text
    empty = web.post(location, data=mapping_form(page, mode="builder", type_track=""))
    assert empty.status_code == 400 and 'id="builder-error"' in empty.text
    raw = web.post(location, data=mapping_form(page, mode="fql", trigger="properties.plan != null"))
    assert raw.status_code == 303
    reread = web.get(location).text
    assert 'value="fql" checked' in reread and "properties.plan != null</textarea>" in reread


def test_enabling_from_the_list_and_deleting(web: TestClient) -> None:
    location = add(web)
    mapping_id = location.rsplit("/", 1)[1]
    csrf = csrf_of(web.get(location).text)
    enabled = web.post(f"{location}/enabled", data={"csrf": csrf, "enabled": "1", "back": "list"})
    assert enabled.status_code == 303
    assert enabled.headers["location"].endswith("/mappings")
    assert "<td>Enabled</td>" in web.get("/destinations/orders/mappings").text
    assert web.post(f"{location}/delete", data={"csrf": "forged"}).status_code == 403
    deleted = web.post(f"{location}/delete", data={"csrf": csrf})
    assert deleted.status_code == 303 and deleted.headers["location"].endswith("?deleted=1")
    assert web.get(location).status_code == 404
    assert mapping_id not in web.get("/destinations/orders/mappings").text


def test_a_destination_without_actions_has_no_mappings(web: TestClient) -> None:
    page = web.get("/destinations/plain/mappings")
    assert page.status_code == 200 and 'id="not-actions"' in page.text
    assert web.get("/destinations/nope/mappings").status_code == 404
    assert web.get("/destinations/orders/mappings/nope").status_code == 404


def test_a_role_without_sources_gets_403(web: TestClient, engine: Engine) -> None:
    location = add(web)
    web.cookies.clear()
    assert (
        web.post("/login", data={"token": api_token(engine, "function-admin")}).status_code == 303
    )
    for path in ("/destinations/orders/mappings", location):
        refused = web.get(path)
        assert refused.status_code == 403 and "Orders" not in refused.text, path
    web.cookies.clear()
    assert (
        web.post("/login", data={"token": api_token(engine, "source-read-only")}).status_code == 303
    )
    page = web.get(location)
    assert page.status_code == 200
    saved = web.post(location, data=mapping_form(page.text))
    assert saved.status_code == 403 and "Not allowed" in saved.text


@pytest.mark.parametrize("ref", ["%2E%2E", "a%3Fb=1", "%00", "x" * 3000, "%F0%9F%92%A9", "%25"])
def test_hostile_references_are_4xx_pages(web: TestClient, ref: str) -> None:
    csrf = csrf_of(web.get("/destinations/orders/mappings").text)
    for path in (
        f"/destinations/{ref}/mappings",
        f"/destinations/{ref}/mappings/new?action=send",
        f"/destinations/orders/mappings/{ref}",
    ):
        answer = web.get(path)
        assert answer.status_code in (400, 404), (path, answer.text)
        assert "Back to Home" in answer.text
    for path in (
        f"/destinations/{ref}/mappings",
        f"/destinations/orders/mappings/{ref}",
        f"/destinations/orders/mappings/{ref}/enabled",
        f"/destinations/orders/mappings/{ref}/delete",
        f"/destinations/orders/mappings/{ref}/test",
    ):
        posted = web.post(path, data={"csrf": csrf, "action": "send", "event": "{}"})
        assert posted.status_code in (400, 404), (path, posted.text)
