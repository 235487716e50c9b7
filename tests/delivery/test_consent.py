"""Consent routing through the router and the delivery engine (§12.3's table, A-CM-1 … 7, 9).

Facebook, Google Ads and Amplitude stand in as webhook-like destinations under those catalog
names (each posts the message it was given to its own path of one receiver), beside an unmapped
webhook: the test sees exactly which instances an event reaches. The doc's table lists only the
three mapped destinations; the unmapped webhook shows §12.3 rule 2's "unmapped → eligible".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from headwater import reasons
from headwater.delivery.queue import DeliveryQueue
from headwater.delivery.replay import replay
from headwater.destinations import registry
from headwater.destinations.catalog import webhook
from headwater.pipeline.consumer import Consumer
from headwater.privacy.consent import ConsentCategories, compile_map
from headwater.store.archive import Archive, ArchiveWriter
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver

STAND_INS = {"facebook": "Facebook", "google-ads": "Google Ads", "amplitude": "Amplitude"}
FB, FB_ON, FB_OFF = "facebook", {"Facebook": True, "Amplitude": False}, {"Facebook": False}
OFF_BOTH = {"Facebook": False, "Amplitude": False}


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for type_, name in STAND_INS.items():
        definition = dataclasses.replace(webhook.DEFINITION, type=type_, name=name, aliases=())
        monkeypatch.setitem(registry.definitions(), type_, definition)
    yield


@pytest.fixture
def connected(pipeline: Pipeline, receiver: Receiver, catalog: None) -> Pipeline:
    for name in ("facebook", "google-ads", "amplitude", "webhook"):
        pipeline.add(name, name, settings={"url": f"{receiver.url}/{name}"})
    return pipeline


def categories(pipeline: Pipeline) -> ConsentCategories:
    return ConsentCategories(pipeline.workspace)


def map_doc(pipeline: Pipeline, *, facebook_in_analytics: bool = False) -> None:
    """The doc's mappings: ad → Facebook, Google Ads; analytics → Amplitude (and Facebook)."""
    found = categories(pipeline)
    found.create("ad", "Advertising", ["facebook", "google-ads"])
    analytics = ["amplitude", "facebook"] if facebook_in_analytics else ["amplitude"]
    found.create("analytics", "Analytics", analytics)


def reached(pipeline: Pipeline, receiver: Receiver, **extra: Any) -> set[str]:
    """Which instances the event reaches, once routed and delivered."""
    event = track(**extra)
    before = len(receiver.requests)
    pipeline.send(event)
    pipeline.deliver()
    return {
        r.path.strip("/")
        for r in receiver.requests[before:]
        if r.json().get("messageId") == event["messageId"]
    }


def prefs(values: dict[str, Any]) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": values}}


ALL = {"facebook", "google-ads", "amplitude", "webhook"}


# --- §12.3's decision table, row by row -------------------------------------------------------


def test_row1_no_consent_or_empty_consent_reaches_all(
    connected: Pipeline, receiver: Receiver
) -> None:
    map_doc(connected)
    assert reached(connected, receiver) == ALL
    assert reached(connected, receiver, context={"consent": {}}) == ALL
    assert reached(connected, receiver, context={"consent": {}}, integrations={}) == ALL
    assert reached(connected, receiver, context={"consent": {"version": 2}}) == ALL


def test_row2_a_cm_5_empty_preferences_reach_only_unmapped(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-5."""
    map_doc(connected)
    assert reached(connected, receiver, context=prefs({})) == {"webhook"}


def test_row3_a_cm_6_no_consent_integrations_object_alone_decides(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-6."""
    map_doc(connected)
    assert reached(connected, receiver, integrations=FB_ON) == {"facebook", "google-ads", "webhook"}
    amplitude = connected.store.require("amplitude")
    assert connected.totals(amplitude) == {
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_INTEGRATIONS_OBJECT): 1
    }


def test_row4_empty_consent_with_integrations_object_is_empty_preferences(
    connected: Pipeline, receiver: Receiver
) -> None:
    map_doc(connected)
    # true in the integrations object does not override a consent denial
    assert reached(connected, receiver, context={"consent": {}}, integrations=FB_ON) == {"webhook"}
    assert reached(connected, receiver, context=prefs({}), integrations=FB_ON) == {"webhook"}


def test_row5_categories_without_mappings_enforce_nothing(
    connected: Pipeline, receiver: Receiver
) -> None:
    categories(connected).create("ad", "Advertising")
    categories(connected).create("analytics", "Analytics")
    ad_only = prefs({"ad": True, "analytics": False})
    assert reached(connected, receiver, context=ad_only) == ALL
    assert reached(connected, receiver, context=ad_only, integrations=FB_OFF) == ALL - {FB}


def test_row6_a_cm_1_ad_only(connected: Pipeline, receiver: Receiver) -> None:
    """A-CM-1: Amplitude's discard reason is Segment's words."""
    map_doc(connected)
    got = reached(connected, receiver, context=prefs({"ad": True, "analytics": False}))
    assert got == {"facebook", "google-ads", "webhook"}
    amplitude = connected.store.require("amplitude")
    assert connected.totals(amplitude) == {
        (reasons.FILTERED_AT_DESTINATION, "Filtered by end user consent"): 1
    }


def test_row7_integrations_true_and_absent_both_stay(
    connected: Pipeline, receiver: Receiver
) -> None:
    map_doc(connected)
    got = reached(
        connected, receiver, context=prefs({"ad": True, "analytics": False}), integrations=FB_ON
    )
    assert got == {"facebook", "google-ads", "webhook"}  # Google Ads though absent


def test_row8_integrations_false_removes_a_consented_destination(
    connected: Pipeline, receiver: Receiver
) -> None:
    map_doc(connected)
    got = reached(
        connected, receiver, context=prefs({"ad": True, "analytics": False}), integrations=OFF_BOTH
    )
    assert got == {"google-ads", "webhook"}


def test_row9_a_cm_2_every_category_of_a_destination_must_be_true(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-2."""
    map_doc(connected, facebook_in_analytics=True)
    got = reached(
        connected, receiver, context=prefs({"ad": True, "analytics": False}), integrations=FB_ON
    )
    assert got == {"google-ads", "webhook"}
    facebook = connected.store.require("facebook")
    assert connected.totals(facebook) == {
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_END_USER_CONSENT): 1
    }


def test_row10_a_cm_3_both_true(connected: Pipeline, receiver: Receiver) -> None:
    """A-CM-3."""
    map_doc(connected, facebook_in_analytics=True)
    got = reached(
        connected, receiver, context=prefs({"ad": True, "analytics": True}), integrations=FB_ON
    )
    assert got == {"facebook", "google-ads", "webhook"}


def test_row11_a_cm_4_ad_false_reaches_no_mapped_destination(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-4."""
    map_doc(connected, facebook_in_analytics=True)
    got = reached(
        connected, receiver, context=prefs({"ad": False, "analytics": True}), integrations=FB_ON
    )
    assert got == {"webhook"}


# --- the rest of A-CM and the edges -----------------------------------------------------------


def test_a_cm_7_cmp_and_workspace_categories_differ(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-7: a CMP category unknown here is ignored; a category here missing from the CMP
    is false."""
    categories(connected).create("functional", "Functional", ["facebook"])
    got = reached(connected, receiver, context=prefs({"advertising": True}))
    assert got == ALL - {FB}


def test_a_cm_9_a_disabled_category_stops_enforcing(
    connected: Pipeline, receiver: Receiver
) -> None:
    """A-CM-9."""
    map_doc(connected)
    categories(connected).update("ad", enabled=False)
    for value in (True, False):
        got = reached(connected, receiver, context=prefs({"ad": value, "analytics": False}))
        assert got == {"facebook", "google-ads", "webhook"}
    categories(connected).update("ad", enabled=True)
    got = reached(connected, receiver, context=prefs({"ad": False, "analytics": True}))
    assert got == {"amplitude", "webhook"}


def test_a_mapping_covers_every_instance_of_the_type(
    connected: Pipeline, receiver: Receiver
) -> None:
    connected.add("facebook-2", "facebook", settings={"url": f"{receiver.url}/facebook-2"})
    map_doc(connected)
    got = reached(connected, receiver, context=prefs({"ad": False, "analytics": True}))
    assert got == {"amplitude", "webhook"}


def test_only_true_consents(connected: Pipeline, receiver: Receiver) -> None:
    """``"true"``, ``1`` or ``null`` are not consent; preferences that are not an object
    enforce as empty ones."""
    map_doc(connected)
    for value in ("true", 1, None):
        got = reached(connected, receiver, context=prefs({"ad": value, "analytics": True}))
        assert got == {"amplitude", "webhook"}
    got = reached(connected, receiver, context={"consent": {"categoryPreferences": "all"}})
    assert got == {"webhook"}


def test_engage_messages_are_not_enforced(connected: Pipeline, receiver: Receiver) -> None:
    map_doc(connected)
    personas = {"computation_class": "audience", "computation_key": "buyers"}
    context = {**prefs({"ad": False, "analytics": False}), "personas": personas}
    assert reached(connected, receiver, context=context) == ALL


def test_a_new_category_applies_without_a_restart(connected: Pipeline, receiver: Receiver) -> None:
    denied = prefs({"ad": False})
    assert reached(connected, receiver, context=denied) == ALL
    categories(connected).create("ad", "Advertising", ["google-ads"])
    assert reached(connected, receiver, context=denied) == ALL - {"google-ads"}
    categories(connected).delete("ad")
    assert reached(connected, receiver, context=denied) == ALL


def test_replay_enforces_consent_as_live_routing_does(
    connected: Pipeline, receiver: Receiver, tmp_path: Path
) -> None:
    connected.log.register("archive")
    given, plain = track(context=prefs({"ad": True, "analytics": False})), track()
    connected.send(given, plain)  # before any category: both reach every instance
    archiver = Consumer(connected.log, "archive", ArchiveWriter(tmp_path), owner="archive")
    while archiver.run_once():
        pass
    map_doc(connected)
    start = datetime.fromtimestamp(connected.clock.now - 3600, UTC)
    end = datetime.fromtimestamp(connected.clock.now + 3600, UTC)
    consent = compile_map(categories(connected).list())
    queue = DeliveryQueue(connected.engine)
    amplitude = replay(
        Archive(tmp_path), queue, connected.store.require("amplitude"), start, end, consent=consent
    )
    assert (amplitude.read, amplitude.filtered) == (2, {reasons.FILTERED_BY_END_USER_CONSENT: 1})
    ads = replay(
        Archive(tmp_path), queue, connected.store.require("google-ads"), start, end, consent=consent
    )
    assert (ads.read, ads.filtered) == (2, {})
