"""Activation's payloads (§14.3) and Trait Activation (§14.6): who each message is keyed by,
ID Sync's strategies (exits go to every id), Trait Enrichment, and that every message is one
the Tracking API takes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.engage.activation import Connection, Identity, IdSync, messages
from headwater.engage.computations import mappings_of
from headwater.engage.definition import Compare, Definition, Literal, Reduce, Stream
from headwater.engage.realtime import Computation
from headwater.errors import InvalidError
from headwater.ingest.normalize import Discard, RequestInfo, normalize
from headwater.timestamps import format_timestamp

AT = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
BUYERS = Computation(
    "aud_1",
    "buyers",
    "audience",
    Definition("users", Compare(Reduce(Stream("Order"), "count"), "at_least", (Literal(1),))),
)
PROFILE = Identity(
    user_id="u1",
    emails=["a@x.com", "b@x.com"],
    anonymous_ids=["anon-1", "anon-2"],
    values={
        "user_id": ["u1"],
        "email": ["a@x.com", "b@x.com"],
        "anonymous_id": ["anon-1", "anon-2"],
        "phone": ["+111", "+222"],
    },
)


def sent(value: Any, connection: Connection, traits: dict[str, Any] | None = None) -> list[Any]:
    found = messages(
        "spa_1", BUYERS, value, PROFILE, [connection], at=AT, cause="m1", traits=traits
    )
    at = datetime.fromtimestamp(AT, UTC)
    request = RequestInfo(received_at=at, received_at_iso=format_timestamp(at), client_ip=None)
    for message in found:
        assert not isinstance(normalize(dict(message), request, route_type=None), Discard)
    return found


def test_id_sync_keys_an_entry_by_the_chosen_values_and_an_exit_by_every_id() -> None:
    sync = Connection(
        "braze",
        send_track=True,
        send_identify=False,
        id_sync=(
            IdSync("email", "email", "last_added"),
            IdSync("phone", "phone_number", "all"),
            IdSync("user_id", "external_id", "first_added"),
        ),
    )
    entered = sent(True, sync)
    assert [(m["userId"], m["context"]["traits"]) for m in entered] == [
        ("u1", {"email": "b@x.com", "phone_number": "+111"}),
        ("u1", {"email": "b@x.com", "phone_number": "+222"}),
    ]
    exited = sent(False, sync)  # §14.6: ID Sync is not applied to exits
    assert [m["context"]["traits"]["email"] for m in exited] == ["a@x.com", "b@x.com"]
    assert all("phone_number" not in m["context"]["traits"] for m in exited)


def test_without_id_sync_custom_identifiers_are_not_sent() -> None:
    found = sent(True, Connection("hook"))
    assert [m["traits"] for m in found] == [
        {"buyers": True, "email": "a@x.com"},
        {"buyers": True, "email": "b@x.com"},
    ]


def test_trait_enrichment_adds_traits_where_segment_puts_them() -> None:
    both = Connection(
        "hook", send_track=True, trait_enrichment=(("first_name", "firstName"), ("plan", "plan"))
    )
    found = sent(True, both, traits={"first_name": "Ada"})
    identify, track = found[0], found[1]
    assert identify["traits"] == {"buyers": True, "firstName": "Ada", "email": "a@x.com"}
    assert track["properties"] == {"audience_key": "buyers", "buyers": True, "firstName": "Ada"}


def test_id_sync_settings_are_checked() -> None:
    assert mappings_of("id_sync", [{"identifier": "email", "field": "email"}], "d") == [
        {"identifier": "email", "field": "email", "strategy": "last_added"}
    ]
    with pytest.raises(InvalidError, match="unknown strategy 'newest'"):
        mappings_of("id_sync", [{"identifier": "email", "field": "e", "strategy": "newest"}], "d")
    four = [{"identifier": f"t{i}", "field": "f", "strategy": "all"} for i in range(4)]
    with pytest.raises(InvalidError, match="at most 3"):
        mappings_of("id_sync", four, "d")
    with pytest.raises(InvalidError, match="unknown key 'x'"):
        mappings_of("trait_enrichment", [{"trait": "a", "field": "b", "x": 1}], "d")


def test_a_list_destination_gets_its_external_audience_and_settings_in_personas() -> None:
    listed = Connection(
        "iterable",
        send_track=True,
        list_audience=True,
        external_audience_id="4242",
        audience_settings={"updateExistingUsersOnly": True},
    )
    found = sent(True, listed)
    assert [m["type"] for m in found] == ["identify", "track", "identify", "track"]
    for message in found:
        assert message["context"]["personas"] == {
            "computation_class": "audience",
            "computation_id": "aud_1",
            "computation_key": "buyers",
            "namespace": "spa_1",
            "space_id": "spa_1",
            "external_audience_id": "4242",
            "audience_settings": {"updateExistingUsersOnly": True},
        }
    # an event destination's personas stay as they were
    plain = sent(True, Connection("hook"))
    assert "external_audience_id" not in plain[0]["context"]["personas"]


def test_nothing_goes_to_a_list_destination_before_its_audience_exists() -> None:
    waiting = Connection("iterable", list_audience=True)
    assert sent(True, waiting) == []
    assert sent(False, waiting) == []
