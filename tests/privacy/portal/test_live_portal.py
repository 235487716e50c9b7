"""The Privacy Portal in a running server: a Red field blocked on the Android source only
(A-PR-5), the Inbox fed by the worker, and one Slack alert for a new unclassified field
(A-PR-7)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
P = "/api/v1/privacy"

CONFIG = """workspace: test
sources:
  - name: android
    write_key: WK_android
    settings: {{category: mobile}}
  - name: ios
    write_key: WK_ios
    settings: {{category: mobile}}
destinations:
  - name: android-hook
    type: webhook
    source: android
    settings:
      url: {url}/android
  - name: ios-hook
    type: webhook
    source: ios
    settings:
      url: {url}/ios
"""


def test_a_pr_5_and_a_pr_7_in_a_live_server(tmp_path: Path, receiver: Receiver) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(CONFIG.format(url=receiver.url))
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start(timeout=180)  # the shared machine may be busy
    try:
        with httpx.Client(base_url=live.url, timeout=10, headers=ADMIN) as api:
            added = api.post(
                f"{P}/inventory", json={"path": "properties.card_number", "classification": "RED"}
            )
            assert added.status_code == 201, added.text
            assert api.put(f"{P}/controls/android", json={"blockRed": True}).status_code == 200
            slack = api.put(
                f"{P}/alerts/slack",
                json={"enabled": True, "webhookUrl": f"{receiver.url}/slack", "channel": "#pii"},
            )
            assert slack.status_code == 200
        time.sleep(1.5)  # the stage reloads on the configuration version within a second
        event = {
            "event": "Order Completed",
            "userId": "u1",
            "properties": {"card_number": "4111111111111111", "total": 9, "cvv": "123"},
        }
        for key in ("android", "ios"):
            with httpx.Client(base_url=live.url, timeout=10, auth=(f"WK_{key}", "")) as http:
                body = {**event, "messageId": f"m-{key}"}
                assert http.post("/v1/track", json=body).status_code == 200
        receiver.default = Answer()
        wait_for(
            lambda: {r.path for r in receiver.requests} >= {"/android", "/ios", "/slack"},
            timeout=30,
            what="both webhooks and the Slack alert",
        )
        by_path = {r.path: r for r in receiver.requests}
        android = by_path["/android"].json()
        assert android["properties"] == {"total": 9, "cvv": "123"}  # cvv: not in the Inventory
        assert android["event"] == "Order Completed" and android["userId"] == "u1"
        assert by_path["/ios"].json()["properties"] == event["properties"]  # no control on iOS

        time.sleep(6)  # another alert tick: nothing is announced twice
        slack_posts = [r for r in receiver.requests if r.path == "/slack"]
        texts = [r.json()["text"] for r in slack_posts]
        assert all(r.json()["channel"] == "#pii" for r in slack_posts)
        # card_number is classified; total and cvv are new and unclassified (on iOS, where
        # nothing is blocked), as are the context fields the SDK sends; each once.
        assert not any("properties.card_number" in t for t in texts)
        assert sum("`properties.total`" in t for t in texts) == 1
        assert sum("`properties.cvv`" in t for t in texts) == 1

        with httpx.Client(base_url=live.url, timeout=10, headers=ADMIN) as api:
            fields = api.get(f"{P}/inbox", params={"sourceId": "android"}).json()["data"]["fields"]
        paths = {f["path"]: f for f in fields}
        assert "properties.card_number" not in paths  # blocked before anything saw it
        assert paths["properties.cvv"]["sourceName"] == "android"
    finally:
        live.stop()
