"""User subscriptions (spec/unify-engage.md §18) set by identity resolution from an Identify's
``context.messaging_subscriptions``: the ``unify`` stage over the processed stream on SQLite and
PostgreSQL, the states read back per contact vector, per profile (the Profile API) and per send
setting (A-UE-62); subscription groups and their rules; the groups in ``headwater.yaml``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.engage.sql_traits.definitions import SqlTrait
from headwater.engage.sql_traits.messages import message as sql_trait_message
from headwater.errors import ConfigError, ConflictError, InvalidError, NotFoundError
from headwater.pipeline.consumer import Consumer
from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.insights import Insights, Query
from headwater.unify.profile_api import ProfileAPI
from headwater.unify.settings import IdentifierSetting, IdentitySettings
from headwater.unify.spaces import SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.unify.stage import GROUP, IdentityStage
from headwater.unify.subscription_groups import SubscriptionGroups, check_group_name
from headwater.unify.subscriptions import (
    State,
    contact_key,
    parse_channel,
    parse_status,
    profile_states,
    profile_vectors,
    render_status,
    sendable,
    state_of,
)
from tests.support.clock import Clock

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
TOKEN = "profile-token-0123456789"
PHONE = IdentitySettings().with_identifier(IdentifierSetting(type="phone"))


class Pipeline:
    """A workspace with a source ``web`` connected to the space ``main`` (phone configured),
    the processed stream and the identity stage."""

    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        self.engine, self.clock = engine, clock
        clock.now = NOW
        self.workspace = WorkspaceStore(engine, clock)
        self.workspace_id = self.workspace.ensure_workspace("acme").id
        self.web = self.workspace.create_source("web").id
        self.spaces = SpaceStore(self.workspace)
        self.space = self.spaces.create("main", sources=["web"], identity=PHONE)
        self.groups = SubscriptionGroups(self.workspace)
        self.log = EventLog(engine, clock=clock)
        self.log.register(GROUP)
        stage = IdentityStage(engine, Archive(tmp_path / "archive"), clock=clock)
        self.consumer = Consumer(self.log, GROUP, stage, owner="w1", exclusive=True)
        self.sent = 0

    def identify(
        self, subscriptions: Any, at: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """An Identify at ``at`` (received now) with ``context.messaging_subscriptions``."""
        self.sent += 1
        received = format_timestamp(datetime.fromtimestamp(self.clock(), UTC))
        stamp = format_timestamp(
            datetime.fromtimestamp(at if at is not None else self.clock(), UTC)
        )
        event: dict[str, Any] = {
            "type": "identify",
            "messageId": f"m-{self.sent}",
            "userId": f"u-{self.sent}",
            "timestamp": stamp,
            "receivedAt": received,
            "traits": {},
            "context": {"messaging_subscriptions": subscriptions},
        }
        event.update(fields)
        return event

    def send(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.log.append(
                [encode_record(self.workspace_id, self.web, event["receivedAt"], [event])]
            )
        for _ in range(100):
            if self.consumer.run_once() == 0:
                return
        raise AssertionError("the stage did not catch up")

    def state(self, channel: str, key: str) -> State:
        with self.engine.connect() as conn:
            return state_of(conn, self.space.id, channel, key)

    def violations(self) -> list[tuple[str | None, str | None, str | None]]:
        with self.engine.connect() as conn:
            found = Insights(clock=self.clock).search(
                conn, self.space.id, Query(kinds=("violation",))
            )
        return _sorted([(r.reason, r.id_type, r.id_value) for r in found])

    def graph(self) -> SqlGraph:
        return SqlGraph(self.engine, self.space.id)


def _sorted(
    found: list[tuple[str | None, str | None, str | None]],
) -> list[tuple[str | None, str | None, str | None]]:
    return sorted(found, key=lambda item: tuple(part or "" for part in item))


@pytest.fixture
def pipeline(engine: Engine, tmp_path: Path, clock: Clock) -> Pipeline:
    return Pipeline(engine, tmp_path, clock)


# --- A-UE-62 -------------------------------------------------------------------------------------


def test_a_ue_62_an_identify_unsubscribes_an_email_and_the_send_settings(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send(
        p.identify(
            [{"key": "test@example.com", "type": "EMAIL", "status": "unsubscribed"}],
            traits={"email": "test@example.com"},
        )
    )
    state = p.state("EMAIL", "test@example.com")
    assert state.status == "unsubscribed"
    assert not sendable(state.status)  # an email step's default: subscribed only
    assert sendable(state.status, "all")  # "All subscription states including unsubscribed"
    subscribed = p.identify([{"key": "test@example.com", "type": "email", "status": "SUBSCRIBED"}])
    p.send(subscribed)
    assert sendable(p.state("EMAIL", "test@example.com").status)
    # A contact nobody gave a state: no subscription status, sent only with "all".
    blank = p.state("EMAIL", "other@example.com")
    assert blank.status is None and not sendable(None) and sendable(None, "all")
    # What a messaging step reads: the profile's vectors with their states.
    p.send(p.identify([], userId="u-1", traits={"email": "second@example.com"}))
    graph = p.graph()
    profile = graph.find("users", "user_id", "u-1")
    assert profile is not None
    with p.engine.connect() as conn:
        found = profile_states(conn, p.space.id, graph, profile)
    assert [(v.channel, v.value, s.status) for v, s in found] == [
        ("EMAIL", "test@example.com", "subscribed"),
        ("EMAIL", "second@example.com", None),
    ]
    assert [v.value for v, s in found if sendable(s.status)] == ["test@example.com"]
    assert [v.value for v, s in found if sendable(s.status, "all")] == [
        "test@example.com",
        "second@example.com",
    ]


def test_sendable_per_state_and_setting() -> None:
    table = {
        (status, setting): sendable(status, setting)
        for status in ("subscribed", "unsubscribed", "did_not_subscribe", None)
        for setting in ("subscribed", "all")
    }
    assert table == {
        ("subscribed", "subscribed"): True,
        ("unsubscribed", "subscribed"): False,
        ("did_not_subscribe", "subscribed"): False,
        (None, "subscribed"): False,
        ("subscribed", "all"): True,
        ("unsubscribed", "all"): True,
        ("did_not_subscribe", "all"): True,
        (None, "all"): True,
    }


# --- spellings (§21 #16) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("subscribed", "subscribed"),
        ("SUBSCRIBED", "subscribed"),
        ("Unsubscribed", "unsubscribed"),
        ("did-not-subscribe", "did_not_subscribe"),
        ("DID_NOT_SUBSCRIBE", "did_not_subscribe"),
        ("did_not_subscribe", "did_not_subscribe"),
        ("Did-Not_Subscribe", "did_not_subscribe"),
        ("  subscribed ", "subscribed"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_statuses_are_read_in_any_spelling(given: str | None, stored: str | None) -> None:
    assert parse_status(given) == stored


@pytest.mark.parametrize("given", ["subscribe", "yes", "did not subscribe", "opted-in", 1, True])
def test_other_statuses_are_refused(given: object) -> None:
    with pytest.raises(InvalidError):
        parse_status(given)


def test_each_surface_writes_its_spelling() -> None:
    assert render_status("did_not_subscribe", "csv") == "did-not-subscribe"
    assert render_status("did_not_subscribe", "api") == "DID_NOT_SUBSCRIBE"
    assert render_status("did_not_subscribe", "sql") == "did_not_subscribe"
    assert render_status("subscribed", "api") == "SUBSCRIBED"
    assert render_status(None, "csv") is None


def test_channels_and_contacts_are_normalized() -> None:
    assert parse_channel("WhatsApp") == "WHATSAPP" and parse_channel("sms") == "SMS"
    with pytest.raises(InvalidError):
        parse_channel("IOS_PUSH")
    assert contact_key("EMAIL", " Jane@Example.COM ") == "jane@example.com"
    assert contact_key("SMS", "(123) 555-5555") == contact_key("WHATSAPP", "123.555.5555")
    assert contact_key("SMS", "+1 123 555 5555") == "+11235555555"
    assert contact_key("SMS", 1235555555) == "1235555555"
    for bad in ("jane", "jane@", "@x.com", "jane@x", "ja ne@x.com", "a@b@c.com", 5):
        with pytest.raises(InvalidError):
            contact_key("EMAIL", bad)
    for bad in ("555-01", "call me", "+1 (555) 0101 x12", "12345678901234567", ""):
        with pytest.raises(InvalidError):
            contact_key("SMS", bad)


def test_an_identify_in_segments_spellings_sets_each_channel(pipeline: Pipeline) -> None:
    """SMS and WhatsApp share a number and keep a state each; types and statuses in any case."""
    p = pipeline
    p.send(
        p.identify(
            [
                {"key": "(123) 555-5555", "type": "SMS", "status": "SUBSCRIBED"},
                {"key": "123-555-5555", "type": "WhatsApp", "status": "Did-Not-Subscribe"},
                {"key": "Test@Example.com", "type": "email", "status": "unsubscribed"},
            ],
            traits={"email": "test@example.com"},
            context={
                "externalIds": [
                    {"id": "(123) 555-5555", "type": "phone", "collection": "users",
                     "encoding": "none"}
                ],
                "messaging_subscriptions": [
                    {"key": "(123) 555-5555", "type": "SMS", "status": "SUBSCRIBED"},
                    {"key": "123-555-5555", "type": "WhatsApp", "status": "Did-Not-Subscribe"},
                    {"key": "Test@Example.com", "type": "email", "status": "unsubscribed"},
                ],
            },
        )
    )  # fmt: skip
    assert p.state("SMS", "1235555555").status == "subscribed"
    assert p.state("WHATSAPP", "(123) 555-5555").status == "did_not_subscribe"
    assert p.state("EMAIL", "test@example.com").status == "unsubscribed"
    graph = p.graph()
    profile = graph.find("users", "user_id", "u-1")
    assert profile is not None
    assert [(v.channel, v.value) for v in profile_vectors(graph, profile)] == [
        ("EMAIL", "test@example.com"),
        ("SMS", "(123) 555-5555"),
        ("WHATSAPP", "(123) 555-5555"),
    ]


# --- order -----------------------------------------------------------------------------------------


def test_the_later_event_wins_and_an_older_one_never_overwrites(pipeline: Pipeline) -> None:
    p = pipeline
    email = [{"key": "a@b.com", "type": "EMAIL", "status": "subscribed"}]
    p.send(p.identify(email, at=NOW - 60))
    assert p.state("EMAIL", "a@b.com").status == "subscribed"
    p.clock.advance(10)
    # Received later, but it happened before the state that is stored: no change.
    older = [{"key": "a@b.com", "type": "EMAIL", "status": "unsubscribed"}]
    p.send(p.identify(older, at=NOW - 120))
    kept = p.state("EMAIL", "a@b.com")
    assert (kept.status, kept.updated_at) == ("subscribed", round((NOW - 60) * 1000))
    p.send(p.identify(older, at=NOW - 30))
    assert p.state("EMAIL", "a@b.com").status == "unsubscribed"


def test_within_a_pass_the_event_time_decides_and_equal_times_go_in_order(
    pipeline: Pipeline,
) -> None:
    p = pipeline

    def item(status: str) -> list[dict[str, str]]:
        return [{"key": "a@b.com", "type": "EMAIL", "status": status}]

    for event in (
        p.identify(item("subscribed"), at=NOW - 5),
        p.identify(item("did_not_subscribe"), at=NOW - 50),  # older: ignored
        p.identify(item("unsubscribed"), at=NOW - 5),  # same time, later: wins
    ):
        p.log.append([encode_record(p.workspace_id, p.web, event["receivedAt"], [event])])
    p.send()
    assert p.state("EMAIL", "a@b.com").status == "unsubscribed"


def test_a_blank_status_changes_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    p.send(p.identify([{"key": "a@b.com", "type": "EMAIL", "status": "subscribed"}]))
    p.clock.advance(1)
    p.send(p.identify([{"key": "a@b.com", "type": "EMAIL", "status": ""}]))
    p.send(p.identify([{"key": "a@b.com", "type": "EMAIL"}]))
    assert p.state("EMAIL", "a@b.com").status == "subscribed"


def test_an_identify_may_resubscribe_an_sms_number(pipeline: Pipeline) -> None:
    """Only a CSV is held by the STOP rule: an Identify is how the user's own START reaches
    Headwater (the CSV's refusal: test_subscription_upload.py, A-UE-63)."""
    p = pipeline
    p.send(p.identify([{"key": "+15555550123", "type": "SMS", "status": "unsubscribed"}]))
    p.clock.advance(1)
    p.send(p.identify([{"key": "+1 555 555 0123", "type": "SMS", "status": "subscribed"}]))
    assert p.state("SMS", "+15555550123").status == "subscribed"
    assert p.violations() == []


def test_a_replayed_event_sets_nothing_twice(pipeline: Pipeline) -> None:
    p = pipeline
    first = p.identify([{"key": "a@b.com", "type": "EMAIL", "status": "subscribed"}])
    p.send(first)
    p.clock.advance(1)
    p.send(p.identify([{"key": "a@b.com", "type": "EMAIL", "status": "unsubscribed"}]))
    p.send(first)  # the same messageId again (a retry): identity resolution skips it
    assert p.state("EMAIL", "a@b.com").status == "unsubscribed"


# --- what cannot be applied ------------------------------------------------------------------------


def test_invalid_items_are_skipped_and_recorded_never_the_event(pipeline: Pipeline) -> None:
    p = pipeline
    p.groups.create("main", "Newsletter")
    p.send(
        p.identify(
            [
                "not an object",
                {"key": "a@b.com"},
                {"key": "a@b.com", "type": "IOS_PUSH", "status": "subscribed"},
                {"key": "not-an-email", "type": "EMAIL", "status": "subscribed"},
                {"key": "call me", "type": "SMS", "status": "subscribed"},
                {"key": "c@d.com", "type": "EMAIL", "status": "maybe"},
                {"key": "+15555550123", "type": "SMS", "status": "subscribed",
                 "groups": [{"name": "Newsletter", "status": "subscribed"}]},
                {"key": "e@f.com", "type": "EMAIL", "status": "subscribed",
                 "groups": [{"name": "Weekly", "status": "subscribed"},
                            {"name": "newsletter", "status": "yes"},
                            {"status": "subscribed"}]},
                {"key": "ok@x.com", "type": "EMAIL", "status": "subscribed"},
            ],
            traits={"plan": "pro"},
        )
    )  # fmt: skip
    assert p.violations() == _sorted(
        [
            (reasons.INVALID_SUBSCRIPTION, None, None),
            (reasons.INVALID_SUBSCRIPTION_TYPE, None, None),
            (reasons.INVALID_SUBSCRIPTION_TYPE, None, None),
            (reasons.INVALID_EMAIL, "email", "not-an-email"),
            (reasons.INVALID_PHONE, "phone", "call me"),
            (reasons.INVALID_SUBSCRIPTION_STATUS, "email", "c@d.com"),
            (reasons.INVALID_SUBSCRIPTION, "phone", "+15555550123"),
            (reasons.SUBSCRIPTION_GROUP_NOT_FOUND, "email", "e@f.com"),
            (reasons.INVALID_SUBSCRIPTION_STATUS, "email", "e@f.com"),
            (reasons.INVALID_SUBSCRIPTION, "email", "e@f.com"),
        ]
    )
    # What could be applied was: the valid items, the valid parts of the others, the event.
    assert p.state("EMAIL", "ok@x.com").status == "subscribed"
    assert p.state("SMS", "+15555550123").status == "subscribed"
    assert p.state("EMAIL", "e@f.com").status == "subscribed"
    assert p.state("EMAIL", "c@d.com").status is None
    profile = p.graph().find("users", "user_id", "u-1")
    assert profile is not None
    # The Insights filter knows the codes.
    with p.engine.connect() as conn:
        found = Insights(clock=p.clock).search(
            conn, p.space.id, Query(violation=reasons.INVALID_EMAIL)
        )
    assert [r.profile_id for r in found] == [profile]


@pytest.mark.parametrize("value", [None, "SUBSCRIBED", {"key": "a@b.com"}, 7])
def test_a_field_that_is_no_list(pipeline: Pipeline, value: object) -> None:
    p = pipeline
    p.send(p.identify(value))
    expected = [] if value is None else [(reasons.INVALID_SUBSCRIPTION, None, None)]
    assert p.violations() == expected
    assert p.graph().find("users", "user_id", "u-1") is not None


def test_other_events_and_dropped_identifies_set_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    item = [{"key": "a@b.com", "type": "EMAIL", "status": "subscribed"}]
    track = p.identify(item, type="track", event="Signed Up")
    too_many = p.identify(item, traits={f"t{n}": n for n in range(300)})  # Unify drops it
    p.send(track, too_many)
    assert p.state("EMAIL", "a@b.com").status is None


# --- groups ----------------------------------------------------------------------------------------


def test_group_states_need_the_email_subscribed(pipeline: Pipeline) -> None:
    p = pipeline
    group = p.groups.create("main", "Marketing Updates", "Promotions")

    def email(status: str | None, groups: list[dict[str, str]]) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"key": "a@b.com", "type": "EMAIL", "groups": groups}
        if status is not None:
            item["status"] = status
        return [item]

    sub = {"name": "marketing updates", "status": "subscribed"}
    p.send(p.identify(email(None, [sub])))  # no global state: refused
    assert p.state("EMAIL", "a@b.com").groups == {}
    assert p.violations() == [(reasons.GLOBAL_STATE_NOT_SUBSCRIBED, "email", "a@b.com")]
    p.clock.advance(1)
    p.send(p.identify(email("subscribed", [sub])))  # the item's own state counts first
    state = p.state("EMAIL", "a@b.com")
    assert state.status == "subscribed" and state.groups[group.id].status == "subscribed"
    p.clock.advance(1)
    # Unsubscribing from a group needs nothing; the email stays subscribed.
    p.send(p.identify(email(None, [{"name": "Marketing Updates", "status": "UNSUBSCRIBED"}])))
    state = p.state("EMAIL", "a@b.com")
    assert state.status == "subscribed" and state.groups[group.id].status == "unsubscribed"


def test_a_deleted_group_keeps_its_users_states(pipeline: Pipeline) -> None:
    p = pipeline
    group = p.groups.create("main", "Newsletter")
    item = {
        "key": "a@b.com",
        "type": "EMAIL",
        "status": "subscribed",
        "groups": [{"name": "Newsletter", "status": "subscribed"}],
    }
    p.send(p.identify([item], traits={"email": "a@b.com"}))
    p.groups.delete("main", "newsletter")
    assert p.groups.list("main") == []
    # Not shown while the group is gone; an Identify naming it is refused.
    p.clock.advance(1)
    p.send(p.identify([item]))
    assert (reasons.SUBSCRIPTION_GROUP_NOT_FOUND, "email", "a@b.com") in p.violations()
    again = p.groups.create("main", "NEWSLETTER", "back")
    assert again.id == group.id and again.name == "NEWSLETTER"
    assert p.state("EMAIL", "a@b.com").groups[group.id].status == "subscribed"
    # A rename keeps them too.
    renamed = p.groups.update("main", "newsletter", name="Weekly news")
    assert renamed.id == group.id
    assert p.state("EMAIL", "a@b.com").groups[group.id].status == "subscribed"


def test_group_limits(pipeline: Pipeline) -> None:
    groups, main = pipeline.groups, "main"
    check_group_name("x" * 75)
    check_group_name("Marketing updates 2025")
    check_group_name("Ñoño Köln news")  # accents off Segment's list are fine
    for bad in (
        "x" * 76,
        " leading",
        "trailing ",
        "",
        "   ",
        "under_score",
        "dash-ed",
        "dot.ted",
        "what?",
        "a/b",
        "café",
        "CAFÉ",
        "tab\there",
        7,
    ):
        with pytest.raises(InvalidError):
            check_group_name(bad)
    with pytest.raises(InvalidError):
        groups.create(main, "Long", "d" * 501)
    groups.create(main, "Long", "d" * 500)
    with pytest.raises(ConflictError):
        groups.create(main, "LONG")  # names are unique regardless of case
    for n in range(24):
        groups.create(main, f"Group {n}")
    with pytest.raises(ConflictError):
        groups.create(main, "The 26th")
    groups.delete(main, "Group 0")
    groups.create(main, "The 26th")  # a deleted group frees its place
    with pytest.raises(ConflictError):
        groups.update(main, "The 26th", name="long")
    with pytest.raises(NotFoundError):
        groups.update(main, "Group 0", description="gone")
    with pytest.raises(NotFoundError):
        groups.create("nope", "Newsletter")
    # Renaming onto a deleted group's name replaces that group (and forgets its states).
    groups.update(main, "The 26th", name="Group 0")
    assert [g.name for g in groups.list(main)].count("Group 0") == 1


# --- the Profile API -------------------------------------------------------------------------------


def _profile_api(p: Pipeline, path: str) -> httpx.Response:
    p.spaces.create_access_token("main", "site", TOKEN)
    app = ProfileAPI(p.spaces, p.engine, lambda space: SqlGraph(p.engine, space.id))

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get(path, auth=(TOKEN, ""))

    return asyncio.run(send())


def test_the_profile_api_shows_a_profiles_vectors_and_states(pipeline: Pipeline) -> None:
    p = pipeline
    group = p.groups.create("main", "Newsletter")
    p.groups.create("main", "Unused")
    p.send(
        p.identify(
            [
                {"key": "Jane@x.com", "type": "EMAIL", "status": "subscribed",
                 "groups": [{"name": "newsletter", "status": "did_not_subscribe"}]},
                {"key": "+15555550123", "type": "SMS", "status": "unsubscribed"},
            ],
            userId="jane",
            traits={"email": "Jane@x.com", "phone": "+1 555-555-0123"},
        )
    )  # fmt: skip
    answer = _profile_api(
        p, f"/v1/spaces/{p.space.id}/collections/users/profiles/user_id:jane/subscriptions"
    )
    assert answer.status_code == 200, answer.text
    at = format_timestamp(datetime.fromtimestamp(NOW, UTC))
    assert answer.json() == {
        "data": [
            {
                "key": "Jane@x.com",
                "type": "EMAIL",
                "status": "SUBSCRIBED",
                "updated_at": at,
                "groups": [
                    {
                        "id": group.id,
                        "name": "Newsletter",
                        "status": "DID_NOT_SUBSCRIBE",
                        "updated_at": at,
                    }
                ],
            },
            {
                "key": "+1 555-555-0123",
                "type": "SMS",
                "status": "UNSUBSCRIBED",
                "updated_at": at,
                "groups": [],
            },
            {
                "key": "+1 555-555-0123",
                "type": "WHATSAPP",
                "status": None,
                "updated_at": None,
                "groups": [],
            },
        ],
        "cursor": {
            "url": f"/v1/spaces/{p.space.id}/collections/users/profiles/"
            f"{p.graph().find('users', 'user_id', 'jane')}/subscriptions",
            "has_more": False,
            "next": "",
        },
    }


def test_the_profile_api_pages_subscriptions(pipeline: Pipeline) -> None:
    p = pipeline
    emails = [f"e{n}@x.com" for n in range(3)]
    for email in emails:
        p.send(p.identify([], userId="jane", traits={"email": email}))
    base = f"/v1/spaces/{p.space.id}/collections/users/profiles/user_id:jane/subscriptions"
    first = _profile_api(p, base + "?limit=2").json()
    assert [v["key"] for v in first["data"]] == emails[:2]
    assert first["cursor"]["has_more"] is True
    app = ProfileAPI(p.spaces, p.engine, lambda space: SqlGraph(p.engine, space.id))

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get(path, auth=(TOKEN, ""))

    rest = asyncio.run(get(base + f"?limit=2&next={first['cursor']['next']}")).json()
    assert [v["key"] for v in rest["data"]] == emails[2:] and rest["cursor"]["has_more"] is False
    assert asyncio.run(get(base + "?next=bogus")).status_code == 400
    assert asyncio.run(get(base + "?limit=101")).status_code == 400
    accounts = f"/v1/spaces/{p.space.id}/collections/accounts/profiles/group_id:g1/subscriptions"
    assert asyncio.run(get(accounts)).status_code == 404


# --- headwater.yaml --------------------------------------------------------------------------------

FILE = """
workspace: acme
sources:
  - name: web
    write_key: WK_web_0123456789
spaces:
  - name: main
    sources: [web]
    subscription_groups:
      - name: Newsletter
        description: The weekly letter
      - name: Marketing updates
"""


def test_groups_in_the_file_apply_and_export_back(engine: Engine, clock: Clock) -> None:
    store = WorkspaceStore(engine, clock=clock)

    def planned(text: str) -> str:
        return plan(store, parse_config(read_yaml(text))).render()

    def run(text: str) -> None:
        apply(store, plan(store, parse_config(read_yaml(text))))

    shown = planned(FILE)
    assert "+ space main: subscription group Newsletter" in shown
    assert "+ space main: subscription group Marketing updates" in shown
    run(FILE)
    groups = SubscriptionGroups(store)
    assert [(g.name, g.description) for g in groups.list("main")] == [
        ("Marketing updates", ""),
        ("Newsletter", "The weekly letter"),
    ]
    exported = export_config(store)
    assert "subscription_groups:" in exported
    assert planned(exported) == "No changes."
    assert planned(FILE) == "No changes."
    # No list: the groups stay as they are.
    assert planned(FILE.split("    subscription_groups:")[0]) == "No changes."
    changed = (
        FILE.replace("The weekly letter", "Every Monday")
        .replace("      - name: Marketing updates\n", "      - name: Offers\n")
        .replace("name: Newsletter", "name: newsletter")
    )
    shown = planned(changed)
    assert "- space main: subscription group Marketing updates (its users' states are kept)" in (
        shown
    )
    assert "+ space main: subscription group Offers" in shown
    assert (
        "~ space main: subscription group Newsletter: name Newsletter → newsletter, description "
        "'The weekly letter' → 'Every Monday'" in shown
    )
    newsletter = groups.require("main", "Newsletter").id
    run(changed)
    assert [(g.name, g.description) for g in groups.list("main")] == [
        ("newsletter", "Every Monday"),
        ("Offers", ""),
    ]
    assert groups.require("main", "NEWSLETTER").id == newsletter
    assert planned(export_config(store)) == "No changes."


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ("[{name: News}, {name: NEWS}]", "subscription_groups[1]: the name 'NEWS' is listed twice"),
        ("[{name: ' News'}]", "spaces aren't allowed at the beginning or end"),
        ("[{name: a_b}]", "aren't supported in a group name: _"),
        ("[{name: x, description: " + "d" * 501 + "}]", "at most 500 characters"),
        ("[{name: x, extra: 1}]", "extra"),
        ("[" + ", ".join(f"{{name: g{n}}}" for n in range(26)) + "]", "at most 25 groups"),
    ],
)
def test_a_file_with_bad_groups_is_refused(groups: str, problem: str) -> None:
    text = f"workspace: acme\nspaces:\n  - name: main\n    subscription_groups: {groups}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(read_yaml(text))
    assert problem in str(refused.value)


def test_deleting_the_space_deletes_its_subscriptions(pipeline: Pipeline) -> None:
    p = pipeline
    p.groups.create("main", "Newsletter")
    item = {
        "key": "a@b.com",
        "type": "EMAIL",
        "status": "subscribed",
        "groups": [{"name": "Newsletter", "status": "subscribed"}],
    }
    p.send(p.identify([item]))
    tables = (
        schema.unify_subscriptions,
        schema.unify_group_subscriptions,
        schema.unify_subscription_groups,
    )

    def rows() -> list[int]:
        with p.engine.connect() as conn:
            return [
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables
            ]

    assert rows() == [1, 1, 1]
    p.spaces.delete("main")
    assert rows() == [0, 0, 0]


def test_subscriptions_with_sql_are_applied_from_the_engage_source(pipeline: Pipeline) -> None:
    """§18.5: a SQL trait's Identify (Engage's source, as its outbox appends it) sets the
    states its row gives, as any Identify does."""
    p = pipeline
    trait = SqlTrait(
        "tra_x", p.space.id, "prefs", "Prefs", "wh", "select 1", "users", 12, "success",
        None, None, None, None, 0, 0,
    )  # fmt: skip
    stamp = format_timestamp(datetime.fromtimestamp(p.clock(), UTC))
    event = sql_trait_message(
        trait,
        run_id=1,
        id_type="user_id",
        identifier="u1",
        traits={"email": "ada@example.com"},
        user_id=None,
        timestamp=stamp,
        destinations=[],
        subscriptions=[("EMAIL", "ada@example.com", "UNSUBSCRIBED")],
    )
    engage = p.spaces.engage_source(p.space.id).id
    p.log.append([encode_record(p.workspace_id, engage, stamp, [{**event, "receivedAt": stamp}])])
    for _ in range(100):
        if p.consumer.run_once() == 0:
            break
    assert p.state("EMAIL", "ada@example.com").status == "unsubscribed"
