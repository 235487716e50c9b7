"""The Destinations pages (SQLite and PostgreSQL) through the web app's routes and the REST API in
process: the list, the catalog with search and categories, the settings form generated from
real definitions (webhook, an Actions one), adding and changing a destination with secrets that
are never shown back, the API's refusals by the form, enable/disable, Event Delivery's chart,
error groups and Replay, and a role without the Sources area refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY
from headwater.store.admin_token import hash_token
from headwater.store.counters import CounterKey, CounterStore, minute_of
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.clock import Clock
from tests.web.conftest import csrf_of
from tests.web.test_source_pages import add_source

TOKEN = "test-admin-token"
SECRET = "whsec-Very-Secret-4417"
HEADER_SECRET = "Bearer tok-Hidden-9931"


@pytest.fixture
def api(engine: Engine, clock: Clock, tmp_path: Path) -> FastAPI:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    return create_api(
        engine, admin_token_hash=hash_token(TOKEN), clock=clock, archive_dir=tmp_path / "archive"
    )


def _web(api: FastAPI, engine: Engine, clock: Clock, token: str) -> Iterator[TestClient]:
    app = WebApp(
        api, WorkspaceStore(engine, clock=clock), admin_token_hash=hash_token(TOKEN), clock=clock
    )
    with TestClient(app, follow_redirects=False) as http:
        answer = http.post("/login", data={"token": token, "next": "/"})
        assert answer.status_code == 303
        yield http


@pytest.fixture
def web(api: FastAPI, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    yield from _web(api, engine, clock, TOKEN)


def add_webhook(web: TestClient, source: str, **settings: str) -> str:
    page = web.get("/destinations/catalog/webhook")
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "source": source, "name": "hook"}
    form.update({f"setting.{k}": v for k, v in settings.items()})
    answer = web.post("/destinations/catalog/webhook", data=form)
    assert answer.status_code == 303, answer.text
    location: str = answer.headers["location"]
    assert location.startswith("/destinations/")
    return location.removeprefix("/destinations/")


def test_the_list_shows_each_destination_with_its_source_and_a_link_to_the_catalog(
    web: TestClient,
) -> None:
    empty = web.get("/destinations")
    assert empty.status_code == 200
    assert "No destinations yet." in empty.text
    assert 'href="/destinations/catalog"' in empty.text
    source = add_source(web, "Website")
    destination = add_webhook(web, source, url="https://hooks.example.com/in")
    page = web.get("/destinations").text
    assert f'<a href="/destinations/{destination}">hook</a>' in page
    assert "webhook" in page and "Website" in page and "Enabled" in page


def test_the_catalog_searches_on_the_server_and_filters_by_category(web: TestClient) -> None:
    everything = web.get("/destinations/catalog").text
    assert 'href="/destinations/catalog/webhook"' in everything
    assert 'href="/destinations/catalog/actions:customerio"' in everything
    assert '<option value="Raw Data"' in everything
    found = web.get("/destinations/catalog", params={"q": "webhook"}).text
    assert 'href="/destinations/catalog/webhook"' in found
    assert 'href="/destinations/catalog/amplitude"' not in found
    raw = web.get("/destinations/catalog", params={"category": "Raw Data"}).text
    assert 'href="/destinations/catalog/webhook"' in raw
    assert 'href="/destinations/catalog/mixpanel"' not in raw
    assert '<option value="Raw Data" selected>' in raw
    none = web.get("/destinations/catalog", params={"q": "no-such-destination-xyz"}).text
    assert "No destination matches." in none


def test_the_catalog_api_answers_a_brief_list(api: FastAPI) -> None:
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        brief = http.get("/api/v1/catalog/destinations", params={"brief": "true"})
        full = http.get("/api/v1/catalog/destinations", params={"search": "webhook"})
    assert brief.status_code == 200 and full.status_code == 200
    entries = brief.json()["data"]["destinations"]
    webhook = next(d for d in entries if d["type"] == "webhook")
    assert webhook == {
        "type": "webhook",
        "name": "Webhooks",
        "kind": "native",
        "description": webhook["description"],
    }
    assert "settings" in next(d for d in full.json()["data"]["destinations"])


def test_the_settings_form_is_generated_from_the_definition(web: TestClient) -> None:
    add_source(web, "Website")
    webhook = web.get("/destinations/catalog/webhook").text
    assert re.search(r'<input id="setting-url" name="setting.url"[^>]*type="url"', webhook)
    assert re.search(r'<textarea id="setting-urls" name="setting.urls"', webhook)  # a list
    assert re.search(r'name="setting.shared_secret"[^>]*type="password" value=""', webhook)
    assert re.search(r'name="setting.headers"[^>]*type="password"', webhook)
    customerio = web.get("/destinations/catalog/actions:customerio").text
    assert "<h1>Add Actions Customerio</h1>" in customerio
    assert re.search(r'<select id="setting-accountRegion" name="setting.accountRegion"', customerio)
    assert re.search(r'name="setting.apiKey" required aria-required="true"', customerio)
    assert re.search(r'name="setting.apiKey"[^>]*type="password"', customerio)
    assert 'API Key <span class="required">(required)</span>' in customerio
    amplitude = web.get("/destinations/catalog/amplitude").text
    assert re.search(r'name="setting.eu_residency" type="checkbox"', amplitude)
    assert re.search(r'name="setting.min_id_length"[^>]*inputmode="numeric"', amplitude)
    missing = web.get("/destinations/catalog/no-such-type")
    assert missing.status_code == 404
    assert "The catalog has no destination of this type." in missing.text


def test_secrets_are_never_shown_back_and_blank_keeps_them(web: TestClient, engine: Engine) -> None:
    source = add_source(web, "Website")
    destination = add_webhook(
        web,
        source,
        url="https://hooks.example.com/in",
        shared_secret=SECRET,
        headers=f'{{"Authorization": "{HEADER_SECRET}"}}',
    )
    page = web.get(f"/destinations/{destination}")
    assert page.status_code == 200
    assert "set — enter a new value to replace" in page.text
    assert 'value="https://hooks.example.com/in"' in page.text
    # Save with the secrets left blank: the stored ones stay.
    saved = web.post(
        f"/destinations/{destination}",
        data={
            "csrf": csrf_of(page.text),
            "name": "hook renamed",
            "setting.url": "https://hooks.example.com/other",
            "setting.shared_secret": "",
            "setting.headers": "",
        },
    )
    assert saved.status_code == 303, saved.text
    after = web.get(saved.headers["location"]).text
    assert "The settings were saved." in after and "hook renamed" in after
    assert 'value="https://hooks.example.com/other"' in after
    assert "set — enter a new value to replace" in after
    from headwater.destinations.store import DestinationStore

    stored = DestinationStore(WorkspaceStore(engine)).require(destination).settings
    assert stored["shared_secret"] == SECRET
    assert stored["headers"] == {"Authorization": HEADER_SECRET}
    for path in (
        "/destinations",
        f"/destinations/{destination}",
        f"/destinations/{destination}/delivery",
        f"/sources/{source}",
        "/",
    ):
        shown = web.get(path)
        assert shown.status_code == 200, path
        assert SECRET not in shown.text and "tok-Hidden" not in shown.text, path


def test_the_apis_refusals_and_unreadable_fields_show_by_the_form(web: TestClient) -> None:
    source = add_source(web, "Website")
    page = web.get("/destinations/catalog/webhook").text
    refused = web.post(
        "/destinations/catalog/webhook",
        data={"csrf": csrf_of(page), "source": source, "name": "hook", "setting.url": "nope"},
    )
    assert refused.status_code == 422
    assert re.search(r'<p id="form-error" class="error" role="alert">[^<]*url', refused.text)
    assert 'value="nope"' in refused.text  # what was typed stays
    unreadable = web.post(
        "/destinations/catalog/webhook",
        data={"csrf": csrf_of(page), "source": source, "name": "hook", "setting.urls": "[oops"},
    )
    assert unreadable.status_code == 400
    assert "Enter a JSON list" in unreadable.text
    nameless = web.post(
        "/destinations/catalog/webhook", data={"csrf": csrf_of(page), "source": source, "name": ""}
    )
    assert nameless.status_code == 400 and "Enter a name." in nameless.text
    forged = web.post(
        "/destinations/catalog/webhook", data={"csrf": "forged", "source": source, "name": "x"}
    )
    assert forged.status_code == 403
    assert web.get("/destinations/no-such-destination").status_code == 404


def test_disabling_and_enabling(web: TestClient) -> None:
    source = add_source(web, "Website")
    destination = add_webhook(web, source, url="https://hooks.example.com/in")
    page = web.get(f"/destinations/{destination}").text
    assert "Disable destination" in page
    off = web.post(
        f"/destinations/{destination}/enabled", data={"csrf": csrf_of(page), "enabled": "false"}
    )
    assert off.status_code == 303
    page = web.get(f"/destinations/{destination}").text
    assert "<dd>Disabled</dd>" in page and "Enable destination" in page
    web.post(
        f"/destinations/{destination}/enabled", data={"csrf": csrf_of(page), "enabled": "true"}
    )
    assert "<dd>Enabled</dd>" in web.get(f"/destinations/{destination}").text


def test_event_delivery_draws_the_hours_and_groups_the_errors(
    web: TestClient, engine: Engine, clock: Clock
) -> None:
    source = add_source(web, "Website")
    destination = add_webhook(web, source, url="https://hooks.example.com/in")
    now = minute_of(clock())
    counters = CounterStore(engine)
    counters.add({CounterKey(source, destination, DELIVERED, ""): 7}, minute=now)
    counters.add({CounterKey(source, destination, DELIVERED, ""): 5}, minute=now - 120)
    failed = CounterKey(source, destination, FAILED_DELIVERY, "errors.discarded.bad-request")
    sample = {
        "you_sent": {"type": "track", "event": "Signed Up"},
        "request": {"method": "POST", "url": "https://hooks.example.com/in", "body": "{}"},
        "response": {"status": 400, "body": "no such hook"},
    }
    counters.add({failed: 2}, {failed: [sample]}, minute=now)
    page = web.get(f"/destinations/{destination}/delivery")
    assert page.status_code == 200, page.text
    text = page.text
    assert '<title id="chart-title">Events delivered, retried and not delivered per hour' in text
    assert text.count('class="bar ok"') >= 2 + 1  # two hours with deliveries, and the legend
    assert 'class="bar bad"' in text
    assert "Hour (UTC)" in text and ">Events<" in text
    assert re.search(
        r"<td class=\"num\">7</td><td class=\"num\">0</td><td class=\"num\">2</td>", text
    )
    assert "errors.discarded.bad-request" in text
    assert "Signed Up" in text and "no such hook" in text
    week = web.get(f"/destinations/{destination}/delivery", params={"hours": "168"})
    assert week.status_code == 200 and '<option value="168" selected>' in week.text
    odd = web.get(f"/destinations/{destination}/delivery", params={"hours": "abc"})
    assert odd.status_code == 200 and '<option value="24" selected>' in odd.text


def test_replay_reads_the_range_and_refuses_a_bad_one(web: TestClient) -> None:
    source = add_source(web, "Website")
    destination = add_webhook(web, source, url="https://hooks.example.com/in")
    page = web.get(f"/destinations/{destination}/delivery").text
    backwards = web.post(
        f"/destinations/{destination}/replay",
        data={"csrf": csrf_of(page), "start": "2026-01-02T10:00", "end": "2026-01-02T09:00"},
    )
    assert backwards.status_code == 400
    assert "The end must be after the start." in backwards.text
    blank = web.post(f"/destinations/{destination}/replay", data={"csrf": csrf_of(page)})
    assert blank.status_code == 400 and "Enter a start and an end time." in blank.text
    done = web.post(
        f"/destinations/{destination}/replay",
        data={"csrf": csrf_of(page), "start": "2026-01-02T09:00", "end": "2026-01-02T10:00"},
    )
    assert done.status_code == 200, done.text
    assert "Replay queued 0 of 0 archived events" in done.text


def test_a_role_without_sources_is_refused_every_page(
    web: TestClient, api: FastAPI, engine: Engine, clock: Clock
) -> None:
    source = add_source(web, "Website")
    destination = add_webhook(web, source, url="https://hooks.example.com/in")
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
        made = admin.post(
            "/api/v1/tokens",
            json={
                "description": "functions only",
                "permissions": [{"roleId": "function-admin", "resources": [{"type": "WORKSPACE"}]}],
            },
        )
        assert made.status_code == 201, made.text
        token = made.json()["data"]["token"]["token"]
    for http in _web(api, engine, clock, token):
        for path in (
            "/destinations",
            "/destinations/catalog",
            "/destinations/catalog/webhook",
            f"/destinations/{destination}",
            f"/destinations/{destination}/delivery",
        ):
            answer = http.get(path)
            assert answer.status_code == 403, path
            assert "Not allowed" in answer.text
            assert "hooks.example.com" not in answer.text and "Catalog" not in answer.text
        home = http.get("/").text
        assert 'href="/destinations"' not in home


def test_an_actions_destination_is_added_with_its_generated_form(web: TestClient) -> None:
    source = add_source(web, "Website")
    page = web.get("/destinations/catalog/actions:customerio").text
    answer = web.post(
        "/destinations/catalog/actions:customerio",
        data={
            "csrf": csrf_of(page),
            "source": source,
            "name": "cio",
            "setting.siteId": "site-Secret-1234",
            "setting.apiKey": SECRET,
            "setting.accountRegion": "EU 🇪🇺",
        },
    )
    assert answer.status_code == 303, answer.text
    shown = web.get(answer.headers["location"]).text
    assert '<option value="EU 🇪🇺" selected>' in shown
    assert shown.count("set — enter a new value to replace") >= 2
    assert SECRET not in shown and "site-Secret-1234" not in shown
    missing = web.post(
        "/destinations/catalog/actions:customerio",
        data={"csrf": csrf_of(page), "source": source, "name": "cio2"},
    )
    assert missing.status_code == 422  # the API names the required secret
    assert re.search(r'role="alert">[^<]*(siteId|apiKey)', missing.text), missing.text[-3000:]
