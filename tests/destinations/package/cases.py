"""Ten of the package's Actions destinations, across kinds, as a team would configure them.

Each case is what a user saves (settings keyed as the definition keys them, OAuth tokens, one
or two mappings with their triggers) and the events they send. A mapping starts from the
definition's own preset for that action (Segment's default subscription) or, where the
definition has none, from its fields' defaults — what Segment's UI fills in — plus the fields a
user must choose; both are read from the installed package by ``direct.describe``, so the cases
follow the pinned version. ``vendor`` lists the URL prefixes the destination's requests go to
(what ``request_redirects`` sends to a loopback receiver); ``answer`` is the JSON every request
is answered with, enough for multi-request flows (search, then update) to take one path.
Inputs follow Segment's own tests in segmentio/action-destinations where those exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OCCURRED = "2026-12-06T10:00:00.000Z"

ACCESS_TOKEN = "ya29.a0-access-token-for-tests"
REFRESH_TOKEN = "1//0g-refresh-token-for-tests"
# An OAuth destination's ``auth``: the user's own OAuth app and its first tokens.
OAUTH = {
    "clientId": "oauth-app-client-id",
    "clientSecret": "oauth-app-client-secret",
    "accessToken": ACCESS_TOKEN,
    "refreshToken": REFRESH_TOKEN,
}


@dataclass(frozen=True)
class MappingCase:
    action: str
    preset: bool = False  # start from the definition's preset for the action, else the defaults
    fields: dict[str, Any] = field(default_factory=dict)  # the user's choices, over the start
    subscribe: str | None = None  # the trigger; None: the preset's, else the action's default


@dataclass(frozen=True)
class Case:
    name: str  # Segment's display name
    directory: str  # the package's folder: the instance's type is ``actions:<directory>``
    settings: dict[str, Any]
    mappings: tuple[MappingCase, ...]
    events: tuple[dict[str, Any], ...]
    vendor: tuple[str, ...]  # the API's URL prefixes, and the OAuth token endpoint's
    auth: dict[str, str] | None = None  # OAuth: {clientId, clientSecret, accessToken, refreshToken}
    # Segment's partner credentials a definition reads from the process environment
    env: dict[str, str] = field(default_factory=dict)
    answer: Any = field(default_factory=lambda: {"ok": True})

    @property
    def type(self) -> str:
        return f"actions:{self.directory}"


def _identify(n: int, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "messageId": f"identify-{n}",
        "timestamp": OCCURRED,
        "receivedAt": OCCURRED,
        "traits": traits,
        "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (Macintosh)"},
    }


def _track(n: int, event: str, properties: dict[str, Any], **context: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "messageId": f"track-{n}",
        "timestamp": OCCURRED,
        "receivedAt": OCCURRED,
        "properties": properties,
        "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (Macintosh)", **context},
    }


PRODUCTS = [
    {"product_id": "sku-1", "sku": "sku-1", "name": "Trail shoe", "price": 89.5, "quantity": 1},
    {"product_id": "sku-2", "sku": "sku-2", "name": "Wool socks", "price": 12.0, "quantity": 2},
]

ORDER = {
    "order_id": "order-1001",
    "orderId": "order-1001",
    "total": 113.5,
    "revenue": 113.5,
    "currency": "EUR",
    "products": PRODUCTS,
}

JANE = {
    "email": "jane@example.com",
    "first_name": "Jane",
    "last_name": "Kowalski",
    "firstName": "Jane",
    "lastName": "Kowalski",
    "name": "Jane Kowalski",
    "phone": "+14155550123",
    "company": "Acme Inc",
    "title": "Buyer",
    "address": {
        "street": "1 Market St",
        "city": "San Francisco",
        "state": "CA",
        "postal_code": "94105",
        "country": "US",
    },
}

CASES: tuple[Case, ...] = (
    Case(
        name="Customer.io",
        directory="customerio",
        settings={"siteId": "a1b2c3site", "apiKey": "cio-api-key", "accountRegion": "US 🇺🇸"},
        mappings=(
            MappingCase("createUpdatePerson", preset=True),
            MappingCase("trackEvent", preset=True),
        ),
        events=(
            _identify(1, **JANE, plan="pro"),
            _track(2, "Order Completed", ORDER),
            _track(3, "Newsletter Signup", {"list": "weekly"}),
        ),
        vendor=("https://track.customer.io",),
    ),
    Case(
        name="Braze Cloud Mode (Actions)",
        directory="braze",
        settings={
            "api_key": "braze-rest-api-key",
            "app_id": "7b1c2d3e-app",
            "endpoint": "https://rest.iad-01.braze.com",
        },
        mappings=(
            MappingCase("updateUserProfile", preset=True),
            MappingCase("trackEvent", preset=True),
        ),
        events=(
            _identify(1, **JANE),
            _track(2, "Video Played", {"title": "Intro", "seconds": 42}),
        ),
        vendor=("https://rest.iad-01.braze.com",),
    ),
    Case(
        name="Klaviyo (Actions)",
        directory="klaviyo",
        settings={"api_key": "pk_klaviyo_private_key"},
        mappings=(
            MappingCase("upsertProfile"),
            MappingCase(
                "trackEvent",
                preset=True,
                fields={
                    "profile": {
                        "email": {"@path": "$.context.traits.email"},
                        "external_id": {"@path": "$.userId"},
                    },
                    "enable_batching": False,
                },
                subscribe='type = "track"',
            ),
        ),
        events=(
            _identify(1, **JANE),
            _track(2, "Order Completed", ORDER, traits={"email": "jane@example.com"}),
        ),
        vendor=("https://a.klaviyo.com",),
        answer={"data": {"id": "01HPROFILE", "type": "profile"}},
    ),
    Case(
        name="HubSpot Cloud Mode (Actions)",
        directory="hubspot",
        settings={"portalId": "20571234"},
        auth=OAUTH,
        mappings=(
            MappingCase("upsertContact"),
            MappingCase(
                "sendCustomBehavioralEvent",
                fields={"eventName": "pe20571234_order_completed"},
            ),
        ),
        events=(
            _identify(1, **JANE),
            _track(2, "Order Completed", {**ORDER, "email": "jane@example.com"}),
        ),
        vendor=("https://api.hubapi.com",),
        answer={"id": "801", "properties": {"email": "jane@example.com"}},
    ),
    Case(
        name="Intercom Cloud Mode (Actions)",
        directory="intercom",
        settings={},
        auth=OAUTH,
        mappings=(
            MappingCase("identifyContact", fields={"role": "user"}),
            MappingCase("trackEvent"),
        ),
        events=(
            _identify(1, **JANE),
            _track(2, "Order Completed", {**ORDER, "email": "jane@example.com"}),
        ),
        vendor=("https://api.intercom.io",),
        answer={"type": "list", "total_count": 1, "data": [{"id": "6512a3e0c1"}]},
    ),
    Case(
        name="Iterable (Actions)",
        directory="iterable",
        settings={"apiKey": "iterable-api-key", "dataCenterLocation": "united_states"},
        mappings=(
            MappingCase("updateUser", preset=True, fields={"enable_batching": False}),
            MappingCase("trackEvent", preset=True, fields={"enable_batching": False}),
        ),
        events=(
            _identify(1, **JANE),
            _track(2, "Video Played", {"title": "Intro", "seconds": 42}, traits=JANE),
        ),
        vendor=("https://api.iterable.com",),
        answer={"msg": "", "code": "Success", "params": None},
    ),
    Case(
        name="Facebook Conversions API (Actions)",
        directory="facebook-conversions-api",
        settings={"pixelId": "123321456654"},
        env={"ACTIONS_FB_CAPI_SYSTEM_USER_TOKEN": "EAAfb-system-user-token"},
        mappings=(
            MappingCase("purchase", fields={"action_source": "website"}),
            MappingCase(
                "custom",
                fields={"action_source": "website"},
                subscribe='type = "track" and event = "Newsletter Signup"',
            ),
        ),
        events=(
            _track(
                1,
                "Order Completed",
                ORDER,
                traits={"email": "jane@example.com", "phone": "+14155550123"},
                page={"url": "https://shop.example.com/checkout"},
            ),
            _track(
                2, "Newsletter Signup", {"list": "weekly"}, traits={"email": "jane@example.com"}
            ),
        ),
        vendor=("https://graph.facebook.com",),
        answer={"events_received": 1, "fbtrace_id": "AbCdEf"},
    ),
    Case(
        name="Google Ads Conversions",
        directory="google-enhanced-conversions",
        settings={"customerId": "1234567890", "conversionTrackingId": "AW-987654"},
        auth=OAUTH,
        env={"ADWORDS_DEVELOPER_TOKEN": "adwords-developer-token"},
        mappings=(
            MappingCase(
                "uploadClickConversion",
                fields={
                    "conversion_action": 12345678,
                    "gclid": {"@path": "$.properties.gclid"},
                    "ad_user_data_consent_state": "GRANTED",
                    "ad_personalization_consent_state": "GRANTED",
                },
                subscribe='type = "track" and event = "Order Completed"',
            ),
        ),
        events=(
            _track(
                1,
                "Order Completed",
                {**ORDER, "gclid": "Cj0KCQiA-gclid", "email": "jane@example.com"},
            ),
        ),
        vendor=("https://googleads.googleapis.com", "https://www.googleapis.com"),
        answer={"results": [{}], "partialFailureError": None},
    ),
    Case(
        name="Salesforce (Actions)",
        directory="salesforce",
        settings={"instanceUrl": "https://acme.my.salesforce.com", "isSandbox": False},
        auth=OAUTH,
        mappings=(MappingCase("lead", fields={"operation": "create"}),),
        events=(_identify(1, **JANE),),
        vendor=("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        answer={"id": "00Q5e000001AbCdEAK", "success": True, "errors": []},
    ),
    Case(
        name="Slack",
        directory="slack",
        settings={},
        mappings=(
            MappingCase(
                "postToChannel",
                fields={
                    "url": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                    "text": {
                        "@template": "{{userId}} completed an order of {{properties.total}} {{properties.currency}}"
                    },
                    "channel": "sales",
                },
                subscribe='type = "track" and event = "Order Completed"',
            ),
        ),
        events=(_track(1, "Order Completed", ORDER),),
        vendor=("https://hooks.slack.com",),
        answer="ok",
    ),
)

BY_DIRECTORY = {case.directory: case for case in CASES}
