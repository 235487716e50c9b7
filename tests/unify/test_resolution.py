"""Segment's flat matching logic and merge algorithm (§2.4–§2.6): A-UE-1, A-UE-8,
A-UE-10, A-UE-12, A-UE-13, A-UE-14, A-UE-15, A-UE-16, A-UE-18, A-UE-19, A-UE-21, and idempotence
on messageId."""

from __future__ import annotations

import re

import pytest

from headwater import reasons
from headwater.unify.graph import AddIdentifier, CreateProfile, LinkProfiles, MergeProfiles
from headwater.unify.settings import (
    DEFAULT_IDENTIFIERS,
    SUGGESTED_BLOCKED,
    IdentifierSetting,
    IdentitySettings,
)
from tests.support.unify import DAY, Space

PROFILE_ID = re.compile(r"use_[0-9A-Za-z]{27}")


def _settings(
    *changes: IdentifierSetting, max_merges: int = 100, max_mappings: int = 1000
) -> IdentitySettings:
    settings = IdentitySettings(max_merges=max_merges, max_mappings=max_mappings)
    for change in changes:
        settings = settings.with_identifier(change)
    return settings


def test_a1_a_first_event_creates_a_profile() -> None:
    """A-UE-1: the track from an iPhone creates one profile, ``use_`` + 27 base62 characters,
    holding anonymous_id and ios.id with the event's source, time and messageId."""
    space = Space(seed=None)
    done = space.send(
        event="App Opened",
        anonymousId="anon_123",
        context={"device": {"id": "ios_abc123", "type": "ios"}},
        source_id="ios-app",
    )
    assert done.status == "resolved" and done.violations == ()
    assert done.user is not None and PROFILE_ID.fullmatch(done.user)
    assert space.graph.profiles() == [done.user]
    assert space.ids(done.user) == {"anonymous_id": ["anon_123"], "ios.id": ["ios_abc123"]}
    rows = space.graph.identifiers(done.user)
    assert {(r.source_id, r.message_id, r.first_seen) for r in rows} == {
        ("ios-app", "msg-1", space.at)
    }
    assert [type(c) for c in done.changes] == [CreateProfile, AddIdentifier, AddIdentifier]


def test_a21_a_later_user_id_joins_the_anonymous_profile() -> None:
    """A-UE-21: page(anon_123) creates S; a later track with userId use_123 and the same
    anonymousId adds user_id use_123 to S."""
    space = Space()
    first = space.send("page", name="Pricing", anonymousId="anon_123")
    again = space.send("track", anonymousId="anon_123")
    assert again.user == first.user and again.changes == ()
    signup = space.send("track", event="User Signup", userId="use_123", anonymousId="anon_123")
    assert signup.user == first.user
    assert space.ids(first.user) == {"anonymous_id": ["anon_123"], "user_id": ["use_123"]}
    assert space.graph.profiles() == [first.user]


def test_a10_no_configured_identifier_leaves_the_event_unresolved() -> None:
    """A-UE-10: an event with no configured identifier → not resolved, ``No matching identifiers
    on event``, nothing stored."""
    only_email = IdentitySettings(
        identifiers=tuple(s for s in DEFAULT_IDENTIFIERS if s.type == "email")
    )
    space = Space(only_email)
    done = space.send(userId="u1", anonymousId="a1")
    assert done.status == "unresolved"
    assert done.reason == reasons.NO_MATCHING_IDENTIFIERS
    assert done.user is None and done.changes == ()
    assert space.graph.profiles() == []


def test_a9_a10_blocked_values_alone_leave_the_event_unresolved() -> None:
    """A-UE-9, A-UE-10: every value blocked → ``ID value blocked`` for each, and the event is not
    resolved; with another identifier it resolves on that one."""
    settings = _settings(
        IdentifierSetting(type="user_id", limit=1, priority=1, blocked=SUGGESTED_BLOCKED),
        IdentifierSetting(type="anonymous_id", blocked=SUGGESTED_BLOCKED),
    )
    space = Space(settings)
    done = space.send(userId="null", anonymousId="0")
    assert done.status == "unresolved" and done.reason == reasons.NO_MATCHING_IDENTIFIERS
    assert [(v.reason, v.type, v.value) for v in done.violations] == [
        (reasons.ID_VALUE_BLOCKED, "user_id", "null"),
        (reasons.ID_VALUE_BLOCKED, "anonymous_id", "0"),
    ]
    kept = space.send(userId="anonymous", anonymousId="a1")
    assert kept.status == "resolved"
    assert space.ids(kept.user) == {"anonymous_id": ["a1"]}
    assert [(v.reason, v.value, v.profile_id) for v in kept.violations] == [
        (reasons.ID_VALUE_BLOCKED, "anonymous", kept.user)
    ]


def test_a13_priority_demotes_the_lower_identifier() -> None:
    """A-UE-13: user_id 1/p1, email 5/p2, anonymous_id 5/p3. P{user_id abc123, email
    jane@example1.com}; {user_id abc456, email jane@example1.com} → new Q{user_id abc456}, P
    unchanged, not merged, a violation for the demoted email."""
    settings = _settings(
        IdentifierSetting(type="user_id", limit=1, priority=1),
        IdentifierSetting(type="email", limit=5, priority=2),
        IdentifierSetting(type="anonymous_id", limit=5, priority=3),
    )
    space = Space(settings)
    p = space.send("identify", userId="abc123", traits={"email": "jane@example1.com"}).user
    before = space.graph.snapshot()["profiles"][p]
    done = space.send("identify", userId="abc456", traits={"email": "jane@example1.com"})
    q = done.user
    assert q != p
    assert space.ids(q) == {"user_id": ["abc456"]}
    assert space.graph.snapshot()["profiles"][p] == before
    assert space.graph.profiles() == [p, q]
    assert space.graph.merges == []
    assert [(v.reason, v.type, v.value, v.profile_id) for v in done.violations] == [
        (reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED, "email", "jane@example1.com", q)
    ]


def test_a14_merge_protection_keeps_two_user_ids_apart() -> None:
    """A-UE-14: {a1, u1}; {a1} (logout); {a1, u2} → P1{a1, u1} (the logout resolves to P1) and
    P2{u2}; u1 and u2 never on one profile."""
    space = Space()
    p1 = space.send(event="User Signup", anonymousId="a1", userId="u1").user
    logout = space.send(event="User Logout", anonymousId="a1")
    assert logout.user == p1
    done = space.send(event="User Signup", anonymousId="a1", userId="u2")
    p2 = done.user
    assert p2 != p1
    assert space.ids(p1) == {"anonymous_id": ["a1"], "user_id": ["u1"]}
    assert space.ids(p2) == {"user_id": ["u2"]}
    assert [(v.reason, v.type, v.value) for v in done.violations] == [
        (reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED, "anonymous_id", "a1")
    ]
    # The next anonymous event on that browser still belongs to u1's profile.
    assert space.send(anonymousId="a1").user == p1


def test_a14_a_merge_of_two_known_users_is_refused_whatever_links_them() -> None:
    """Merge protection also holds when the two user_ids are not on the event: P1{u1, a1},
    P2{u2, e}; {a1, e} would put u1 and u2 together, so a1 is demoted and the event resolves
    to P2 by email."""
    space = Space()
    p1 = space.send(userId="u1", anonymousId="a1").user
    p2 = space.send("identify", userId="u2", traits={"email": "e@x.com"}).user
    done = space.send("identify", anonymousId="a1", traits={"email": "e@x.com"})
    assert done.user == p2
    assert space.graph.merges == []
    assert space.ids(p1) == {"user_id": ["u1"], "anonymous_id": ["a1"]}
    assert space.ids(p2) == {"user_id": ["u2"], "email": ["e@x.com"]}


def test_a15_a_value_over_its_limit_is_not_added() -> None:
    """A-UE-15: default limits; a profile with 5 anonymous_ids; {user_id u1, anonymous_id a6} →
    the profile, a6 not added, ``Identifier value limit exceeded``."""
    space = Space()
    p = space.send(userId="u1", anonymousId="a1").user
    for n in range(2, 6):
        assert space.send(userId="u1", anonymousId=f"a{n}").user == p
    assert len(space.ids(p)["anonymous_id"]) == 5
    done = space.send(userId="u1", anonymousId="a6")
    assert done.user == p and done.changes == ()
    assert [(v.reason, v.type, v.value, v.profile_id) for v in done.violations] == [
        (reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED, "anonymous_id", "a6", p)
    ]
    assert space.ids(p)["anonymous_id"] == ["a1", "a2", "a3", "a4", "a5"]
    assert space.profile_of("anonymous_id", "a6") is None


def test_a16_a_limit_per_week_slides() -> None:
    """A-UE-16: anonymous_id 5 weekly: five new values in a week are taken, a sixth within the
    same 7 days is not (``Identifier value time limit exceeded``); once the window has slid
    past the first ones, a new value is taken again."""
    space = Space(_settings(IdentifierSetting(type="anonymous_id", limit=5, period="weekly")))
    p = space.send(userId="u1", anonymousId="a0").user
    for n in range(1, 5):
        space.later(DAY)
        assert space.send(userId="u1", anonymousId=f"a{n}").changes != ()
    space.later(DAY)  # day 5: a0…a4 are all within the last 7 days
    sixth = space.send(userId="u1", anonymousId="a5")
    assert sixth.user == p and sixth.changes == ()
    assert [(v.reason, v.value) for v in sixth.violations] == [
        (reasons.IDENTIFIER_VALUE_TIME_LIMIT_EXCEEDED, "a5")
    ]
    space.later(2 * DAY)  # day 7: a0 was first seen 7 days ago, outside the window
    done = space.send(userId="u1", anonymousId="a5")
    assert done.violations == () and done.user == p
    assert space.ids(p)["anonymous_id"] == ["a0", "a1", "a2", "a3", "a4", "a5"]
    taken = space.send(userId="u1", anonymousId="a6")  # a1…a5 within the week now
    assert [v.reason for v in taken.violations] == [reasons.IDENTIFIER_VALUE_TIME_LIMIT_EXCEEDED]


def test_a16_a_limit_ever_does_not_slide() -> None:
    space = Space()
    p = space.send(userId="u1", anonymousId="a0").user
    for n in range(1, 5):
        space.send(userId="u1", anonymousId=f"a{n}")
    space.later(400 * DAY)
    done = space.send(userId="u1", anonymousId="a5")
    assert done.user == p
    assert [v.reason for v in done.violations] == [reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED]


def test_a18_two_anonymous_profiles_merge_by_email_into_the_older() -> None:
    """A-UE-18: P1{a1}, P2{a2}; {a1, email e} then {a2, email e} → P2 merged into P1 (P1
    canonical); a lookup by anonymous_id a2 gives P1 with both anonymous ids and the email."""
    space = Space()
    p1 = space.send("page", anonymousId="a1").user
    p2 = space.send("page", anonymousId="a2").user
    assert p1 != p2
    space.send("identify", anonymousId="a1", traits={"email": "e@x.com"})
    done = space.send("identify", anonymousId="a2", traits={"email": "e@x.com"})
    assert done.user == p1 and done.violations == ()
    assert done.changes == (
        MergeProfiles(p2, p1, "users", space.at, "src", "msg-4", "identify"),  # type: ignore[arg-type]
    )
    assert space.profile_of("anonymous_id", "a2") == p1
    assert space.ids(p1) == {"anonymous_id": ["a1", "a2"], "email": ["e@x.com"]}
    assert space.graph.canonical(p2) == p1  # type: ignore[arg-type]
    assert space.graph.profiles() == [p1]
    assert space.graph.profile(p1).merges == 1  # type: ignore[arg-type]


def test_several_profiles_merge_into_the_oldest_and_lineage_stays_flat() -> None:
    """Three matched profiles merge into the oldest, whichever identifier matched it; a
    profile merged into one that is merged later points at the final one (one hop)."""
    space = Space(_settings(IdentifierSetting(type="anonymous_id", limit=50)))
    oldest = space.send(anonymousId="a1").user
    middle = space.send(anonymousId="a2").user
    youngest = space.send(anonymousId="a3").user
    joined = space.send(anonymousId="a4").user
    space.send(anonymousId="a3", context={"traits": {"email": "x@y.z"}})
    space.send(anonymousId="a4", context={"traits": {"email": "x@y.z"}})  # a4's into a3's
    assert space.graph.canonical(joined) == youngest  # type: ignore[arg-type]
    done = space.send(
        userId="u1", anonymousId="a2", context={"traits": {"email": "x@y.z", "ip": "1"}}
    )
    assert done.status == "resolved"
    space.send(anonymousId="a1", userId="u1")
    assert space.graph.profiles() == [oldest]
    assert {space.graph.canonical(p) for p in (middle, youngest, joined)} == {oldest}  # type: ignore[arg-type]
    assert space.graph.profile(oldest).merges == 3  # type: ignore[arg-type]
    assert sorted(space.ids(oldest)["anonymous_id"]) == ["a1", "a2", "a3", "a4"]


def test_a12_a_profile_at_1000_values_takes_no_more_but_still_resolves() -> None:
    """A-UE-12: a profile holding 1,000 identifier values gets no new mapping
    (``Identifier mapping limit exceeded``), and the event still resolves to it; a profile
    that would pass 1,000 values by a merge is not merged."""
    space = Space(_settings(IdentifierSetting(type="anonymous_id", limit=5000)))
    p = space.send(userId="u1", anonymousId="a0").user
    for n in range(1, 999):
        space.send(userId="u1", anonymousId=f"a{n}")
    assert space.graph.profile(p).mappings == 1000  # type: ignore[arg-type]
    done = space.send(userId="u1", anonymousId="a999", context={"traits": {"email": "e@x.com"}})
    assert done.user == p and done.changes == ()
    assert [(v.reason, v.type) for v in done.violations] == [
        (reasons.IDENTIFIER_MAPPING_LIMIT_EXCEEDED, "email"),
        (reasons.IDENTIFIER_MAPPING_LIMIT_EXCEEDED, "anonymous_id"),
    ]
    other = space.send(anonymousId="b1").user
    refused = space.send(userId="u1", anonymousId="b1")
    assert refused.user == p and refused.changes == ()
    assert [(v.reason, v.value, v.profile_id) for v in refused.violations] == [
        (reasons.IDENTIFIER_MAPPING_LIMIT_EXCEEDED, "b1", p)
    ]
    assert space.graph.profiles() == [p, other]


def test_a12_a_profile_after_100_merges_merges_no_further() -> None:
    """A-UE-12: after 100 merges a profile merges no further (``Profile merge limit exceeded``);
    the event resolves to it and its new identifiers are still added."""
    space = Space(_settings(IdentifierSetting(type="anonymous_id", limit=5000)))
    p = space.send("identify", userId="u1").user
    for n in range(101):
        space.send("page", anonymousId=f"a{n}")
    for n in range(100):
        assert space.send(userId="u1", anonymousId=f"a{n}").changes[0].from_id != p  # type: ignore[union-attr]
    assert space.graph.profile(p).merges == 100  # type: ignore[arg-type]
    stuck = space.profile_of("anonymous_id", "a100")
    done = space.send(userId="u1", anonymousId="a100", context={"traits": {"email": "e@x.com"}})
    assert done.user == p
    assert [(v.reason, v.value) for v in done.violations] == [
        (reasons.PROFILE_MERGE_LIMIT_EXCEEDED, "a100")
    ]
    assert [type(c) for c in done.changes] == [AddIdentifier]
    assert space.ids(p)["email"] == ["e@x.com"]
    assert space.profile_of("anonymous_id", "a100") == stuck != p
    assert len(space.graph.profiles()) == 2


def test_a12_merged_profiles_bring_their_merge_counts() -> None:
    """A profile's merge count includes the merges of the profiles merged into it."""
    space = Space(_settings(IdentifierSetting(type="anonymous_id", limit=50), max_merges=1))
    a = space.send(anonymousId="a1").user
    space.send(anonymousId="a2")
    space.send(anonymousId="a3")
    assert space.send(anonymousId="a2", context={"traits": {"email": "e"}}).violations == ()
    space.send(anonymousId="a3", context={"traits": {"email": "f"}})
    space.send(anonymousId="a2", context={"traits": {"email": "f"}})  # a3's into a2's: 1 merge
    third = space.send(anonymousId="a1", context={"traits": {"email": "e"}})
    assert third.user == a
    assert [v.reason for v in third.violations] == [reasons.PROFILE_MERGE_LIMIT_EXCEEDED]


def test_a19_tightened_settings_apply_to_new_events_only() -> None:
    """A-UE-19: a lowered limit leaves existing profiles as they are; an event that adds nothing
    resolves as before, and only new values are held to the new rule."""
    space = Space()
    p = space.send("identify", userId="u1", traits={"email": "e1"}).user
    space.send("identify", userId="u1", traits={"email": "e2"})
    space.send("identify", userId="u1", traits={"email": "e3"})
    before = space.graph.snapshot()
    space.resolver.settings = _settings(IdentifierSetting(type="email", limit=1, priority=2))
    assert space.graph.snapshot() == before
    same = space.send("identify", userId="u1", traits={"email": "e2"})
    assert (same.user, same.changes, same.violations) == (p, (), ())
    more = space.send("identify", userId="u1", traits={"email": "e4"})
    assert more.user == p and more.changes == ()
    assert [(v.reason, v.value) for v in more.violations] == [
        (reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED, "e4")
    ]
    fresh = space.send("identify", userId="u2", traits={"email": "e5"}, properties={"email": "e6"})
    assert space.ids(fresh.user) == {"user_id": ["u2"], "email": ["e5"]}
    assert space.ids(p)["email"] == ["e1", "e2", "e3"]
    space.resolver.settings = IdentitySettings()
    assert space.send("identify", userId="u1", traits={"email": "e4"}).changes != ()


def test_a8_a_group_call_makes_an_account_and_links_the_user() -> None:
    """A-UE-8: group ADGCJE3Y8H → an account profile holding group_id (collection accounts) and a
    link from the user's profile; the link moves with the user's profile when it merges."""
    space = Space()
    done = space.send("group", userId="u1", groupId="ADGCJE3Y8H", traits={"name": "Initech"})
    user, account = done.user, done.account
    assert user is not None and account is not None and user != account
    assert space.graph.profiles("accounts") == [account]
    assert space.ids(account) == {"group_id": ["ADGCJE3Y8H"]}
    assert space.profile_of("group_id", "ADGCJE3Y8H", "accounts") == account
    assert space.profile_of("group_id", "ADGCJE3Y8H", "users") is None
    assert space.graph.links(user) == [account] and space.graph.links(account) == [user]
    assert isinstance(done.changes[-1], LinkProfiles)
    again = space.send("group", userId="u1", groupId="ADGCJE3Y8H")
    assert (again.user, again.account, again.changes) == (user, account, ())
    anonymous = space.send("page", anonymousId="a9").user
    merged = space.send("identify", userId="u1", anonymousId="a9")
    assert merged.user == user and space.graph.canonical(anonymous) == user  # type: ignore[arg-type]
    second = space.send("group", anonymousId="a9", groupId="G2").account
    assert space.graph.links(user) == [account, second]


def test_a8_a_link_made_through_a_merge_is_not_made_twice() -> None:
    """The merged profile brings its link to the account: no second link is made."""
    space = Space()
    oldest = space.send("page", anonymousId="a0").user
    email = {"traits": {"email": "e"}}
    linked = space.send("group", anonymousId="a1", groupId="G", context=email)
    merge = space.send("group", anonymousId="a0", groupId="G", context=email)
    assert oldest is not None and linked.user is not None and linked.account is not None
    assert merge.user == oldest
    assert merge.changes == (
        MergeProfiles(linked.user, oldest, "users", space.at, "src", "msg-3", "group"),
    )
    assert space.graph.links(oldest) == [linked.account]


def test_a8_a_group_call_whose_user_ids_are_blocked_still_makes_its_account() -> None:
    settings = _settings(
        IdentifierSetting(type="user_id", limit=1, priority=1, blocked=SUGGESTED_BLOCKED),
        IdentifierSetting(type="anonymous_id", blocked=SUGGESTED_BLOCKED),
    )
    space = Space(settings)
    done = space.send("group", userId="null", groupId="G")
    assert done.status == "unresolved" and done.account is not None
    assert space.graph.links(done.account) == []


def test_the_same_message_id_twice_changes_nothing() -> None:
    """Idempotence on messageId: the second time is a ``duplicate`` and the graph is as it
    was, even after other events."""
    space = Space()
    event = space.event(userId="u1", anonymousId="a1")
    first = space.resolve(event)
    snapshot = space.graph.snapshot()
    assert space.resolve(dict(event)).status == "duplicate"
    assert space.graph.snapshot() == snapshot
    space.send(userId="u1", anonymousId="a2")
    assert space.resolve(event).status == "duplicate"
    assert first.status == "resolved"


def test_an_unresolved_or_violating_event_is_remembered_too() -> None:
    """A replay must not report a violation twice."""
    space = Space()
    space.send(userId="u1", anonymousId="a1")
    event = space.event(userId="u2", anonymousId="a1")
    assert space.resolve(event).violations
    assert space.resolve(event) == (event["messageId"], "duplicate", None, None, None, (), (), 0)


def test_dropped_events_change_nothing() -> None:
    space = Space()
    done = space.send(userId="u1", messageId="m" * 101)
    assert (done.status, done.reason) == ("dropped", reasons.UNIFY_MESSAGE_ID_TOO_LONG)
    assert space.graph.snapshot()["profiles"] == {}
    assert space.graph.applied("m" * 101) is False


def test_plan_reads_only() -> None:
    space = Space()
    space.send(userId="u1", anonymousId="a1")
    snapshot = space.graph.snapshot()
    planned = space.resolver.plan(space.event(userId="u2", anonymousId="a2"), "src")
    assert planned.changes and space.graph.snapshot() == snapshot


def test_the_events_time_is_its_timestamp_then_received_at() -> None:
    space = Space()
    event = space.event(userId="u1")
    event["timestamp"] = "2024-06-01T00:00:00.000Z"
    done = space.resolve(event)
    assert space.graph.identifiers(done.user)[0].first_seen == 1_717_200_000.0  # type: ignore[arg-type]
    late = space.event(userId="u2")
    del late["timestamp"]
    late["receivedAt"] = "2024-06-02T00:00:00.000Z"
    done = space.resolve(late)
    assert space.graph.identifiers(done.user)[0].first_seen == 1_717_286_400.0  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [None, 7])
def test_replaying_a_sequence_gives_the_same_graph(seed: int | None) -> None:
    """A replayed range into a fresh graph gives the same graph (the same ids with the same
    seed; the same shape with fresh random ids), and into the same graph changes nothing."""
    space = Space(seed=seed)
    space.send(anonymousId="a1")
    space.send(anonymousId="a2")
    space.send("identify", anonymousId="a1", userId="u1", traits={"email": "e"})
    space.send("identify", anonymousId="a2", traits={"email": "e"})
    space.send("identify", anonymousId="a2", userId="u2")
    space.send("group", userId="u1", groupId="g1")
    again = Space(seed=seed)
    for event, source in space.history:
        again.resolve(event, source)
    assert again.graph.shape() == space.graph.shape()
    if seed is not None:
        assert again.graph.snapshot() == space.graph.snapshot()
    snapshot = space.graph.snapshot()
    for event, source in space.history:
        assert space.resolver.resolve(event, source).status == "duplicate"
    assert space.graph.snapshot() == snapshot


def test_of_one_type_a_new_value_is_demoted_before_a_known_one() -> None:
    """Priority is per type; among one type's values on an event the new one goes first, so
    no violation names a value the profile already holds."""
    space = Space(_settings(IdentifierSetting(type="phone", limit=1)))
    p = space.send(userId="u1", properties={"phone": "p1"}).user
    phones = [
        {"id": "p2", "type": "phone", "collection": "users", "encoding": "none"},
        {"id": "p1", "type": "phone", "collection": "users", "encoding": "none"},
    ]
    done = space.send(userId="u1", context={"externalIds": phones})
    assert done.user == p and done.changes == ()
    assert [(v.reason, v.value) for v in done.violations] == [
        (reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED, "p2")
    ]
