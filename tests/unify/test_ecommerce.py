"""The eCommerce walk-through of §2.8 (``/docs/unify/identity-resolution/ecommerce-example/``):
A-UE-20.

The events are the page's JSON (its trailing commas removed), with the one change the digest
asks for: step 3 carries ``traits.email``, which the page's text and screenshot show but its
JSON lacks (§21 #10).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from headwater.timestamps import format_timestamp
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.resolution import Resolver

IOS = '"context":{"app":"SegKicks","device":{"id":"ios_abc123","type":"ios"}}'
STEPS: list[tuple[str, str]] = [
    ("segkicks", '{"anonymousId":"anon_123",' + IOS + ',"event":"App Opened","type":"track"}'),
    ("segkicks", '{"anonymousId":"anon_123",' + IOS + ',"event":"ShoeA Clicked","type":"track"}'),
    ("segkicks", '{"anonymousId":"anon_123",' + IOS + ',"event":"ShoeB Clicked","type":"track"}'),
    ("segkicks", '{"anonymousId":"anon_123",' + IOS + ',"event":"ShoeC Clicked","type":"track"}'),
    ("segkicks", '{"anonymousId":"anon_123",' + IOS + ',"userId":"abc123def","type":"identify"}'),
    (
        "segkicks",
        '{"anonymousId":"anon_456","context":{"app":"SegKicks","device":'
        '{"id":"and_1a2b3c4d","type":"android"}},"type":"identify","userId":"abc123def"}',
    ),
    (
        "segruns",
        '{"anonymousId":"anon_789","context":{"app":"SegRuns","device":'
        '{"id":"and_1a2b3c4d","type":"android"}},"type":"identify","userId":"abc123def"}',
    ),
]
EMAIL_STEP = 4  # the identify of step 3
START = datetime(2025, 2, 3, 9, 0, tzinfo=UTC).timestamp()


def _events() -> list[tuple[dict[str, Any], str, float]]:
    events = []
    for n, (source, text) in enumerate(STEPS):
        event = json.loads(text)
        at = START + n * 3600
        event["messageId"] = f"ecommerce-{n}"
        event["timestamp"] = format_timestamp(datetime.fromtimestamp(at, UTC))
        if n == EMAIL_STEP:
            event["traits"] = {"email": "jane.doe@gmail.com"}
        events.append((event, source, at))
    return events


def test_a20_janes_journey_is_one_profile() -> None:
    """A-UE-20: one profile throughout; identities anonymous_id anon_123, anon_456, anon_789,
    ios.id ios_abc123, android.id and_1a2b3c4d, user_id abc123def and email
    jane.doe@gmail.com, each with its step's source and time; no violations under the
    default settings."""
    graph = MemoryGraph()
    resolver = Resolver(graph, ids=ProfileIds(3))
    results = [resolver.resolve(event, source) for event, source, _ in _events()]
    assert {r.status for r in results} == {"resolved"}
    assert [v for r in results for v in r.violations] == []
    jane = results[0].user
    assert jane is not None and {r.user for r in results} == {jane}
    assert graph.profiles() == [jane]
    assert graph.merges == []
    assert graph.identities(jane) == {
        "anonymous_id": ["anon_123", "anon_456", "anon_789"],
        "ios.id": ["ios_abc123"],
        "user_id": ["abc123def"],
        "email": ["jane.doe@gmail.com"],
        "android.id": ["and_1a2b3c4d"],
    }
    events = _events()
    first_seen = {
        ("anonymous_id", "anon_123"): events[0],
        ("ios.id", "ios_abc123"): events[0],
        ("user_id", "abc123def"): events[4],
        ("email", "jane.doe@gmail.com"): events[4],
        ("anonymous_id", "anon_456"): events[5],
        ("android.id", "and_1a2b3c4d"): events[5],
        ("anonymous_id", "anon_789"): events[6],
    }
    rows = graph.identifiers(jane)
    assert len(rows) == len(first_seen)
    for row in rows:
        event, source, at = first_seen[(row.type, row.value)]
        assert (row.source_id, row.first_seen, row.message_id) == (
            source,
            at,
            event["messageId"],
        )
    assert {row.source_id for row in rows if row.value == "anon_789"} == {"segruns"}


def test_a20_the_clicks_add_nothing() -> None:
    """Step 2: ShoeA, ShoeB and ShoeC resolve to the profile and change nothing."""
    resolver = Resolver(MemoryGraph(), ids=ProfileIds(3))
    events = _events()
    first = resolver.resolve(events[0][0], events[0][1])
    for event, source, _ in events[1:4]:
        done = resolver.resolve(event, source)
        assert (done.user, done.changes, done.violations) == (first.user, (), ())
