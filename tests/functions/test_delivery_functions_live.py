"""Destination and insert functions through a running server: functions saved with the REST
API, events sent to the Tracking API, delivered by the worker's sandbox to loopback receivers,
and reported by Event Delivery (AC-101, AC-106)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "sk-live-never-shown-0042"

ENRICH = """
async function onTrack(event, settings) {
  event.properties.message = 'Enriched'
  event.properties.team = settings.team
  return event
}
async function onIdentify(event, settings) { throw new DropEvent('no identifies here') }
"""
POST = """
async function onTrack(event, settings) {
  console.log('posting', event.event, 'with', settings.apiKey)
  if (!event.userId.startsWith('u')) throw new ValidationError('User ID is invalid')
  const r = await fetch(settings.url, {method: 'POST', body: JSON.stringify(event),
                                       headers: {authorization: 'Bearer ' + settings.apiKey}})
  if (r.status >= 500 || r.status === 429) throw new RetryError('HTTP Status ' + r.status)
}
"""


def config(receiver: Receiver, *, hook: bool = True) -> str:
    # The sandbox's fetch refuses loopback addresses unless the host is listed by name.
    text = """workspace: test
server:
  functions_fetch_allow: ["127.0.0.1"]
sources:
  - name: web
    write_key: WK_web
"""
    if hook:
        text += f"""destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{receiver.url}/hook"}}
"""
    return text


def settle() -> None:
    """Let the worker see a configuration change (it checks at most once a second)."""
    time.sleep(2)


@contextmanager
def serving(base: Path, text: str) -> Iterator[LiveServer]:
    """One server process with every role (the delivery worker's sandbox included); a slow
    machine may take a while to start it."""
    path = base / "headwater.yaml"
    path.write_text(text)
    server = LiveServer(data_dir=base / "data", config=path, role="single")
    try:
        server.start(timeout=120)
        yield server
    finally:
        server.stop()


def track(n: int, **extra: Any) -> dict[str, Any]:
    return {"userId": f"u{n}", "event": "Order Completed", "properties": {"n": n}, **extra}


def test_ac106_live_an_insert_function_enriches_and_drops_before_a_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    """AC-106 through the running server: the webhook receives onTrack's enriched event; the
    identify the function drops is counted "Filtered at insert function"."""
    with (
        serving(tmp_path, config(receiver)) as live,
        httpx.Client(base_url=live.url, timeout=10) as http,
    ):
        created = http.post(
            "/api/v1/functions",
            headers=ADMIN,
            json={
                "name": "enrich",
                "kind": "insert",
                "code": ENRICH,
                "settings": [{"name": "team", "label": "Team", "type": "string"}],
            },
        )
        assert created.status_code == 201, created.text
        attached = http.put(
            "/api/v1/destinations/hook/insert-function",
            headers=ADMIN,
            json={"function": "enrich", "settings": {"team": "growth"}},
        )
        assert attached.status_code == 200, attached.text
        settle()
        assert http.post("/v1/track", headers=AUTH, json=track(1)).status_code == 200
        identify = {"userId": "u2", "traits": {"plan": "pro"}}
        assert http.post("/v1/identify", headers=AUTH, json=identify).status_code == 200
        [got] = receiver.wait_for(1, timeout=30)
        body = got.json()
        assert body["properties"] == {"n": 1, "message": "Enriched", "team": "growth"}

        def report() -> dict[str, Any]:
            data: dict[str, Any] = http.get(
                "/api/v1/destinations/hook/delivery", headers=ADMIN
            ).json()["data"]
            return data

        data = wait_for(
            lambda: report()["filtered"].get("Filtered at insert function") == 1 and report(),
            20,
            "the dropped identify to be counted",
        )
        assert data["delivered"] == 1
        assert data["notDelivered"] == 0
    assert len(receiver.requests) == 1


def test_ac101_live_a_destination_function_posts_and_its_errors_show_console_logs(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A destination function posting to a loopback API through the running server; AC-101:
    its ValidationError is MESSAGE_REJECTED in Event Delivery, with the console lines, the
    secret redacted, and in the function's log."""
    with (
        serving(tmp_path, config(receiver, hook=False)) as live,
        httpx.Client(base_url=live.url, timeout=10) as http,
    ):
        created = http.post(
            "/api/v1/functions",
            headers=ADMIN,
            json={
                "name": "post-to-api",
                "kind": "destination",
                "code": POST,
                "settings": [
                    {"name": "url", "label": "URL", "type": "string", "required": True},
                    {"name": "apiKey", "label": "Key", "type": "string", "secret": True},
                ],
            },
        )
        assert created.status_code == 201, created.text
        catalog = http.get("/api/v1/catalog/destinations", headers=ADMIN).json()["data"]
        listed = {d["type"]: d for d in catalog["destinations"]}
        assert listed["function:post-to-api"]["name"] == "post-to-api (test)"
        destination = http.post(
            "/api/v1/destinations",
            headers=ADMIN,
            json={
                "name": "internal-api",
                "type": "function:post-to-api",
                "source": "web",
                "settings": {"url": f"{receiver.url}/api", "apiKey": SECRET},
            },
        )
        assert destination.status_code == 201, destination.text
        assert SECRET not in destination.text
        settle()
        assert http.post("/v1/track", headers=AUTH, json=track(1)).status_code == 200
        bad = track(2, userId="x-2")
        assert http.post("/v1/track", headers=AUTH, json=bad).status_code == 200
        [got] = receiver.wait_for(1, timeout=30)
        assert got.path == "/api" and got.json()["properties"] == {"n": 1}
        assert got.headers["authorization"] == f"Bearer {SECRET}"

        def report() -> dict[str, Any]:
            data: dict[str, Any] = http.get(
                "/api/v1/destinations/internal-api/delivery", headers=ADMIN
            ).json()["data"]
            return data

        data = wait_for(lambda: report()["notDelivered"] == 1 and report(), 20, "the rejection")
        assert data["delivered"] == 1
        [error] = data["errors"]
        assert error["code"] == "errors.discarded.MESSAGE_REJECTED"
        [sample] = error["samples"]
        assert sample["detail"] == "ValidationError: User ID is invalid"
        assert sample["function"]["logs"] == [["log", "posting Order Completed with [redacted]"]]
        logs = http.get("/api/v1/functions/post-to-api/logs", headers=ADMIN)
        assert logs.status_code == 200 and "User ID is invalid" in logs.text
        assert SECRET not in str(data) + logs.text


def test_ac106_live_the_issue_config_file_runs_both_kinds(
    tmp_path: Path, receiver: Receiver
) -> None:
    """headwater.yaml as the issue writes it: an insert function on a webhook (enriching
    tracks, dropping identifies) and a destination function instance posting to an API."""
    text = f"""workspace: test
server:
  functions_fetch_allow: ["127.0.0.1"]
functions:
  - name: enrich
    kind: insert
    language: javascript
    settings: [{{name: apiKey, label: API key, type: string, secret: true}}]
    code: |
      async function onTrack(event, settings) {{ event.properties.message = 'Enriched'; return event }}
      async function onIdentify(event, settings) {{ throw new DropEvent('no identifies here') }}
  - name: post-to-api
    kind: destination
    language: python
    settings: [{{name: url, label: URL, type: string, required: true}}]
    code: |
      import json
      def on_track(event, settings):
          r = fetch(settings['url'], method='POST', body=json.dumps(event))
          if r.status >= 500:
              raise RetryError('HTTP ' + str(r.status))
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{receiver.url}/hook"}}
    insert_function: enrich
    insert_function_settings: {{apiKey: "k-123456"}}
  - name: internal-api
    type: "function:post-to-api"
    source: web
    settings: {{url: "{receiver.url}/api"}}
"""
    with serving(tmp_path, text) as live, httpx.Client(base_url=live.url, timeout=10) as http:
        assert http.post("/v1/track", headers=AUTH, json=track(1)).status_code == 200
        identify = {"userId": "u2", "traits": {"plan": "pro"}}
        assert http.post("/v1/identify", headers=AUTH, json=identify).status_code == 200
        got = receiver.wait_for(2, timeout=30)
        by_path = {r.path: r.json() for r in got}
        assert by_path["/hook"]["properties"] == {"n": 1, "message": "Enriched"}
        # The destination function had no on_identify: UNSUPPORTED_EVENT_TYPE (AC-100).
        assert by_path["/api"]["properties"] == {"n": 1}

        def report(name: str) -> dict[str, Any]:
            data: dict[str, Any] = http.get(
                f"/api/v1/destinations/{name}/delivery", headers=ADMIN
            ).json()["data"]
            return data

        wait_for(
            lambda: report("hook")["filtered"].get("Filtered at insert function") == 1,
            20,
            "the dropped identify",
        )
        api = wait_for(
            lambda: report("internal-api")["notDelivered"] == 1 and report("internal-api"),
            20,
            "the identify without a handler",
        )
        assert api["errors"][0]["code"] == "errors.discarded.UNSUPPORTED_EVENT_TYPE"
    assert len(receiver.requests) == 2
