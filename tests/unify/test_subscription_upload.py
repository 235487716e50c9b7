"""Subscription CSV upload (§18.4, A-UE-63) and the subscription REST routes, on SQLite and
PostgreSQL: the file checked with Segment's messages, its rows sent as Identify calls from the
space's upload source and resolved by the identity stage (the ingest log's records handed to
the processed stream), the error report written by both; subscription groups and the batch
query through the API, every bad input a 4xx; the ``headwater subscriptions`` commands."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.api.app import create_api
from headwater.api.uploads import use_appender
from headwater.cli import main
from headwater.ingest.internal import InternalAppend
from headwater.pipeline.consumer import Consumer
from headwater.store.admin_token import hash_token
from headwater.store.archive import Archive
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify import csv_upload, subscription_upload
from headwater.unify.insights import Insights, Query
from headwater.unify.settings import IdentifierSetting, IdentitySettings
from headwater.unify.spaces import SpaceStore
from headwater.unify.stage import GROUP, IdentityStage
from headwater.unify.subscription_groups import SubscriptionGroups, live_groups
from headwater.unify.subscriptions import MESSAGES, State, Written, state_of, write_states
from tests.support.clock import Clock
from tests.support.threaded import serving_in_thread
from tests.support.waiting import wait_for

TOKEN = "test-admin-token"
PHONE = IdentitySettings().with_identifier(IdentifierSetting(type="phone"))


class World:
    """The REST API appending to an ingest log, and the identity stage reading what it
    appended (handed to the processed stream as the stage chain would)."""

    def __init__(self, engine: Engine, clock: Clock, log: IngestLog, http: TestClient) -> None:
        self.engine, self.clock, self.log, self.http = engine, clock, log, http
        self.store = WorkspaceStore(engine, clock=clock)
        self.spaces = SpaceStore(self.store)
        self.groups = SubscriptionGroups(self.store)
        self.space = self.spaces.require("main")
        self.web = self.store.get_source("web").id  # type: ignore[union-attr]
        self.stream = EventLog(engine, clock=clock)
        self.stream.register(GROUP)
        self.stage = IdentityStage(engine, Archive(Path("/nonexistent")), clock=clock)
        self.forwarded = 0

    def post(self, body: bytes, name: str = "contacts.csv", url: str = "", **params: str) -> Any:
        return self.http.post(
            url or "/api/v1/spaces/main/subscriptions/uploads",
            content=body,
            params={"fileName": name, **params},
            headers={"content-type": "text/csv"},
        )

    def upload(self, body: bytes, url: str = "", **params: str) -> dict[str, Any]:
        """Upload, wait for the rows to be sent, resolve them; the upload as shown then."""
        answer = self.post(body, url=url, **params)
        assert answer.status_code == 202, answer.text
        upload_id = answer.json()["data"]["upload"]["id"]
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.get(f"subscriptions/uploads/{upload_id}")["upload"])
            return bool(found["status"] != "processing")

        wait_for(done, 30, "the upload to be sent")
        self.resolve()
        return self.get(f"subscriptions/uploads/{upload_id}")["upload"]  # type: ignore[no-any-return]

    def refused(self, body: bytes, name: str = "contacts.csv", url: str = "") -> tuple[int, str]:
        answer = self.post(body, name, url)
        assert answer.status_code >= 400, answer.text
        return answer.status_code, str(answer.json()["errors"][0]["message"])

    def get(self, tail: str) -> Any:
        answer = self.http.get(f"/api/v1/spaces/main/{tail}")
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def records(self) -> list[dict[str, Any]]:
        return [
            msgspec.json.decode(payload)
            for partition in self.log.partitions
            for _, payload in self.log.read(partition, 0, 10**9)
        ]

    def identify(self, *subscriptions: dict[str, Any], **fields: Any) -> None:
        """An Identify from the source ``web`` (a user's own change), resolved."""
        event = {
            "type": "identify",
            "messageId": f"web-{self.forwarded}-{len(subscriptions)}",
            "userId": "someone",
            "context": {"messaging_subscriptions": list(subscriptions)},
            **fields,
        }
        InternalAppend(self.log, clock=self.clock).append(
            self.space.workspace_id, self.web, [event]
        )
        self.resolve()

    def resolve(self) -> None:
        """Hand what the ingest log got since the last call to the stage; run it dry."""
        records = self.records()
        for record in records[self.forwarded :]:
            self.stream.append(
                [
                    encode_record(
                        record["workspace_id"],
                        record["source_id"],
                        record["received_at"],
                        record["events"],
                    )
                ]
            )
        self.forwarded = len(records)
        # A consumer of its own each time: its lease is taken on the test's clock, which moves.
        consumer = Consumer(self.stream, GROUP, self.stage, owner="w", exclusive=True)
        for _ in range(100):
            if consumer.run_once() == 0:
                return
        raise AssertionError("the stage did not catch up")

    def state(self, channel: str, key: str) -> State:
        with self.engine.connect() as conn:
            return state_of(conn, self.space.id, channel, key)

    def report(self, upload_id: str) -> list[list[str]]:
        answer = self.http.get(f"/api/v1/spaces/main/subscriptions/uploads/{upload_id}/report")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        return list(csv.reader(io.StringIO(answer.text)))


@pytest.fixture
def world(engine: Engine, clock: Clock, tmp_path: Path) -> Iterator[World]:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    store.create_source("web")
    spaces = SpaceStore(store)
    spaces.create("main", sources=["web"], identity=PHONE)
    spaces.create("plain")  # Segment's defaults: no phone identifier
    log = open_ingest_log(engine, tmp_path, durability="normal", clock=clock)
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    use_appender(app, InternalAppend(log, clock=clock))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield World(engine, clock, log, http)
    log.close()


# --- A-UE-63 -------------------------------------------------------------------------------------


def test_a_ue_63_a_blank_status_never_overwrites(world: World) -> None:
    done = world.upload(b"email,email_subscription_status\na@b.com,subscribed\na@b.com,\n")
    assert (done["status"], done["rows"], done["appendedRows"], done["errorRows"]) == (
        "succeeded",
        2,
        2,
        0,
    )
    assert world.state("EMAIL", "a@b.com").status == "subscribed"
    first, second = world.records()[0]["events"]
    assert first["context"]["messaging_subscriptions"] == [
        {"key": "a@b.com", "type": "EMAIL", "status": "subscribed"}
    ]
    assert "messaging_subscriptions" not in second["context"]
    assert second["traits"] == {"email": "a@b.com"}  # the contact is on the profile still
    assert first["messageId"] == f"{done['id']}-1" and second["messageId"] == f"{done['id']}-2"
    assert {r["source_id"] for r in world.records()} == {done["sourceId"]} != {world.web}
    # Rows are applied in order: a later row's state wins.
    world.clock.advance(1)
    world.upload(b"email,email_subscription_status\nA@B.com,unsubscribed\na@b.com,SUBSCRIBED\n")
    assert world.state("EMAIL", "a@b.com").status == "subscribed"
    world.clock.advance(1)
    world.upload(b"email,email_subscription_status\na@b.com,Did-Not-Subscribe\n")
    assert world.state("EMAIL", "a@b.com").status == "did_not_subscribe"


def test_a_ue_63_an_invalid_email_is_in_the_error_report(world: World) -> None:
    body = (
        b"user_id,email,email_subscription_status\n"
        b"u1,jane@x.com,subscribed\n"
        b"u2,not-an-email,subscribed\n"
        b"u3,bob@x.com,subscribed\n"
    )
    done = world.upload(body)
    assert (done["appendedRows"], done["errorRows"]) == (2, 1)
    assert world.report(done["id"]) == [
        ["user_id", "email", "email_subscription_status", "row_number", "error_code",
         "error_message"],
        ["u2", "not-an-email", "subscribed", "2", "INVALID_EMAIL",
         MESSAGES[reasons.INVALID_EMAIL]],
    ]  # fmt: skip
    assert world.state("EMAIL", "jane@x.com").status == "subscribed"
    assert world.state("EMAIL", "bob@x.com").status == "subscribed"
    assert [e["userId"] for r in world.records() for e in r["events"]] == ["u1", "u3"]


def test_a_ue_63_a_stopped_phone_cannot_be_subscribed_by_a_csv(world: World) -> None:
    world.identify({"key": "+15555550123", "type": "SMS", "status": "unsubscribed"})
    world.clock.advance(60)
    body = (
        b"phone,sms_subscription_status,whatsapp_subscription_status\n"
        b"+1 555 555 0123,subscribed,subscribed\n"
        b"+1 555 555 0199,subscribed,\n"
    )
    done = world.upload(body)
    assert done["errorRows"] == 1  # written by identity resolution
    assert world.report(done["id"])[1:] == [
        ["+1 555 555 0123", "subscribed", "subscribed", "1", "UNABLE_TO_SUBSCRIBE",
         MESSAGES[reasons.UNABLE_TO_SUBSCRIBE]],
    ]  # fmt: skip
    assert world.state("SMS", "+15555550123").status == "unsubscribed"
    assert world.state("WHATSAPP", "+15555550123").status == "subscribed"  # its own state
    assert world.state("SMS", "+15555550199").status == "subscribed"
    with world.engine.connect() as conn:
        found = Insights(clock=world.clock).search(
            conn, world.space.id, Query(violation=reasons.UNABLE_TO_SUBSCRIBE)
        )
    assert [(r.id_type, r.id_value) for r in found] == [("phone", "+1 555 555 0123")]
    # Neither may another unsubscribe-breaking state; unsubscribed again is fine.
    world.clock.advance(60)
    again = world.upload(b"phone,sms_subscription_status\n+1-555-555-0123,did-not-subscribe\n")
    assert world.report(again["id"])[1][-2] == "UNABLE_TO_SUBSCRIBE"
    world.clock.advance(60)
    fine = world.upload(b"phone,sms_subscription_status\n+15555550123,unsubscribed\n")
    assert fine["errorRows"] == 0


# --- rows -----------------------------------------------------------------------------------------


def test_each_kind_of_bad_row_has_its_code(world: World) -> None:
    body = (
        b"user_id,email,email_subscription_status,phone,sms_subscription_status\n"
        b"u1,,subscribed,,\n"  # a status for no email
        b"u2,a@b.com,,call me,\n"  # not a phone number
        b"u3,a@b.com,yes,,\n"  # not a status
        b"u4,,,,unsubscribed\n"  # a status for no phone
        b"u5,c@d.com,SUBSCRIBED,555-555-0100,unsubscribed\n"
        b"u6\n"  # short rows are blank to the end
    )
    done = world.upload(body)
    report = world.report(done["id"])
    assert [(row[0], row[-3], row[-2]) for row in report[1:]] == [
        ("u1", "1", "INVALID_EMAIL"),
        ("u2", "2", "INVALID_PHONE"),
        ("u3", "3", "INVALID_SUBSCRIPTION_STATUS"),
        ("u4", "4", "INVALID_PHONE"),
    ]
    assert report[2][:5] == ["u2", "a@b.com", "", "call me", ""]
    assert (done["appendedRows"], done["errorRows"]) == (2, 4)
    assert world.state("EMAIL", "c@d.com").status == "subscribed"
    assert world.state("SMS", "5555550100").status == "unsubscribed"
    events = [e for r in world.records() for e in r["events"]]
    assert [e["userId"] for e in events] == ["u5", "u6"]
    assert events[0]["context"]["externalIds"] == [
        {"id": "555-555-0100", "type": "phone", "collection": "users", "encoding": "none"}
    ]


def test_a_custom_trait_goes_on_every_profile_of_the_file(world: World) -> None:
    done = world.upload(b"user_id,email\nu1,a@b.com\nu2,\n", customTrait="Conference 2025")
    assert done["customTrait"] == "Conference 2025"
    events = [e for r in world.records() for e in r["events"]]
    assert [e["traits"] for e in events] == [
        {"email": "a@b.com", "Conference 2025": True},
        {"Conference 2025": True},
    ]
    for bad in ("", " x", "a\nb"):
        answer = world.post(b"email\na@b.com\n", customTrait=bad)
        assert answer.status_code == 422, answer.text


def test_rows_that_cannot_be_sent_are_system_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The append fails on the second chunk: its rows and every later one are reported."""
    monkeypatch.setattr(csv_upload, "CHUNK_ROWS", 3)  # rows sent or reported per chunk
    lines = ["email,email_subscription_status\n", *(f"u{n}@x.com,subscribed\n" for n in range(7))]
    lines.insert(3, "bad,subscribed\n")
    checked = subscription_upload.check(lines, IdentitySettings(), {})
    sent: list[int] = []
    reported: list[subscription_upload.RowError] = []

    def append(chunk: Any) -> None:
        if sent:
            raise OSError("disk full")
        sent.append(len(chunk))

    with pytest.raises(OSError, match="disk full"):
        subscription_upload.send_rows(
            lines, checked.layout, "upl_x", append, lambda n: None, reported.extend
        )
    assert sent == [2]  # rows 1 and 2; row 3 reported with them
    assert [(r.row_number, r.code) for r in reported] == [
        (3, reasons.INVALID_EMAIL),
        (4, reasons.SYSTEM_ERROR),
        (5, reasons.SYSTEM_ERROR),
        (6, reasons.SYSTEM_ERROR),
        (7, reasons.SYSTEM_ERROR),
        (8, reasons.SYSTEM_ERROR),
    ]
    assert reported[1].cells == ["u2@x.com", "subscribed"]  # row 4


# --- groups --------------------------------------------------------------------------------------


def test_group_columns_and_the_group_uploader(world: World) -> None:
    group = world.groups.create("main", "Newsletter")
    # The group uploader: group columns only; the email's own state must be subscribed.
    url = "/api/v1/spaces/main/subscription-groups/newsletter/uploads"
    body = b"email,Newsletter_subscription_status\na@b.com,subscribed\nc@d.com,unsubscribed\n"
    done = world.upload(body, url=url)
    assert done["kind"] == "subscriptions"
    assert world.report(done["id"])[1:] == [
        ["a@b.com", "subscribed", "1", "GLOBAL_STATE_NOT_SUBSCRIBED",
         MESSAGES[reasons.GLOBAL_STATE_NOT_SUBSCRIBED]],
    ]  # fmt: skip
    assert world.state("EMAIL", "c@d.com").groups[group.id].status == "unsubscribed"
    # The global uploader takes both: the row's own state is set first.
    world.clock.advance(1)
    world.upload(
        b"email,email_subscription_status,NEWSLETTER_subscription_status\na@b.com,subscribed,"
        b"subscribed\n"
    )
    state = world.state("EMAIL", "a@b.com")
    assert state.status == "subscribed" and state.groups[group.id].status == "subscribed"


def test_a_group_deleted_before_its_rows_are_applied_is_a_configuration_error(
    world: World,
) -> None:
    world.groups.create("main", "Offers")
    world.identify({"key": "a@b.com", "type": "EMAIL", "status": "subscribed"})
    answer = world.post(b"email,offers_subscription_status\na@b.com,subscribed\n")
    upload_id = answer.json()["data"]["upload"]["id"]
    wait_for(
        lambda: world.get(f"subscriptions/uploads/{upload_id}")["upload"]["status"] == "succeeded",
        30,
        "the rows to be sent",
    )
    world.groups.delete("main", "Offers")
    world.resolve()
    assert world.report(upload_id)[1][-2:] == [
        "CONFIGURATION_ERROR",
        MESSAGES[reasons.CONFIGURATION_ERROR],
    ]


# --- the file -------------------------------------------------------------------------------------

GROUP_URL = "/api/v1/spaces/main/subscription-groups/newsletter/uploads"


@pytest.mark.parametrize(
    ("name", "body", "url", "status", "message"),
    [
        ("notes.txt", b"email\na@b.com\n", "", 415, csv_upload.INVALID_FILE_TYPE),
        ("c.csv", b"", "", 422, csv_upload.EMPTY_FILE),
        ("c.csv", b"email,email_subscription_status\n", "", 422, csv_upload.EMPTY_FILE),
        ("c.csv", b'email\n"a@b.com\n', "", 422, csv_upload.PARSING_ERROR),
        ("c.csv", b"email,,x\na,b,c\n", "", 422, csv_upload.EMPTY_HEADER),
        ("c.csv", b"email,email\na,b\n", "", 422, csv_upload.DUPLICATE_HEADERS),
        ("c.csv", b"email,plan\na@b.com,pro\n", "", 422, subscription_upload.EXTRANEOUS),
        ("c.csv", b"email,Email\na@b.com,x\n", "", 422, subscription_upload.EXTRANEOUS),
        (
            "c.csv",
            b"email,weekly_subscription_status\na@b.com,subscribed\n",
            "",
            422,
            subscription_upload.EXTRANEOUS,
        ),
        (
            "c.csv",
            b"user_id,sms_subscription_status\nu1,subscribed\n",
            "",
            422,
            subscription_upload.needs_contact("sms_subscription_status", "phone"),
        ),
        (
            "c.csv",
            b"user_id,newsletter_subscription_status\nu1,subscribed\n",
            "",
            422,
            subscription_upload.needs_contact("newsletter_subscription_status", "email"),
        ),
        (
            "c.csv",
            b"email,email_subscription_status\na@b.com,subscribed\n",
            GROUP_URL,
            422,
            subscription_upload.GROUPS_ONLY,
        ),
        ("c.csv", b"email\na@b.com\n", GROUP_URL, 422, subscription_upload.NO_GROUP_COLUMN),
    ],
)
def test_files_are_refused_with_segments_messages(
    world: World, name: str, body: bytes, url: str, status: int, message: str
) -> None:
    world.groups.create("main", "Newsletter")
    assert world.refused(body, name, url) == (status, message)
    assert world.records() == []


def test_a_phone_column_needs_a_phone_identifier() -> None:
    with pytest.raises(Exception) as refused:
        subscription_upload.check(
            ["phone,sms_subscription_status\n", "1,x\n"], IdentitySettings(), {}
        )
    assert str(refused.value) == subscription_upload.EXTRANEOUS


def test_one_million_and_one_rows_are_refused() -> None:
    lines = iter(["email\n", *(["a@b.com\n"] * (csv_upload.MAX_ROWS + 1))])
    with pytest.raises(Exception) as refused:
        subscription_upload.check(lines, IdentitySettings(), {})
    assert str(refused.value) == csv_upload.TOO_MANY_ROWS


def test_templates(world: World) -> None:
    world.groups.create("main", "Newsletter")
    answer = world.http.get("/api/v1/spaces/main/subscriptions/uploads/template")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.text == (
        "user_id,email,email_subscription_status,android.id,android.idfa,android.push_token,"
        "anonymous_id,ga_client_id,ios.id,ios.idfa,ios.push_token,phone,sms_subscription_status,"
        "whatsapp_subscription_status\r\n"
    )
    group = world.http.get("/api/v1/spaces/main/subscription-groups/NEWSLETTER/uploads/template")
    assert group.status_code == 200
    assert group.text.startswith("user_id,email,Newsletter_subscription_status,android.id,")
    assert "sms_subscription_status" not in group.text
    plain = world.http.get("/api/v1/spaces/plain/subscriptions/uploads/template")
    assert "phone" not in plain.text and "email_subscription_status" in plain.text


def test_the_history_lists_subscription_uploads(world: World) -> None:
    profiles = world.http.post(
        "/api/v1/spaces/main/profiles/uploads",
        content=b"user_id\nu1\n",
        params={"fileName": "people.csv"},
        headers={"content-type": "text/csv"},
    ).json()["data"]["upload"]
    wait_for(
        lambda: world.get(f"profiles/uploads/{profiles['id']}")["upload"]["status"] != "processing",
        30,
        "the profile upload",
    )
    world.clock.advance(1)
    done = world.upload(b"email,email_subscription_status\nbad,subscribed\n")
    refused = world.post(b"email,plan\na,b\n", "typo.csv")
    assert refused.status_code == 422
    history = world.get("subscriptions/uploads")["uploads"]
    assert [(u["id"], u["errorRows"]) for u in history] == [(done["id"], 1)]
    assert world.get("profiles/uploads")["pagination"]["totalEntries"] == 3  # every kind
    for missing in (profiles["id"], "upl_nope"):
        for tail in ("", "/report"):
            answer = world.http.get(f"/api/v1/spaces/main/subscriptions/uploads/{missing}{tail}")
            assert answer.status_code == 404, answer.text
    # The Update History keeps 30 days; the error reports go with their uploads.
    world.clock.advance(30 * 86_400 + 1)
    assert csv_upload.Uploads(world.store).purge() == 3
    with world.engine.connect() as conn:
        assert subscription_upload.error_count(conn, [done["id"]]) == {}


# --- the REST API ---------------------------------------------------------------------------------


def test_subscription_groups_through_the_api(world: World) -> None:
    base = "/api/v1/spaces/main/subscription-groups"
    made = world.http.post(base, json={"name": "Newsletter", "description": "Weekly"})
    assert made.status_code == 201, made.text
    group = made.json()["data"]["subscriptionGroup"]
    assert (group["name"], group["description"], group["id"][:4]) == (
        "Newsletter",
        "Weekly",
        "sgr_",
    )
    assert world.http.get(f"{base}/newsletter").json()["data"]["subscriptionGroup"] == group
    assert world.http.get(f"{base}/{group['id']}").status_code == 200
    renamed = world.http.patch(f"{base}/Newsletter", json={"name": "Weekly news"})
    assert renamed.json()["data"]["subscriptionGroup"]["id"] == group["id"]
    listed = world.http.get(base).json()["data"]
    assert [g["name"] for g in listed["subscriptionGroups"]] == ["Weekly news"]
    assert world.http.delete(f"{base}/weekly news").json() == {"data": {"status": "SUCCESS"}}
    assert world.http.get(f"{base}/weekly news").status_code == 404
    refused = [
        (world.http.post(base, json={"name": "a_b"}), 422),
        (world.http.post(base, json={"name": "x" * 76}), 422),
        (world.http.post(base, json={"name": "ok", "description": "d" * 501}), 422),
        (world.http.post(base, json={"name": 5}), 422),
        (world.http.post(base, json={}), 422),
        (world.http.post(base, json={"name": "ok", "extra": 1}), 422),
        (world.http.post(base, content=b"{", headers={"content-type": "application/json"}), 400),
        (world.http.patch(f"{base}/nope", json={"name": "x"}), 404),
        (world.http.patch(f"{base}/nope", json={"name": None}), 422),
        (world.http.post("/api/v1/spaces/nope/subscription-groups", json={"name": "x"}), 404),
        (world.http.get(f"{base}/%00"), 400),
    ]
    for answer, status in refused:
        assert answer.status_code == status, answer.text
        assert answer.json()["errors"][0]["message"]
    world.http.post(base, json={"name": "One"})
    assert world.http.post(base, json={"name": "ONE"}).status_code == 409
    for n in range(24):
        assert world.http.post(base, json={"name": f"G {n}"}).status_code == 201
    full = world.http.post(base, json={"name": "The 26th"})
    assert full.status_code == 409 and "at most 25" in full.json()["errors"][0]["message"]


def test_the_batch_query_gives_each_vectors_state(world: World) -> None:
    group = world.groups.create("main", "Newsletter")
    world.identify(
        {
            "key": "a@b.com",
            "type": "EMAIL",
            "status": "subscribed",
            "groups": [{"name": "newsletter", "status": "subscribed"}],
        },
        {"key": "+15555550123", "type": "WHATSAPP", "status": "did_not_subscribe"},
    )
    answer = world.http.post(
        "/api/v1/spaces/main/messaging-subscriptions/batch",
        json={
            "subscriptions": [
                {"key": "A@b.com", "type": "EMAIL"},
                {"key": "+1 (555) 555-0123", "type": "WhatsApp"},
                {"key": "+15555550123", "type": "SMS"},
                {"key": "nope", "type": "EMAIL"},
                {"key": "a@b.com", "type": "PIGEON"},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    at = data["successes"][0]["updatedAt"]
    assert data == {
        "successes": [
            {
                "key": "A@b.com",
                "type": "EMAIL",
                "status": "SUBSCRIBED",
                "updatedAt": at,
                "groups": [
                    {"id": group.id, "name": "Newsletter", "status": "SUBSCRIBED", "updatedAt": at}
                ],
            },
            {
                "key": "+1 (555) 555-0123",
                "type": "WHATSAPP",
                "status": "DID_NOT_SUBSCRIBE",
                "updatedAt": at,
            },
            {"key": "+15555550123", "type": "SMS"},
        ],
        "failures": [
            {
                "key": "nope",
                "type": "EMAIL",
                "errors": [{"code": "INVALID_EMAIL", "message": MESSAGES[reasons.INVALID_EMAIL]}],
            },
            {
                "key": "a@b.com",
                "type": "PIGEON",
                "errors": [
                    {
                        "code": "INVALID_SUBSCRIPTION_TYPE",
                        "message": MESSAGES[reasons.INVALID_SUBSCRIPTION_TYPE],
                    }
                ],
            },
        ],
        "errors": [],
    }
    url = "/api/v1/spaces/main/messaging-subscriptions/batch"
    many = {"subscriptions": [{"key": "a@b.com", "type": "EMAIL"}] * 1001}
    for body, status in (
        (many, 422),
        ({"subscriptions": [{"key": 5, "type": "EMAIL"}]}, 422),
        ({"subscriptions": "a@b.com"}, 422),
        ({}, 422),
    ):
        answer = world.http.post(url, json=body)
        assert answer.status_code == status, answer.text
    assert (
        world.http.post(url.replace("main", "nope"), json={"subscriptions": []}).status_code == 404
    )


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_uploads_shows_templates_reports_and_states(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    world.groups.create("main", "Newsletter")
    file = tmp_path / "contacts.csv"
    file.write_text("email,email_subscription_status\na@b.com,subscribed\nbad,subscribed\n")
    with serving_in_thread(world.http.app) as url:
        with pytest.raises(SystemExit) as done:
            main(["subscriptions", "upload", "main", str(file), "--url", url])
        assert done.value.code == 0
        err = capsys.readouterr().err
        assert "contacts.csv: 2 rows accepted as upload upl_" in err
        assert "  1/2 rows sent: done" in err
        upload_id = err.split("as upload ")[1].split()[0]
        assert "1 rows in the error report so far" in err
        world.resolve()
        with pytest.raises(SystemExit):
            main(["subscriptions", "report", "main", upload_id, "--url", url])
        assert capsys.readouterr().out.splitlines()[1].startswith("bad,subscribed,2,INVALID_EMAIL,")
        with pytest.raises(SystemExit):
            main(["subscriptions", "template", "main", "--group", "Newsletter", "--url", url])
        assert "Newsletter_subscription_status" in capsys.readouterr().out
        with pytest.raises(SystemExit):
            main(["subscriptions", "get", "main", "EMAIL:a@b.com", "SMS:x", "--url", url])
        out = capsys.readouterr().out
        assert "EMAIL     a@b.com  SUBSCRIBED" in out and "INVALID_PHONE" in out
        bad = tmp_path / "bad.csv"
        bad.write_text("email,plan\na@b.com,x\n")
        with pytest.raises(SystemExit) as refused:
            main(["subscriptions", "upload", "main", str(bad), "--url", url])
        assert refused.value.code == (
            f"headwater subscriptions upload: 422: {subscription_upload.EXTRANEOUS}."
        )
        group_file = tmp_path / "group.csv"
        group_file.write_text("email,newsletter_subscription_status\na@b.com,subscribed\n")
        with pytest.raises(SystemExit) as grouped:
            main(
                ["subscriptions", "upload", "main", str(group_file), "--group", "newsletter",
                 "--custom-trait", "Imported", "--url", url]
            )  # fmt: skip
        assert grouped.value.code == 0
    world.resolve()
    with world.engine.connect() as conn:
        group = live_groups(conn, world.space.id)["newsletter"]
    assert world.state("EMAIL", "a@b.com").groups[group.id].status == "subscribed"


def test_the_public_api_replaces_states_at_once_and_answers_with_them(world: World) -> None:
    group = world.groups.create("main", "Newsletter")
    url = "/api/v1/spaces/main/messaging-subscriptions"
    newsletter = [{"name": "newsletter", "status": "SUBSCRIBED"}]
    answer = world.http.put(
        url,
        json={
            "subscriptions": [
                {"key": "A@b.com", "type": "EMAIL", "status": "SUBSCRIBED", "groups": newsletter},
                {"key": "+1 (555) 555-0123", "type": "SMS", "status": "unsubscribed"},
                {"key": "nope", "type": "EMAIL", "status": "SUBSCRIBED"},
                {"key": "c@d.com", "type": "EMAIL", "groups": newsletter},
                {
                    "key": "e@f.com",
                    "type": "EMAIL",
                    "status": "SUBSCRIBED",
                    "groups": [{"name": "gone", "status": "SUBSCRIBED"}],
                },
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    at = format_timestamp(datetime.fromtimestamp(world.clock.now, UTC))
    assert data["successes"] == [
        {
            "key": "A@b.com",
            "type": "EMAIL",
            "status": "SUBSCRIBED",
            "updatedAt": at,
            "groups": [
                {"id": group.id, "name": "Newsletter", "status": "SUBSCRIBED", "updatedAt": at}
            ],
        },
        {"key": "+1 (555) 555-0123", "type": "SMS", "status": "UNSUBSCRIBED", "updatedAt": at},
    ]
    assert [(f["key"], [e["code"] for e in f["errors"]]) for f in data["failures"]] == [
        ("nope", ["INVALID_EMAIL"]),
        ("c@d.com", ["GLOBAL_STATE_NOT_SUBSCRIBED"]),
        ("e@f.com", ["SUBSCRIPTION_GROUP_NOT_FOUND"]),
    ]
    # Written before the answer; a refused item wrote nothing, not even its own status.
    assert world.state("EMAIL", "a@b.com").status == "subscribed"
    assert world.state("SMS", "+15555550123").status == "unsubscribed"
    assert world.state("EMAIL", "e@f.com").status is None
    # An Identify of an earlier time, applied later, does not undo it; a later one does.
    earlier = format_timestamp(datetime.fromtimestamp(world.clock.now - 60, UTC))
    unsubscribe = {"key": "a@b.com", "type": "EMAIL", "status": "unsubscribed"}
    world.identify(unsubscribe, timestamp=earlier)
    assert world.state("EMAIL", "a@b.com").status == "subscribed"
    world.clock.advance(60)
    world.identify(unsubscribe)
    assert world.state("EMAIL", "a@b.com").status == "unsubscribed"
    many = {"subscriptions": [{"key": "a@b.com", "type": "EMAIL"}] * 1001}
    for body in (
        many,
        {"subscriptions": [{"key": "a@b.com", "type": "EMAIL", "status": 1}]},
        {"subscriptions": [{"key": "a@b.com", "type": "EMAIL", "extra": 1}]},
        {},
    ):
        assert world.http.put(url, json=body).status_code == 422
    assert (
        world.http.put(url.replace("main", "nope"), json={"subscriptions": []}).status_code == 404
    )


def test_a_state_written_late_never_replaces_a_newer_one(world: World) -> None:
    """Two writers (identity resolution, the Public API) may commit in either order: the
    stored state is the newest whatever the order."""
    newer = Written("EMAIL", "a@b.com", "unsubscribed", 2_000, "api", "m2")
    older = Written("EMAIL", "a@b.com", "subscribed", 1_000, "web", "m1")
    with world.engine.begin() as conn:
        write_states(conn, world.space.id, [newer])
    with world.engine.begin() as conn:
        write_states(conn, world.space.id, [older, older._replace(group_id="sgr_x")])
    state = world.state("EMAIL", "a@b.com")
    assert (state.status, state.updated_at) == ("unsubscribed", 2_000)
    assert state.groups["sgr_x"].status == "subscribed"  # no newer one: written
