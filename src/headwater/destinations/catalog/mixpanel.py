"""Mixpanel through its Ingestion API: events to ``/import``, profiles to ``/engage``.

* ``track`` → an event of the same name whose properties are the message's properties plus
  Mixpanel's standard ones taken from ``context`` (``$os``, ``$model``, ``$current_url``,
  ``utm_*``…), with ``time`` (ms), ``distinct_id`` (userId, else anonymousId), ``$insert_id``
  (the messageId, Mixpanel's dedup key), ``$user_id`` and ``$device_id`` (the anonymousId) so
  Simplified ID Merge links anonymous and known activity, and ``ip`` for geolocation.
* ``page`` / ``screen`` → ``Loaded a Page`` / ``Loaded a Screen``, Segment's default
  ("Track All Pages to Mixpanel with a Consolidated Event Name"), name and category kept as
  properties.
* ``identify`` → a profile ``$set`` of the traits on ``/engage`` (Segment's special traits
  become ``$email``, ``$first_name``…; ``context.ip`` becomes ``$ip``), and, when the message
  carries both a userId and an anonymousId, an ``$identify`` event on ``/track`` as Segment
  sends, which merges the two under Original ID Merge.
* ``alias`` → a ``$create_alias`` event on ``/track`` (previousId aliased to userId).

``/import`` takes up to 2,000 events and 2 MB per request with ``strict=1``, authenticated by
HTTP Basic with the project's API secret (or the project token when no secret is set); it
answers 400 naming the records that failed while the others are ingested, which ``interpret``
turns into per-message verdicts. ``/engage`` and ``/track`` are called with ``verbose=1`` so
that a refusal is a JSON ``status`` of 0 rather than a bare ``0``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import msgspec
from pydantic import Field, HttpUrl

from headwater import reasons
from headwater.destinations.definition import (
    Batching,
    DestinationDefinition,
    DestinationSettings,
    Message,
    Outgoing,
    Rendered,
    Request,
    Response,
)
from headwater.errors import InvalidSettings, MessageRejected
from headwater.timestamps import parse_timestamp

NAME: Final = "Mixpanel"
MAX_EVENTS_PER_REQUEST: Final = 2000
# The GDPR API (v3): up to 2,000 distinct ids a deletion, with a GDPR OAuth token.
DELETION_PATH: Final = "/api/app/data-deletions/v3.0/"
MAX_DELETION_IDS: Final = 2000
# Documented as 2 MB uncompressed per request (the 413 answer names 2097152 bytes); newer
# pages say 10 MB. The smaller figure is always safe.
MAX_BODY_BYTES: Final = 2_000_000
MAX_EVENT_BYTES: Final = 1_000_000  # "each event must be smaller than 1MB of uncompressed JSON"
# Values Mixpanel refuses as a distinct_id (documented examples of its list).
INVALID_IDS: Final = frozenset(
    {
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "undefined",
        "00000000-0000-0000-0000-000000000000",
    }
)
PAGE_EVENTS: Final = {"page": "Loaded a Page", "screen": "Loaded a Screen"}
# Segment's special traits and the reserved profile properties they become.
SPECIAL_TRAITS: Final = {
    "created": "$created",
    "email": "$email",
    "firstName": "$first_name",
    "lastName": "$last_name",
    "name": "$name",
    "username": "$username",
    "phone": "$phone",
}
RESEND: Final = "RETRY"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_encode = msgspec.json.Encoder().encode


class MixpanelSettings(DestinationSettings):
    project_token: str = Field(min_length=1)
    # Basic auth of /import; Mixpanel also takes the project token there, used when unset.
    api_secret: str | None = Field(default=None, min_length=1)
    # EU residency: https://api-eu.mixpanel.com (India: https://api-in.mixpanel.com).
    endpoint: HttpUrl = HttpUrl("https://api.mixpanel.com")
    # Needed only to forward deletions: a GDPR OAuth token (Mixpanel's Data & Privacy settings).
    gdpr_api_token: str | None = Field(default=None, min_length=1)

    def base(self) -> str:
        return str(self.endpoint).rstrip("/")

    def deletion_url(self) -> str:
        """The GDPR API on the residency's app host: api-eu.mixpanel.com → eu.mixpanel.com."""
        parts = urlsplit(self.base())
        host = parts.netloc
        if host.startswith("api-") and host.endswith("mixpanel.com"):
            host = host.removeprefix("api-")
        elif host == "api.mixpanel.com":
            host = "mixpanel.com"
        query = urlencode({"token": self.project_token})
        return f"{parts.scheme}://{host}{DELETION_PATH}?{query}"


# Which API an item goes to: /import events, /engage profile updates, /track identity events.
_IMPORT, _ENGAGE, _TRACK = "import", "engage", "track"


def render(messages: Sequence[Message], settings: MixpanelSettings) -> Rendered:
    rendered = Rendered()
    items: dict[str, list[tuple[int, bytes]]] = {_IMPORT: [], _ENGAGE: [], _TRACK: []}
    for position, message in enumerate(messages):
        try:
            found = _items(message, settings)
            encoded = [(api, _encode(item)) for api, item in found]
        except MessageRejected as exc:
            rendered.reject(position, exc)
            continue
        too_large = [len(e) for _, e in encoded if len(e) >= MAX_EVENT_BYTES]
        if too_large:
            rendered.reject(
                position,
                f"the record is {too_large[0]} bytes; Mixpanel takes "
                f"records under {MAX_EVENT_BYTES} bytes",
            )
            continue
        for api, item in encoded:
            items[api].append((position, item))

    base = settings.base()
    targets = {
        _IMPORT: (
            f"{base}/import?strict=1",
            {"Content-Type": "application/json", "Authorization": import_auth(settings)},
        ),
        _ENGAGE: (f"{base}/engage?verbose=1&ip=0", {"Content-Type": "application/json"}),
        _TRACK: (f"{base}/track?verbose=1", {"Content-Type": "application/json"}),
    }
    for api, members in items.items():
        url, headers = targets[api]
        for chunk in chunks(members):
            body = b"[" + b",".join(e for _, e in chunk) + b"]"
            rendered.outgoing.append(
                Outgoing(Request("POST", url, headers, body), tuple(p for p, _ in chunk))
            )
    return rendered


def import_auth(settings: MixpanelSettings) -> str:
    """/import's Authorization header: the API secret, else the project token, as user name."""
    secret = settings.api_secret or settings.project_token
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


def chunks(
    members: Sequence[tuple[int, bytes]], max_events: int = MAX_EVENTS_PER_REQUEST
) -> list[list[tuple[int, bytes]]]:
    """Encoded records (with their message positions) in order, cut into JSON-array bodies
    within ``max_events`` records and MAX_BODY_BYTES."""
    found: list[list[tuple[int, bytes]]] = []
    chunk: list[tuple[int, bytes]] = []
    size = 2  # the brackets
    for member in members:
        extra = len(member[1]) + (1 if chunk else 0)
        if chunk and (len(chunk) >= max_events or size + extra > MAX_BODY_BYTES):
            found.append(chunk)
            chunk, size, extra = [], 2, len(member[1])
        chunk.append(member)
        size += extra
    if chunk:
        found.append(chunk)
    return found


def _items(message: Message, settings: MixpanelSettings) -> list[tuple[str, dict[str, Any]]]:
    kind = message.get("type")
    user_id = _valid_id(message.get("userId"))
    anonymous_id = _valid_id(message.get("anonymousId"))
    if kind == "alias":
        previous_id = _valid_id(message.get("previousId"))
        if previous_id is None or user_id is None:
            raise MessageRejected("an alias call needs a previousId and a userId Mixpanel accepts")
        return [
            (
                _TRACK,
                {
                    "event": "$create_alias",
                    "properties": {
                        "distinct_id": previous_id,
                        "alias": user_id,
                        "token": settings.project_token,
                        **_stamp(message, required=False),
                    },
                },
            )
        ]

    distinct_id = user_id or anonymous_id
    if distinct_id is None:
        raise MessageRejected(
            "Mixpanel needs a distinct_id: the message has no userId or "
            "anonymousId, or only a placeholder Mixpanel refuses"
        )
    if kind == "identify":
        found: list[tuple[str, dict[str, Any]]] = []
        traits = _object(message.get("traits"))
        if traits:
            found.append((_ENGAGE, _profile_set(message, distinct_id, traits, settings)))
        if user_id is not None and anonymous_id is not None and user_id != anonymous_id:
            found.append(
                (
                    _TRACK,
                    {
                        "event": "$identify",
                        "properties": {
                            "$identified_id": user_id,
                            "$anon_id": anonymous_id,
                            "token": settings.project_token,
                            **_stamp(message, required=False),
                        },
                    },
                )
            )
        return found

    properties = _object(message.get("properties"))
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            raise MessageRejected("a track call needs an event name")
    elif kind in PAGE_EVENTS:
        name = PAGE_EVENTS[kind]
        properties = dict(properties)
        for key in ("name", "category"):
            if isinstance(message.get(key), str) and key not in properties:
                properties[key] = message[key]
    else:
        raise MessageRejected(f"Mixpanel does not take {kind!r} calls")

    core: dict[str, Any] = {**_stamp(message, required=True), "distinct_id": distinct_id}
    if user_id is not None:
        core["$user_id"] = user_id
    if anonymous_id is not None:
        core["$device_id"] = anonymous_id
    # The message's own properties win over what context suggests, never over identity/time.
    merged = {**_context_properties(_object(message.get("context"))), **properties}
    return [
        (
            _IMPORT,
            {
                "event": name,
                "properties": {**core, **{k: v for k, v in merged.items() if k not in core}},
            },
        )
    ]


def _stamp(message: Message, *, required: bool) -> dict[str, Any]:
    """``time`` and ``$insert_id``, which /import requires on every event."""
    stamp: dict[str, Any] = {}
    millis = _millis(message.get("timestamp"))
    if millis is None:
        millis = _millis(message.get("receivedAt"))
    if millis is not None:
        stamp["time"] = millis
    elif required:
        raise MessageRejected(
            "Mixpanel needs the event's time: the message has no usable timestamp"
        )
    message_id = message.get("messageId")
    if isinstance(message_id, str) and message_id and message_id.lower() not in INVALID_IDS:
        stamp["$insert_id"] = message_id
    elif required:
        raise MessageRejected("Mixpanel needs an $insert_id: the message has no usable messageId")
    return stamp


def _profile_set(
    message: Message, distinct_id: str, traits: Mapping[str, Any], settings: MixpanelSettings
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in traits.items():
        values[SPECIAL_TRAITS.get(key, key)] = value
    update: dict[str, Any] = {"$token": settings.project_token, "$distinct_id": distinct_id}
    context = _object(message.get("context"))
    if isinstance(context.get("ip"), str) and context["ip"]:
        update["$ip"] = context["ip"]
    if context.get("active") is False:
        update["$ignore_time"] = True  # Segment's way to leave "Last Seen" alone
    update["$set"] = values
    return update


def _context_properties(context: Mapping[str, Any]) -> dict[str, Any]:
    app = _object(context.get("app"))
    device = _object(context.get("device"))
    os = _object(context.get("os"))
    network = _object(context.get("network"))
    page = _object(context.get("page"))
    screen = _object(context.get("screen"))
    campaign = _object(context.get("campaign"))
    found: dict[str, Any] = {}
    for key, value in (
        ("ip", context.get("ip")),
        ("$app_name", app.get("name")),
        ("$app_namespace", app.get("namespace")),
        ("$app_version_string", app.get("version")),
        ("$app_build_number", app.get("build")),
        ("$os", os.get("name")),
        ("$os_version", os.get("version")),
        ("$manufacturer", device.get("manufacturer")),
        ("$model", device.get("model")),
        ("$device", device.get("name")),
        ("$carrier", network.get("carrier")),
        ("$current_url", page.get("url")),
        ("$referrer", page.get("referrer")),
        ("$locale", context.get("locale")),
        ("utm_source", campaign.get("source")),
        ("utm_medium", campaign.get("medium")),
        ("utm_campaign", campaign.get("name")),
        ("utm_term", campaign.get("term")),
        ("utm_content", campaign.get("content")),
    ):
        if isinstance(value, str) and value:
            found[key] = value
    for key, value in (
        ("$wifi_enabled", network.get("wifi")),
        ("$cellular_enabled", network.get("cellular")),
        ("$bluetooth_enabled", network.get("bluetooth")),
    ):
        if isinstance(value, bool):
            found[key] = value
    for key, value in (
        ("$screen_width", screen.get("width")),
        ("$screen_height", screen.get("height")),
        ("$screen_density", screen.get("density")),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[key] = value
    advertising_id = device.get("advertisingId")
    if (
        isinstance(advertising_id, str)
        and advertising_id
        and str(os.get("name", "")).lower() in ("ios", "ipados", "iphone os")
    ):
        found["$ios_ifa"] = advertising_id
    return found


def _valid_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or text.lower() in INVALID_IDS:
        return None
    return text


def _millis(value: object) -> int | None:
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    return (parsed - _EPOCH) // _MILLISECOND


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def delete(user_ids: Sequence[str], settings: MixpanelSettings) -> list[Request]:
    """A regulation's user ids (Mixpanel's distinct ids) as GDPR deletion tasks."""
    if settings.gdpr_api_token is None:
        raise InvalidSettings(
            "Mixpanel deletes users only through its GDPR API: add gdpr_api_token (a GDPR "
            "OAuth token) to this destination's settings"
        )
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {settings.gdpr_api_token}",
    }
    url = settings.deletion_url()
    return [
        Request(
            "POST",
            url,
            headers,
            _encode(
                {
                    "distinct_ids": list(user_ids[i : i + MAX_DELETION_IDS]),
                    "compliance_type": "GDPR",
                }
            ),
            secret_headers=frozenset({"Authorization"}),
        )
        for i in range(0, len(user_ids), MAX_DELETION_IDS)
    ]


def interpret(response: Response, count: int) -> list[str | None] | None:
    """Per-record verdicts from Mixpanel's answers.

    /import with ``strict=1`` answers 400 listing ``failed_records`` (by index) while it
    ingests the rest, so only those are dropped. /engage and /track with ``verbose=1`` answer
    200 with ``status`` 0 when no record of the request was valid. A 413 for several records
    is retried: retries come back at different times and are batched anew, smaller.
    """
    try:
        body = json.loads(response.body) if response.body else None
    except ValueError:
        body = None
    if 200 <= response.status < 300:
        status = body.get("status") if isinstance(body, dict) else None
        if type(status) is int and status == 0:
            return [reasons.MESSAGE_REJECTED] * count
        return None
    if response.status == 413:
        return [RESEND] * count if count > 1 else None
    if response.status == 400 and isinstance(body, dict):
        records = body.get("failed_records")
        if not isinstance(records, list):
            return None
        failed = {
            r["index"] for r in records if isinstance(r, dict) and type(r.get("index")) is int
        }
        if not failed:
            return None
        return ["400" if i in failed else None for i in range(count)]
    return None


DEFINITION = DestinationDefinition(
    type="mixpanel",
    name=NAME,
    metadata_id="54521fd925e721e32a72eed6",
    slug="mixpanel",
    settings=MixpanelSettings,
    render=render,
    methods=frozenset({"track", "page", "screen", "identify", "alias"}),
    secrets=frozenset({"api_secret", "gdpr_api_token"}),
    batching=Batching(
        max_events=MAX_EVENTS_PER_REQUEST, max_bytes=MAX_BODY_BYTES, max_wait_seconds=1.0
    ),
    interpret=interpret,
    delete=delete,
    description="Events through Mixpanel's Import API, profiles through its Engage API.",
)
