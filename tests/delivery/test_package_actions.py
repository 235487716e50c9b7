"""What the runtime reports, as Event Delivery's codes (and so the retry rules' verdicts)."""

from __future__ import annotations

import pytest

from headwater.delivery import retry
from headwater.delivery.package_actions import code, split_settings
from headwater.destinations.runtime.pool import Outcome


def outcome(status: int | None, error_type: str | None, error_code: str | None = None) -> Outcome:
    return Outcome(status, error_type, error_code, "", ())


@pytest.mark.parametrize(
    ("reported", "expected", "retried"),
    [
        (outcome(200, None), "200", False),
        (outcome(None, None), "200", False),  # the action made no request
        (outcome(500, "HTTPError", "INTERNAL_SERVER_ERROR"), "500", True),
        (outcome(429, "HTTPError", "TOO_MANY_REQUESTS"), "429", True),
        (outcome(400, "HTTPError", "BAD_REQUEST"), "400", False),
        (outcome(501, "HTTPError", "NOT_IMPLEMENTED"), "501", False),
        (outcome(None, "FetchError", "ECONNREFUSED"), "ECONNREFUSED", True),
        (outcome(None, "Timeout"), "ETIMEDOUT", True),
        (outcome(503, "RetryableError", "RETRYABLE_ERROR"), "RETRY", True),
        (outcome(None, "RuntimeUnavailable"), "RETRY", True),
        (
            outcome(400, "PayloadValidationError", "PAYLOAD_VALIDATION_FAILED"),
            "PAYLOAD_VALIDATION_FAILED",
            False,
        ),
        (
            outcome(401, "InvalidAuthenticationError", "INVALID_AUTHENTICATION"),
            "INVALID_AUTHENTICATION",
            False,
        ),
        # an IntegrationError's own code says more than its 4xx; a 5xx one is retried
        (
            outcome(400, "IntegrationError", "Misconfigured required field"),
            "Misconfigured required field",
            False,
        ),
        (outcome(500, "IntegrationError", "UPSTREAM"), "500", True),
        (outcome(None, "TypeError"), "DESTINATION_ERROR", False),
        (outcome(None, "UnknownAction"), "DESTINATION_ERROR", False),
    ],
)
def test_outcomes_become_segments_codes(reported: Outcome, expected: str, retried: bool) -> None:
    assert code(reported) == expected
    assert retry.judge(expected).retry is retried


def test_the_oauth_setting_becomes_actions_cores_auth() -> None:
    own, auth = split_settings(
        {
            "instanceUrl": "https://acme.my.salesforce.com",
            "oauth": {
                "access_token": "at",
                "refresh_token": "rt",
                "clientId": "id",
                "clientSecret": "cs",
            },
        }
    )
    assert own == {"instanceUrl": "https://acme.my.salesforce.com"}
    assert auth == {
        "accessToken": "at",
        "refreshToken": "rt",
        "clientId": "id",
        "clientSecret": "cs",
    }
    assert split_settings({"apiKey": "k"}) == ({"apiKey": "k"}, None)
