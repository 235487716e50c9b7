"""Privacy alerts (§9.7, A-PR-7): a new, unclassified field → one Slack incoming-webhook POST,
and a Track event into the chosen source; each field once, never the Inbox's backlog."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from headwater.errors import InvalidError
from headwater.ingest.internal import InternalAppend
from headwater.privacy.alerts import ALERT_USER, EVENT, Alerts
from headwater.privacy.inventory import Inventory
from headwater.store.ingest_log import open_ingest_log
from headwater.store.record import decode_record
from headwater.store.workspace import WorkspaceStore
from tests.privacy.portal.test_inbox import Feed
from tests.support.clock import Clock
from tests.support.receiver import Answer, Receiver


def _track(**properties: object) -> dict[str, object]:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "properties": properties}


def test_a_pr_7_slack_and_source_alerts(
    store: WorkspaceStore, clock: Clock, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.default = Answer(body=b"ok", headers={"Content-Type": "text/plain"})  # Slack's
    log = open_ingest_log(store.engine, tmp_path, durability="normal", clock=clock)
    alerts = Alerts(store, appender=InternalAppend(log, clock=clock), clock=clock)
    feed = Feed(store, clock)
    assert alerts.run_once() == 0  # nothing enabled
    feed.send("web", _track(plan="pro"))  # before alerts were on: never announced
    clock.advance(1)
    alerts.configure(
        "SLACK",
        {"enabled": True, "webhookUrl": f"{receiver.url}/services/T0/B0/x", "channel": "#privacy"},
    )
    alerts.configure("source", {"enabled": True, "sourceId": "retl"})
    clock.advance(1)
    feed.send("web", _track(plan="pro", ssn="123"))
    feed.send("ios", _track(ssn="123", coupon="X"))  # ssn again, from another source
    Inventory(store).classify("properties.coupon", "GREEN")  # classified: not "unclassified"
    assert alerts.run_once() == 1
    assert alerts.run_once() == 0  # each field once
    (posted,) = receiver.requests
    assert posted.method == "POST" and posted.path == "/services/T0/B0/x"
    assert posted.headers["content-type"] == "application/json"
    body = posted.json()
    assert set(body) == {"text", "channel"} and body["channel"] == "#privacy"
    assert "properties.ssn" in body["text"] and "RED" in body["text"]

    retl = store.get_source("retl")
    assert retl is not None
    appended = []
    for partition in log.partitions:
        for _, payload in log.read(partition, 0, 100):
            record = decode_record(payload)
            if record.source_id == retl.id:
                appended += [msgspec.json.decode(raw) for raw in record.events]
    assert [(e["type"], e["event"], e["anonymousId"]) for e in appended] == [
        ("track", EVENT, ALERT_USER)
    ]
    assert appended[0]["properties"]["field"] == "properties.ssn"
    assert appended[0]["properties"]["recommendedClassification"] == "RED"
    assert appended[0]["properties"]["matcher"] == "social security number"


def test_a_failed_slack_post_is_tried_again(
    store: WorkspaceStore, clock: Clock, receiver: Receiver
) -> None:
    alerts = Alerts(store, clock=clock)
    alerts.configure("slack", {"enabled": True, "webhookUrl": receiver.url, "channel": "#privacy"})
    receiver.default = Answer(status=500)
    Feed(store, clock).send("web", _track(email="a@b.c"))
    assert alerts.run_once() == 0
    receiver.default = Answer(body=b"ok")
    assert alerts.run_once() == 1
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        ("email", {"enabled": True}),
        ("slack", {"enabled": "yes", "webhookUrl": "https://x", "channel": "#a"}),
        ("slack", {"enabled": True, "webhookUrl": "ftp://x", "channel": "#a"}),
        ("slack", {"enabled": True, "webhookUrl": "https://x", "channel": "a"}),
        ("source", {"enabled": True}),
        ("source", {"enabled": True, "sourceId": "no such source"}),
    ],
)
def test_unusable_alert_settings_are_refused(
    store: WorkspaceStore, channel: str, body: dict[str, object]
) -> None:
    with pytest.raises(InvalidError):
        Alerts(store).configure(channel, body)
