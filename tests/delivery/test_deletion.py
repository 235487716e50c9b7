"""A regulation's deletion forwarded to destinations (§10.3), against loopback receivers that
check each vendor's published deletion API: Amplitude's User Privacy API (v1), Mixpanel's
GDPR API (v3), another workspace's Public API regulations, and an Actions destination's
``onDelete`` (Customer.io's, run by the actions runtime from Segment's package)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from headwater.delivery.deletion import DeletionRefused, DestinationEraser
from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.redirects import Redirects
from headwater.destinations.store import DestinationInfo
from headwater.errors import InvalidSettings
from headwater.privacy.erasure import Erasure, NotSupported, Subjects
from tests.delivery.conftest import Pipeline
from tests.support.receiver import Answer, Receiver

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def erasure(*user_ids: str, sources: frozenset[str] | None = None) -> Erasure:
    subjects = Subjects(user_ids=frozenset(user_ids), anonymous_ids=frozenset({"anon-1"}))
    return Erasure("reg-1", "ws", subjects, created_at=1.0, source_ids=sources)


def eraser(
    pipeline: Pipeline, destination: DestinationInfo, vendor: str, url: str
) -> DestinationEraser:
    return DestinationEraser(destination, pipeline.delivery, Redirects({vendor: url}))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_amplitude_gets_a_user_privacy_api_deletion_job(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    amplitude = pipeline.add(
        "amp", "amplitude", settings={"api_key": "amp-key", "secret_key": "amp-secret"}
    )
    step = eraser(pipeline, amplitude, "https://amplitude.com", receiver.url)
    assert step.target.kind == "destination" and step.target.id == amplitude.id

    assert step.erase(erasure("u2")) is None
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/api/2/deletions/users")
    assert got.headers["authorization"] == basic("amp-key", "amp-secret")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"user_ids": ["u2"], "requester": "Headwater regulation"}


def test_amplitude_takes_at_most_100_user_ids_a_request_and_eu_goes_to_the_eu_host(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    amplitude = pipeline.add(
        "amp",
        "amplitude",
        settings={"api_key": "k", "secret_key": "s", "eu_residency": True},
    )
    ids = [f"user-{n:03}" for n in range(250)]
    step = eraser(pipeline, amplitude, "https://analytics.eu.amplitude.com", receiver.url)
    step.erase(erasure(*ids))
    sizes = [len(r.json()["user_ids"]) for r in receiver.requests]
    assert sizes == [100, 100, 50]
    assert sorted(i for r in receiver.requests for i in r.json()["user_ids"]) == ids


def test_amplitude_without_its_secret_key_says_what_to_add(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    amplitude = pipeline.add("amp", "amplitude", settings={"api_key": "amp-key"})
    step = eraser(pipeline, amplitude, "https://amplitude.com", receiver.url)
    with pytest.raises(InvalidSettings, match="secret_key"):
        step.erase(erasure("u2"))
    assert receiver.requests == []


def test_mixpanel_gets_a_gdpr_deletion_on_its_residency_host(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    mixpanel = pipeline.add(
        "mp",
        "mixpanel",
        settings={
            "project_token": "tok-1",
            "gdpr_api_token": "gdpr-oauth",
            "endpoint": "https://api-eu.mixpanel.com",
        },
    )
    eraser(pipeline, mixpanel, "https://eu.mixpanel.com", receiver.url).erase(erasure("u2", "u3"))
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/api/app/data-deletions/v3.0/")
    assert got.query == {"token": ["tok-1"]}
    assert got.headers["authorization"] == "Bearer gdpr-oauth"
    assert got.json() == {"distinct_ids": ["u2", "u3"], "compliance_type": "GDPR"}


def test_a_segment_forward_asks_the_receiving_workspace_for_a_regulation(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    forward = pipeline.add(
        "fwd",
        "segment",
        settings={
            "write_key": "wk",
            "public_api_token": "sgp_token",
            "public_api_endpoint": "https://api.segmentapis.com",
        },
    )
    eraser(pipeline, forward, "https://api.segmentapis.com", receiver.url).erase(erasure("u2"))
    [got] = receiver.requests
    assert (got.method, got.path) == ("POST", "/regulations")
    assert got.headers["authorization"] == "Bearer sgp_token"
    assert got.json() == {
        "regulationType": "DELETE_ONLY",
        "subjectType": "USER_ID",
        "subjectIds": ["u2"],
    }


def test_a_vendor_error_fails_the_step_with_its_answer_and_no_secret(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    amplitude = pipeline.add(
        "amp", "amplitude", settings={"api_key": "amp-key", "secret_key": "amp-secret"}
    )
    receiver.default = Answer(status=400, body=b'{"error": "invalid user ids"}')
    step = eraser(pipeline, amplitude, "https://amplitude.com", receiver.url)
    with pytest.raises(DeletionRefused) as refused:
        step.erase(erasure("u2"))
    assert "HTTP 400" in str(refused.value) and "invalid user ids" in str(refused.value)
    assert "amp-secret" not in str(refused.value)


def test_a_destination_without_a_deletion_api_is_not_supported(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    webhook = pipeline.add("hook", "webhook", settings={"url": receiver.url})
    step = eraser(pipeline, webhook, "https://example.com", receiver.url)
    with pytest.raises(NotSupported, match="Webhooks takes no deletion requests"):
        step.erase(erasure("u2"))
    assert receiver.requests == []


def test_a_regulation_of_other_sources_or_without_user_ids_sends_nothing(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    amplitude = pipeline.add(
        "amp", "amplitude", settings={"api_key": "amp-key", "secret_key": "amp-secret"}
    )
    step = eraser(pipeline, amplitude, "https://amplitude.com", receiver.url)
    assert step.erase(erasure("u2", sources=frozenset({"another-source"}))) is None
    assert step.erase(erasure()) is None
    assert receiver.requests == []
    assert step.erase(erasure("u2", sources=frozenset({pipeline.source_id}))) is None
    assert len(receiver.requests) == 1


def test_an_actions_destination_runs_its_packages_on_delete(
    pipeline: Pipeline, receiver: Receiver, actions_dir: Path
) -> None:
    """Customer.io (Actions): its ``onDelete`` deletes the person through the Track API."""
    pipeline.delivery = DeliveryEngine(
        pipeline.engine,
        pipeline.cache(),
        owner="worker-1",
        clock=pipeline.clock,
        redirects=Redirects({"https://track.customer.io": receiver.url}),
        actions_dir=Path(os.environ["HEADWATER_ACTIONS_DIR"]),
    )
    customerio = pipeline.add(
        "cio",
        "actions:customerio",
        settings={"siteId": "site-1", "apiKey": "cio-key", "accountRegion": "US 🇺🇸"},
    )
    step = eraser(pipeline, customerio, "https://track.customer.io", receiver.url)
    assert step.erase(erasure("u2", "u 3")) is None
    got = sorted((r.method, r.path, r.headers["authorization"]) for r in receiver.requests)
    assert got == [
        ("DELETE", "/api/v1/customers/u%203", basic("site-1", "cio-key")),
        ("DELETE", "/api/v1/customers/u2", basic("site-1", "cio-key")),
    ]

    receiver.default = Answer(status=401, body=b'{"meta": {"error": "unauthorized"}}')
    with pytest.raises(DeletionRefused, match=r"401|Unauthorized"):
        step.erase(erasure("u2"))
