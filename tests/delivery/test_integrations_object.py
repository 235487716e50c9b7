"""The integrations object across real destination instances (AC-030 … AC-033, AC-035).

Amplitude and Mixpanel are the shipped destinations, sending their vendor formats to a loopback
receiver. Salesforce, Adobe Analytics, Intercom and Google Analytics are not in the catalog, so
the fixture adds stand-ins under those catalog names: each posts the message it was given, the
way the webhook does, so the test sees exactly what a translator would get. Salesforce's stand-in
keeps Salesforce's one difference, off unless the integrations object names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from headwater import reasons
from headwater.destinations import registry
from headwater.destinations.catalog import webhook
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver

STAND_INS = {
    "salesforce": "Salesforce",
    "adobe-analytics": "Adobe Analytics",
    "intercom": "Intercom",
    "google-analytics": "Google Analytics",
}


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for type_, name in STAND_INS.items():
        definition = dataclasses.replace(
            webhook.DEFINITION,
            type=type_,
            name=name,
            aliases=(),
            default_enabled=name != "Salesforce",
        )
        monkeypatch.setitem(registry.definitions(), type_, definition)
    yield


@pytest.fixture
def connected(pipeline: Pipeline, receiver: Receiver, catalog: None) -> Pipeline:
    """A source connected to Amplitude, Mixpanel, Salesforce, Intercom, Google Analytics and
    two Adobe Analytics instances, all sending to one receiver under their own paths."""
    pipeline.add(
        "amplitude",
        "amplitude",
        settings={
            "api_key": "0123456789abcdef0123456789abcdef",
            "endpoint": receiver.url + "/amplitude",
        },
    )
    pipeline.add(
        "mixpanel",
        "mixpanel",
        settings={
            "project_token": "f2b1c3d4e5f60718293a4b5c6d7e8f90",
            "endpoint": receiver.url + "/mixpanel",
        },
    )
    for name, type_ in [
        ("salesforce", "salesforce"),
        ("intercom", "intercom"),
        ("google-analytics", "google-analytics"),
        ("adobe-1", "adobe-analytics"),
        ("adobe-2", "adobe-analytics"),
    ]:
        pipeline.add(name, type_, settings={"url": f"{receiver.url}/{name}"})
    return pipeline


def deliveries(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    """Per instance, the messages it was sent (the stand-ins) or the messageIds it carried."""
    found: dict[str, list[Any]] = {}
    for request in receiver.requests:
        instance = request.path.strip("/").split("/")[0]
        body = request.json()
        if instance == "amplitude":
            items = [{"messageId": e["insert_id"]} for e in body["events"]]
        elif instance == "mixpanel":
            items = [{"messageId": e["properties"]["$insert_id"]} for e in body]
        else:
            items = [body]
        found.setdefault(instance, []).extend(items)
    return found


def tracked(**extra: Any) -> dict[str, Any]:
    return track(userId="user-12345", **extra)  # Amplitude wants ids of 5 characters or more


def receivers_of(receiver: Receiver, event: dict[str, Any]) -> set[str]:
    return {
        instance
        for instance, items in deliveries(receiver).items()
        if any(i["messageId"] == event["messageId"] for i in items)
    }


def test_ac030_all_false_with_named_destinations(connected: Pipeline, receiver: Receiver) -> None:
    event = tracked(integrations={"All": False, "Mixpanel": True, "Salesforce": True})
    connected.send(event)
    connected.deliver()
    assert receivers_of(receiver, event) == {"mixpanel", "salesforce"}


def test_ac031_no_integrations_object_reaches_all_but_salesforce(
    connected: Pipeline, receiver: Receiver
) -> None:
    event = tracked()
    connected.send(event)
    connected.deliver()
    assert receivers_of(receiver, event) == {
        "amplitude",
        "mixpanel",
        "intercom",
        "google-analytics",
        "adobe-1",
        "adobe-2",
    }
    salesforce = connected.store.require("salesforce")
    assert connected.totals(salesforce) == {
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_INTEGRATIONS_OBJECT): 1
    }


def test_ac032_named_destinations_off_the_rest_on(connected: Pipeline, receiver: Receiver) -> None:
    event = tracked(integrations={"Intercom": False, "Google Analytics": False})
    connected.send(event)
    connected.deliver()
    assert receivers_of(receiver, event) == {
        "amplitude",
        "mixpanel",
        "adobe-1",
        "adobe-2",
    }  # Salesforce keeps its default


def test_ac033_keys_are_case_sensitive(connected: Pipeline, receiver: Receiver) -> None:
    event = tracked(integrations={"mixpanel": False})
    connected.send(event)
    connected.deliver()
    assert "mixpanel" in receivers_of(receiver, event)


def test_ac035_options_object_enables_every_instance_and_reaches_the_translator(
    connected: Pipeline, receiver: Receiver
) -> None:
    options = {"marketingCloudVisitorId": "12345"}
    event = tracked(integrations={"Mixpanel": False, "Adobe Analytics": options})
    connected.send(event)
    connected.deliver()
    assert receivers_of(receiver, event) == {
        "amplitude",
        "intercom",
        "google-analytics",
        "adobe-1",
        "adobe-2",
    }
    for instance in ("adobe-1", "adobe-2"):
        [sent] = deliveries(receiver)[instance]
        assert sent["integrations"]["Adobe Analytics"] == options


def test_engage_messages_name_one_instance_and_other_senders_cannot(
    connected: Pipeline, receiver: Receiver
) -> None:
    """Engage's integrations object names the instance a computation is connected to (§14.2
    item 9): with ``context.personas`` an instance's own name selects it; without, the key is
    an unknown integration like any other (AC-033's rule stands)."""
    personas = {"computation_class": "audience", "computation_key": "buyers"}
    engage = tracked(integrations={"All": False, "adobe-1": True}, context={"personas": personas})
    plain = tracked(integrations={"All": False, "adobe-1": True})
    connected.send(engage)
    connected.send(plain)
    connected.deliver()
    assert receivers_of(receiver, engage) == {"adobe-1"}
    assert receivers_of(receiver, plain) == set()
