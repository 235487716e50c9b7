"""Amplitude through its HTTP V2 API (``POST /2/httpapi``), many events per request.

The body is ``{"api_key": …, "options": {…}, "events": [...]}``; requests stay under
Amplitude's documented limits (fewer than 2,000 events and under 1 MB). Mapping, as Segment's
Amplitude destination does in cloud mode:

* ``track`` → an event named after the Segment event, ``event_properties`` = properties, and
  Amplitude's revenue fields (``revenue``, ``price``, ``quantity``, ``productId``,
  ``revenueType``) from the properties of the same names.
* ``page`` / ``screen`` → ``Loaded a Page`` / ``Loaded a Screen`` (Segment's "Track All Pages"),
  the page's name and category kept as event properties.
* ``identify`` → ``$identify`` with ``user_properties: {"$set": traits}``.
* ``group`` → ``$identify`` associating the user with the group: the group type and value
  come from the traits named in ``group_type_trait`` / ``group_value_trait``, else Segment's
  legacy ``[Segment] Group`` type with the groupId as value.
* ``alias`` is not supported (Segment maps it to Amplitude's Portfolio-only user mapping API).

``user_id`` is the userId, ``device_id`` the anonymousId (``context.device.id`` when there is
none), ``insert_id`` the messageId (Amplitude deduplicates on it), ``time`` the timestamp in
milliseconds; device, OS, location and app fields come from ``context``. Amplitude needs a
``user_id`` or ``device_id`` of at least five characters (``min_id_length`` changes that) that
is not a placeholder such as ``null``: messages without one are rejected here, not sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from pydantic import Field, HttpUrl

from headwater.destinations import integrations
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

NAME: Final = "Amplitude"
US_ENDPOINT: Final = "https://api2.amplitude.com"
EU_ENDPOINT: Final = "https://api.eu.amplitude.com"
PATH: Final = "/2/httpapi"
# The User Privacy API (v1): up to 100 user ids a request, HTTP Basic with the API key and the
# project's Secret Key.
DELETION_US: Final = "https://amplitude.com"
DELETION_EU: Final = "https://analytics.eu.amplitude.com"
DELETION_PATH: Final = "/api/2/deletions/users"
MAX_DELETION_IDS: Final = 100

# "Keep request sizes under 1 MB with fewer than 2000 events per request" (413 otherwise).
MAX_EVENTS_PER_REQUEST: Final = 1000
MAX_BODY_BYTES: Final = 1_000_000
DEFAULT_MIN_ID_LENGTH: Final = 5
# IDs Amplitude answers 400 for (its "Invalid IDs that result in a 400 error" list).
INVALID_IDS: Final = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)
LEGACY_GROUP_TYPE: Final = "[Segment] Group"
PAGE_EVENTS: Final = {"page": "Loaded a Page", "screen": "Loaded a Screen"}
# Codes for events of a refused batch that were not at fault: Amplitude ingested none of them.
RESEND: Final = "RETRY"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_encode = msgspec.json.Encoder().encode


class AmplitudeSettings(DestinationSettings):
    api_key: str = Field(min_length=1)
    # A base URL (``/2/httpapi`` is added) or a full URL with its own path, for proxies and
    # tests; without one, the US or EU ingestion host by ``eu_residency``.
    endpoint: HttpUrl | None = None
    eu_residency: bool = False
    # Amplitude drops IDs shorter than this (5 by default); sent as ``options.min_id_length``.
    min_id_length: int | None = Field(default=None, ge=1)
    group_type_trait: str | None = Field(default=None, min_length=1)
    group_value_trait: str | None = Field(default=None, min_length=1)
    # Needed only to forward deletions (the User Privacy API), as in Segment.
    secret_key: str | None = Field(default=None, min_length=1)

    def url(self) -> str:
        if self.endpoint is None:
            return (EU_ENDPOINT if self.eu_residency else US_ENDPOINT) + PATH
        url = str(self.endpoint)
        if urlsplit(url).path in ("", "/"):
            return url.rstrip("/") + PATH
        return url


def render(messages: Sequence[Message], settings: AmplitudeSettings) -> Rendered:
    rendered = Rendered()
    head: dict[str, Any] = {"api_key": settings.api_key}
    if settings.min_id_length is not None:
        head["options"] = {"min_id_length": settings.min_id_length}
    prefix = _encode(head)[:-1] + b',"events":['
    overhead = len(prefix) + len(b"]}")
    url = settings.url()
    headers = {"Content-Type": "application/json", "Accept": "*/*"}

    chunk: list[tuple[int, bytes]] = []
    size = overhead
    for position, message in enumerate(messages):
        try:
            encoded = _encode(_event(message, settings))
        except MessageRejected as exc:
            rendered.reject(position, exc)
            continue
        if overhead + len(encoded) > MAX_BODY_BYTES:
            rendered.reject(
                position,
                f"the event is {len(encoded)} bytes; an Amplitude request "
                f"must stay under {MAX_BODY_BYTES} bytes",
            )
            continue
        if chunk and (
            len(chunk) == MAX_EVENTS_PER_REQUEST or size + 1 + len(encoded) > MAX_BODY_BYTES
        ):
            rendered.outgoing.append(_outgoing(url, headers, prefix, chunk))
            chunk, size = [], overhead
        size += len(encoded) + (1 if chunk else 0)
        chunk.append((position, encoded))
    if chunk:
        rendered.outgoing.append(_outgoing(url, headers, prefix, chunk))
    return rendered


def _outgoing(
    url: str, headers: Mapping[str, str], prefix: bytes, chunk: list[tuple[int, bytes]]
) -> Outgoing:
    body = prefix + b",".join(e for _, e in chunk) + b"]}"
    return Outgoing(Request("POST", url, headers, body), tuple(p for p, _ in chunk))


def _event(message: Message, settings: AmplitudeSettings) -> dict[str, Any]:
    kind = message.get("type")
    context = _object(message.get("context"))
    device = _object(context.get("device"))
    min_length = settings.min_id_length or DEFAULT_MIN_ID_LENGTH
    user_id = _valid_id(message.get("userId"), min_length)
    device_id = _valid_id(message.get("anonymousId"), min_length) or _valid_id(
        device.get("id"), min_length
    )
    if user_id is None and device_id is None:
        raise MessageRejected(
            f"Amplitude needs a user_id or device_id of at least {min_length} characters that "
            "is not a placeholder; the message's userId, anonymousId and context.device.id "
            "give none"
        )

    options = integrations.options((NAME,), message.get("integrations"))
    properties = _object(message.get("properties"))
    event: dict[str, Any] = {}
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            raise MessageRejected("a track call needs an event name")
        event["event_type"] = name
    elif kind in PAGE_EVENTS:
        event["event_type"] = PAGE_EVENTS[kind]
    elif kind in ("identify", "group"):
        event["event_type"] = "$identify"
    else:
        raise MessageRejected(f"Amplitude does not take {kind!r} calls")

    if user_id is not None:
        event["user_id"] = user_id
    if device_id is not None:
        event["device_id"] = device_id
    millis = _millis(message.get("timestamp"))
    if millis is not None:
        event["time"] = millis
    if isinstance(message.get("messageId"), str) and message["messageId"]:
        event["insert_id"] = message["messageId"]

    if kind == "track":
        event["event_properties"] = properties
        event.update(_revenue(properties))
    elif kind in PAGE_EVENTS:
        page = dict(properties)
        for key in ("name", "category"):
            if isinstance(message.get(key), str) and key not in page:
                page[key] = message[key]
        event["event_properties"] = page
    elif kind == "identify":
        event["user_properties"] = {"$set": _object(message.get("traits"))}
    else:
        group_type, group_value = _group(message, settings)
        event["user_properties"] = {"$set": {group_type: group_value}}
        event["groups"] = {group_type: group_value}

    groups = options.get("groups")
    if isinstance(groups, dict) and groups and kind != "group":
        event["groups"] = groups
    session_id = _session_id(options.get("session_id"))
    if session_id is not None:
        event["session_id"] = session_id
    event.update(_context_fields(context, device))
    return event


def _group(message: Message, settings: AmplitudeSettings) -> tuple[str, Any]:
    group_id = message.get("groupId")
    if not isinstance(group_id, str | int) or isinstance(group_id, bool) or group_id == "":
        raise MessageRejected("a group call needs a groupId")
    traits = _object(message.get("traits"))
    if settings.group_type_trait and settings.group_value_trait:
        group_type = traits.get(settings.group_type_trait)
        group_value = traits.get(settings.group_value_trait)
        if isinstance(group_type, str) and group_type and _scalar_or_list(group_value):
            return group_type, group_value
    return LEGACY_GROUP_TYPE, str(group_id)


def _scalar_or_list(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v for v in value)
    return isinstance(value, str) and value != ""


def _revenue(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Amplitude's revenue fields; productId and revenueType only count with a price or revenue."""
    fields: dict[str, Any] = {}
    price = _number(properties.get("price"))
    revenue = _number(properties.get("revenue"))
    if price is not None:
        fields["price"] = price
        quantity = properties.get("quantity")
        if isinstance(quantity, int) and not isinstance(quantity, bool):
            fields["quantity"] = quantity
    if revenue is not None:
        fields["revenue"] = revenue
    if not fields:
        return fields
    for field, sources in (
        ("productId", ("productId", "product_id")),
        ("revenueType", ("revenueType", "revenue_type")),
    ):
        for source in sources:
            value = properties.get(source)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                fields[field] = str(value)
                break
    currency = properties.get("currency")
    if isinstance(currency, str) and len(currency) == 3:
        fields["currency"] = currency.upper()
    return fields


def _context_fields(context: Mapping[str, Any], device: Mapping[str, Any]) -> dict[str, Any]:
    os = _object(context.get("os"))
    app = _object(context.get("app"))
    network = _object(context.get("network"))
    location = _object(context.get("location"))
    library = _object(context.get("library"))
    platform = device.get("type")
    if not isinstance(platform, str) and library.get("name") == "analytics.js":
        platform = "Web"
    fields: dict[str, Any] = {}
    for field, value in (
        ("ip", context.get("ip")),
        ("user_agent", context.get("userAgent")),
        ("platform", platform),
        ("os_name", os.get("name")),
        ("os_version", os.get("version")),
        ("device_brand", device.get("brand")),
        ("device_manufacturer", device.get("manufacturer")),
        ("device_model", device.get("model")),
        ("carrier", network.get("carrier")),
        ("country", location.get("country")),
        ("region", location.get("region")),
        ("city", location.get("city")),
        ("language", context.get("locale")),
        ("app_version", app.get("version")),
    ):
        if isinstance(value, str) and value:
            fields[field] = value
    for field, key in (("location_lat", "latitude"), ("location_lng", "longitude")):
        number = _number(location.get(key))
        if number is not None:
            fields[field] = number
    advertising_id = device.get("advertisingId")
    if isinstance(advertising_id, str) and advertising_id:
        os_name = str(os.get("name", "")).lower()
        if os_name in ("ios", "ipados", "iphone os"):
            fields["idfa"] = advertising_id
        elif os_name == "android":
            fields["adid"] = advertising_id
    return fields


def _valid_id(value: Any, min_length: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if len(text) < min_length or text.lower() in INVALID_IDS:
        return None
    return text


def _session_id(value: Any) -> int | None:
    """Milliseconds since epoch, as Amplitude wants; Segment's docs show seconds and ISO dates."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if value.lstrip("-").isdigit():
            value = int(value)
        else:
            return _millis(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return None
    if value == -1 or value >= 10**11:  # -1 means "no session"; 10**11 ms is 1973
        return value
    return value * 1000 if value > 0 else None


def _millis(value: object) -> int | None:
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    return (parsed - _EPOCH) // _MILLISECOND


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def delete(user_ids: Sequence[str], settings: AmplitudeSettings) -> list[Request]:
    """A regulation's user ids as User Privacy API deletion jobs of the API key's project."""
    if settings.secret_key is None:
        raise InvalidSettings(
            "Amplitude deletes users only with the project's Secret Key: "
            "add secret_key to this destination's settings"
        )
    if settings.endpoint is not None:  # a proxy: the same origin
        parts = urlsplit(str(settings.endpoint))
        base = f"{parts.scheme}://{parts.netloc}"
    else:
        base = DELETION_EU if settings.eu_residency else DELETION_US
    credentials = f"{settings.api_key}:{settings.secret_key}".encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(credentials).decode(),
    }
    return [
        Request(
            "POST",
            base + DELETION_PATH,
            headers,
            _encode({"user_ids": list(chunk), "requester": "Headwater regulation"}),
            secret_headers=frozenset({"Authorization"}),
        )
        for chunk in _chunks(user_ids, MAX_DELETION_IDS)
    ]


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def interpret(response: Response, count: int) -> list[str | None] | None:
    """Per-event verdicts where Amplitude names the events at fault.

    Amplitude refuses the whole request on a 400 or 429, so the events it does not name were
    not ingested either and are sent again; the ones it names as invalid, missing fields or
    silenced are dropped, the throttled ones retried. A 413 for several events is retried too:
    retries come back at different times, so they are batched anew, smaller.
    """
    if 200 <= response.status < 300:
        return None
    if response.status == 413:
        return [RESEND] * count if count > 1 else None
    if response.status not in (400, 429):
        return None
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("missing_field"):
        return None  # a request-level problem (no api_key, bad JSON): every event alike
    bad: set[int] = set()
    for key in ("events_with_invalid_fields", "events_with_missing_fields"):
        by_field = body.get(key)
        if isinstance(by_field, dict):
            for indices in by_field.values():
                bad.update(_indices(indices))
    bad.update(_indices(body.get("silenced_events")))
    throttled = _indices(body.get("throttled_events"))
    if not bad and not throttled:
        return None
    return ["400" if i in bad else "429" if i in throttled else RESEND for i in range(count)]


def _indices(value: Any) -> set[int]:
    if not isinstance(value, list):
        return set()
    return {i for i in value if isinstance(i, int) and not isinstance(i, bool)}


DEFINITION = DestinationDefinition(
    type="amplitude",
    name=NAME,
    metadata_id="54521fd525e721e32a72ee91",
    slug="amplitude",
    settings=AmplitudeSettings,
    render=render,
    methods=frozenset({"track", "page", "screen", "identify", "group"}),
    secrets=frozenset({"api_key", "secret_key"}),
    batching=Batching(
        max_events=MAX_EVENTS_PER_REQUEST, max_bytes=MAX_BODY_BYTES, max_wait_seconds=1.0
    ),
    interpret=interpret,
    delete=delete,
    description="Events, page and screen views and user properties through Amplitude's "
    "HTTP V2 API.",
)
