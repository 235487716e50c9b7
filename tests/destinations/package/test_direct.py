"""The oracle itself: Segment's package called directly (``direct.js``) makes the requests each
vendor documents, with the credential in place, and never reaches the network — shown here
before the delivery tests trust it to say what Headwater must send."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.destinations.package import direct
from tests.destinations.package.cases import ACCESS_TOKEN, BY_DIRECTORY, CASES, OAUTH, Case

BEARER = f"Bearer {ACCESS_TOKEN}"

# Per destination, per mapping: (method, URL) of each request, and the credential header.
EXPECTED: dict[str, list[list[tuple[str, str]]]] = {
    "customerio": [
        [("POST", "https://track.customer.io/api/v2/batch")],
        [("POST", "https://track.customer.io/api/v2/batch")],
    ],
    "braze": [
        [("POST", "https://rest.iad-01.braze.com/users/track")],
        [("POST", "https://rest.iad-01.braze.com/users/track")],
    ],
    "klaviyo": [
        [("POST", "https://a.klaviyo.com/api/profiles/")],
        [("POST", "https://a.klaviyo.com/api/events/")],
    ],
    "hubspot": [
        [
            (
                "PATCH",
                "https://api.hubapi.com/crm/v3/objects/contacts/jane@example.com?idProperty=email",
            )
        ],
        [("POST", "https://api.hubapi.com/events/v3/send")],
    ],
    "intercom": [
        [
            ("POST", "https://api.intercom.io/contacts/search"),
            ("PUT", "https://api.intercom.io/contacts/6512a3e0c1"),
        ],
        [("POST", "https://api.intercom.io/events")],
    ],
    "iterable": [
        [("POST", "https://api.iterable.com/api/users/update")],
        [("POST", "https://api.iterable.com/api/events/track")],
    ],
    "facebook-conversions-api": [
        [("POST", "https://graph.facebook.com/v24.0/123321456654/events")],
        [("POST", "https://graph.facebook.com/v24.0/123321456654/events")],
    ],
    "google-enhanced-conversions": [
        [
            (
                "POST",
                "https://googleads.googleapis.com/v21/customers/1234567890:uploadClickConversions",
            )
        ],
    ],
    "salesforce": [
        [("POST", "https://acme.my.salesforce.com/services/data/v53.0/sobjects/Lead")],
    ],
    "slack": [
        [
            (
                "POST",
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            )
        ],
    ],
}

CREDENTIAL: dict[str, tuple[str, str] | None] = {
    "customerio": (
        "authorization",
        "Basic " + base64.b64encode(b"a1b2c3site:cio-api-key").decode(),
    ),
    "braze": ("authorization", "Bearer braze-rest-api-key"),
    "klaviyo": ("authorization", "Klaviyo-API-Key pk_klaviyo_private_key"),
    "hubspot": ("authorization", BEARER),
    "intercom": ("authorization", BEARER),
    "iterable": ("api-key", "iterable-api-key"),
    "facebook-conversions-api": ("authorization", "Bearer EAAfb-system-user-token"),
    "google-enhanced-conversions": ("authorization", BEARER),
    "salesforce": ("authorization", BEARER),
    "slack": None,  # the webhook URL is the secret
}


@pytest.fixture(scope="module")
def runs() -> dict[str, list[direct.DirectRun]]:
    found = direct.run_all([(case, None) for case in CASES])
    return {case.directory: r for case, r in zip(CASES, found, strict=True)}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_the_package_called_directly_sends_what_the_vendor_documents(
    case: Case, runs: dict[str, list[direct.DirectRun]]
) -> None:
    assert set(EXPECTED) == set(BY_DIRECTORY)
    # The delivery tests' retry cases send the first event to the first mapping alone.
    assert runs[case.directory][0].subscribed[0] == case.events[0]["messageId"]
    assert direct.secrets(case) or case.directory == "slack"
    for run, expected in zip(runs[case.directory], EXPECTED[case.directory], strict=True):
        assert run.error is None, run.error
        assert run.subscribed, f"{run.mapping.action}: the trigger matched none of the events"
        assert [(r.method, r.url) for r in run.requests] == expected
        assert not _failures(run.result), run.result
        for request in run.requests:
            assert request.url.startswith(case.vendor), "a request the redirects would miss"
            credential = CREDENTIAL[case.directory]
            if credential is not None:
                name, value = credential
                assert request.headers.get(name) == value
            assert request.body is not None
            json.loads(request.body)  # every one of these vendors takes JSON


def _failures(result: Any) -> list[Any]:
    """Multistatus entries of executeBatch that are not 2xx."""
    if not isinstance(result, list):
        return []
    return [
        entry
        for item in result
        for entry in (item.get("multistatus", []) if isinstance(item, dict) else [item])
        if isinstance(entry, dict) and not 200 <= int(entry.get("status", 200)) < 300
    ]


def test_bodies_carry_the_mapped_fields(runs: dict[str, list[direct.DirectRun]]) -> None:
    """A field of each vendor's body, mapped from the events, checked against its source."""

    def body(directory: str, mapping: int, request: int = 0) -> Any:
        text = runs[directory][mapping].requests[request].body
        assert text is not None
        return json.loads(text)

    people = body("customerio", 0)["batch"]
    assert people[0]["identifiers"] == {"id": "user-1"}
    assert people[0]["attributes"]["email"] == "jane@example.com"
    events = body("customerio", 1)["batch"]
    assert [e["name"] for e in events] == ["Order Completed", "Newsletter Signup"]

    assert body("braze", 0)["attributes"][0]["external_id"] == "user-1"
    assert body("braze", 1)["events"][0]["name"] == "Video Played"

    attributes = body("klaviyo", 1)["data"]["attributes"]
    assert attributes["metric"]["data"]["attributes"]["name"] == "Order Completed"
    assert attributes["profile"]["data"]["attributes"]["email"] == "jane@example.com"

    assert body("hubspot", 0)["properties"]["firstname"] == "Jane"
    assert body("intercom", 0, 1)["external_id"] == "user-1"
    assert body("intercom", 1)["metadata"]["price"] == {"amount": 11350, "currency": "EUR"}
    assert body("iterable", 1)["eventName"] == "Video Played"

    purchase = body("facebook-conversions-api", 0)["data"][0]
    assert purchase["event_name"] == "Purchase"
    assert purchase["user_data"]["em"] == sha256("jane@example.com")
    assert purchase["custom_data"]["value"] == 113.5

    conversion = body("google-enhanced-conversions", 0)["conversions"][0]
    assert conversion["gclid"] == "Cj0KCQiA-gclid"
    assert conversion["conversionAction"] == "customers/1234567890/conversionActions/12345678"

    assert body("salesforce", 0)["LastName"] == "Kowalski"
    assert body("slack", 0)["text"] == "user-1 completed an order of 113.5 EUR"


def test_the_recorders_answer_is_what_the_destination_sees() -> None:
    """A 500 from the recorder is an HTTP error to the destination's code, so the oracle can
    stand for failures as well as successes."""
    case = BY_DIRECTORY["klaviyo"]
    resolved = direct.mappings(case)[1]
    spec = {
        "directory": case.directory,
        "action": resolved.action,
        "settings": case.settings,
        "mapping": resolved.fields,
        "subscribe": resolved.subscribe,
        "events": list(case.events),
        "batch": resolved.batch,
        "answer": {"status": 500, "body": {"errors": [{"detail": "down"}]}},
    }
    result = direct.node({"cases": [spec]})["results"][0]
    assert len(result["requests"]) == 1
    assert result["error"]["status"] == 500


CLIENTS = re.compile(
    r"""require\(["'](?:node:)?(?:https?|http2|net|axios|node-fetch|undici|got|superagent|request)["']\)"""
    r"|globalThis\.fetch|\bXMLHttpRequest\b"
)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_the_destinations_code_makes_its_requests_through_actions_core(case: Case) -> None:
    """No other HTTP client in the definition's code, so the recorder (and Headwater's
    redirects, which swap the same fetch) see every request it makes."""
    package = direct.actions_dir() / "node_modules" / "@segment" / "action-destinations"
    folder = package / "dist" / "destinations" / case.directory
    files = sorted(folder.rglob("*.js"))
    assert files
    offending = [
        f"{path.relative_to(folder)}: {match.group(0)}"
        for path in files
        if "__tests__" not in path.parts and not path.name.startswith("test-")
        for match in CLIENTS.finditer(path.read_text())
    ]
    assert not offending


def test_refreshing_an_access_token_directly_asks_the_token_endpoint() -> None:
    """HubSpot's refreshAccessToken, as actions-core runs it after a 401: the refresh grant with
    the user's OAuth app, the new token taken from the answer."""
    case = BY_DIRECTORY["hubspot"]
    [sent], tokens = direct.refresh(case, {"access_token": "fresh", "expires_in": 1800})
    assert (sent.method, sent.url) == ("POST", "https://api.hubapi.com/oauth/v1/token")
    assert parse_qs(sent.body or "") == {
        "grant_type": ["refresh_token"],
        "refresh_token": [OAUTH["refreshToken"]],
        "client_id": [OAUTH["clientId"]],
        "client_secret": [OAUTH["clientSecret"]],
    }
    assert tokens == {"accessToken": "fresh"}
