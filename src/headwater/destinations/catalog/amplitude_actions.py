"""Amplitude (Actions): Segment's ``Actions Amplitude``, its actions and default mappings.

The actions, their fields, types, required flags and default mappings are those of
``@segment/action-destinations`` (``destinations/amplitude``, read at 3.497.0), so a mapping
saved in Segment keeps producing the same payload here; ``perform`` then builds what Segment's
action sends, with these differences:

* ``logEvent``, ``logEventV2`` → HTTP V2 (``POST /2/httpapi``, or ``/batch`` with
  ``use_batch_endpoint``): ``{"api_key", "events", "options"}``. Segment sends one event a
  request; here the events of a claim share requests, as many as the classic Amplitude
  destination puts in one (1,000 events, under 1 MB), one event per message, so Amplitude's
  per-event answer (``events_with_invalid_fields``, ``throttled_events``…) is judged per
  message by the classic module's ``interpret``. As Segment's actions do, neither sends the
  revenue fields (Segment moved revenue to ``logPurchase`` but kept the fields), and the
  ``products`` and ``use_batch_endpoint`` values Segment leaks into the event are left out.
* ``logPurchase`` → one request per message, as in Segment: the order's event with its
  revenue, then a ``Product Purchased`` event per product. Amplitude numbers events within the
  request, so an answer naming a product's event is judged for the request as a whole.
* ``identifyUser`` → Identify API (``POST /identify``, form-encoded ``api_key``,
  ``identification`` and, when set, ``options``). ``identification`` is a JSON array, so the
  identifies of a claim share requests (Segment sends one object a request, and the literal
  text ``options=undefined`` when there is no minimum ID length).
* ``groupIdentifyUser`` → Group Identify API (``POST /groupidentify``) with the group's
  properties, and, as Segment's action does when the payload has a user or device ID, an
  Identify call setting the group as a user property and in ``groups``. Its ``time`` is left
  out when missing or not a date (Segment sends the current time, or ``null``).

Amplitude drops user and device IDs shorter than ``min_id_length`` (5 unless the mapping's
``min_id_length`` field or the instance's setting says otherwise; it is then sent as
``options.min_id_length``) and answers 400 for placeholder IDs such as ``null``: such an ID is
left out, and a message left with neither is rejected (``MESSAGE_REJECTED``) rather than sent,
as the classic destination does. The group identify itself needs no user, so only the user's
association is skipped.

Not carried over: ``mapUser`` (Amplitude's Portfolio-only user mapping, unsupported by the
classic destination too) and user-agent parsing (``userAgentParsing`` is accepted but Headwater
has no user-agent parser, so only the mapped ``os_name``, ``device_model``… are sent). Nested
properties of object fields (``products[].price``) are not type-checked, as the mapping kit
checks only top-level fields. The ``library`` Amplitude sees is Segment's (``segment``, or the
source library's name through ``library2``), so existing Amplitude charts keep working.
``endpoint`` is a base URL for proxies and tests (each action adds its path); Segment's region
setting is ``eu_residency``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard
from urllib.parse import quote_plus

import msgspec
from pydantic import Field, HttpUrl

from headwater.destinations.actions import ActionDefinition
from headwater.destinations.catalog import amplitude
from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Outgoing,
    Rendered,
    Request,
    Response,
)
from headwater.destinations.javascript import truthy
from headwater.destinations.mapping import FieldSpec
from headwater.errors import MessageRejected
from headwater.timestamps import parse_timestamp

NAME: Final = "Actions Amplitude"
HTTPAPI_PATH: Final = amplitude.PATH
BATCH_PATH: Final = "/batch"
IDENTIFY_PATH: Final = "/identify"
GROUP_IDENTIFY_PATH: Final = "/groupidentify"
# Amplitude takes fewer than 2,000 events (1,024 group identifies) and under 1 MB a request.
MAX_ITEMS_PER_REQUEST: Final = amplitude.MAX_EVENTS_PER_REQUEST
MAX_EVENTS_PER_PURCHASE: Final = 1999
MAX_BODY_BYTES: Final = amplitude.MAX_BODY_BYTES
SEGMENT_LIBRARY: Final = "segment"
PRODUCT_EVENT: Final = "Product Purchased"

_JSON: Final = {"Content-Type": "application/json"}
_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_encode = msgspec.json.Encoder().encode


class AmplitudeActionsSettings(DestinationSettings):
    api_key: str = Field(min_length=1)
    # Segment asks for it to test credentials and delete users; no action here uses it.
    secret_key: str | None = None
    # A base URL for proxies and tests; each action adds its path (``/2/httpapi``…).
    endpoint: HttpUrl | None = None
    eu_residency: bool = False
    # The minimum ID length when a mapping's ``min_id_length`` field does not set one.
    min_id_length: int | None = Field(default=None, ge=1)

    def url(self, path: str) -> str:
        if self.endpoint is None:
            base = amplitude.EU_ENDPOINT if self.eu_residency else amplitude.US_ENDPOINT
        else:
            base = str(self.endpoint).rstrip("/")
        return base + path


# --- the fields, as Segment's actions declare them -----------------------------------------


def _path(path: str) -> dict[str, str]:
    return {"@path": path}


def _first(path: str, otherwise: str) -> dict[str, Any]:
    return {"@if": {"exists": _path(path), "then": _path(path), "else": _path(otherwise)}}


def _string(default: Any = None, description: str = "") -> FieldSpec:
    return FieldSpec("string", required=False, default=default, description=description)


def _object(default: Any = None, description: str = "") -> FieldSpec:
    return FieldSpec("object", required=False, default=default, description=description)


def _boolean(default: bool, description: str) -> FieldSpec:
    return FieldSpec("boolean", required=False, default=default, description=description)


_USER_ID = _string(_path("$.userId"), "Required unless a device ID is present.")
_DEVICE_ID = _string(
    _first("$.context.device.id", "$.anonymousId"), "Required unless a user ID is present."
)
_MIN_ID_LENGTH = FieldSpec(
    "integer", required=False, description="Overrides Amplitude's minimum ID length of 5."
)
_INSERT_ID = _string(description="Amplitude drops an event whose insert ID it saw in 7 days.")
_CAMPAIGN = {
    "utm_source": _path("$.context.campaign.source"),
    "utm_medium": _path("$.context.campaign.medium"),
    "utm_campaign": _path("$.context.campaign.name"),
    "utm_term": _path("$.context.campaign.term"),
    "utm_content": _path("$.context.campaign.content"),
}
_USER_AGENT: dict[str, FieldSpec] = {
    "userAgent": _string(_path("$.context.userAgent"), "The device's user agent."),
    "userAgentParsing": _boolean(True, "Accepted; Headwater does not parse user agents."),
    "includeRawUserAgent": _boolean(False, "Send userAgent as user_agent."),
}
_USER_AGENT_DATA = _object(
    {
        "model": _path("$.context.userAgentData.model"),
        "platformVersion": _path("$.context.userAgentData.platformVersion"),
    },
    "Accepted; used by user-agent parsing only.",
)
_UTM_PROPERTIES = _object(_CAMPAIGN, "Set as user properties, and once as initial_<name>.")
_REFERRER = _string(
    _path("$.context.page.referrer"),
    "Set as the referrer user property, and once as initial_referrer.",
)
_USE_BATCH_ENDPOINT = _boolean(False, "Send to Amplitude's /batch endpoint instead.")
_PRODUCTS = FieldSpec(
    "object",
    required=False,
    multiple=True,
    description="The products purchased.",
    default={
        "@arrayPath": [
            "$.properties.products",
            {
                "price": _path("price"),
                "revenue": _path("revenue"),
                "quantity": _path("quantity"),
                "productId": _path("productId"),
                "revenueType": _path("revenueType"),
            },
        ]
    },
)

# The device and location fields Segment maps for both events and identifies.
_DEVICE_FIELDS: dict[str, FieldSpec] = {
    "app_version": _string(_path("$.context.app.version")),
    "platform": _string(_path("$.context.device.type")),
    "os_name": _string(_path("$.context.os.name")),
    "os_version": _string(_path("$.context.os.version")),
    "device_brand": _string(_path("$.context.device.brand")),
    "device_manufacturer": _string(_path("$.context.device.manufacturer")),
    "device_model": _string(_path("$.context.device.model")),
    "carrier": _string(_path("$.context.network.carrier")),
    "country": _string(_path("$.context.location.country")),
    "region": _string(_path("$.context.location.region")),
    "city": _string(_path("$.context.location.city")),
    "dma": _string(description="The Designated Market Area."),
    "language": _string(_path("$.context.locale")),
}

_EVENT_FIELDS: dict[str, FieldSpec] = {
    "user_id": _USER_ID,
    "device_id": _DEVICE_ID,
    "event_type": FieldSpec(
        "string", required=True, default=_path("$.event"), description="The event's name."
    ),
    "session_id": FieldSpec(
        "datetime",
        required=False,
        default=_path("$.integrations.Actions Amplitude.session_id"),
        description="The session's start time.",
    ),
    "time": FieldSpec(
        "datetime",
        required=False,
        default=_path("$.timestamp"),
        description="When the event happened.",
    ),
    "event_properties": _object(_path("$.properties")),
    "user_properties": _object(_path("$.traits")),
    "groups": _object(description="Event-level groups (Amplitude's Accounts add-on)."),
    **_DEVICE_FIELDS,
    "price": FieldSpec("number", required=False, default=_path("$.properties.price")),
    "quantity": FieldSpec("integer", required=False, default=_path("$.properties.quantity")),
    "revenue": FieldSpec("number", required=False, default=_path("$.properties.revenue")),
    "productId": _string(_path("$.properties.productId")),
    "revenueType": _string(_path("$.properties.revenueType")),
    "location_lat": FieldSpec(
        "number", required=False, default=_path("$.context.location.latitude")
    ),
    "location_lng": FieldSpec(
        "number", required=False, default=_path("$.context.location.longitude")
    ),
    "ip": _string(_path("$.context.ip")),
    "idfa": _string(_first("$.context.device.advertisingId", "$.context.device.idfa")),
    "idfv": _string(_path("$.context.device.id")),
    "adid": _string(_first("$.context.device.advertisingId", "$.context.device.idfa")),
    "android_id": _string(),
    "event_id": FieldSpec(
        "integer", required=False, description="A counter telling apart events of the same time."
    ),
    "insert_id": _INSERT_ID,
    "library": _string(
        _path("$.context.library.name"), "The source library; analytics.js means platform Web."
    ),
    "library2": _object(
        {"behavior": "use_mapping", "mapping": _path("$.context.library.name")},
        "behavior use_mapping sends mapping as Amplitude's library, otherwise segment.",
    ),
}

_LOG_EVENT_FIELDS: dict[str, FieldSpec] = {
    **_EVENT_FIELDS,
    "products": _PRODUCTS,
    "use_batch_endpoint": _USE_BATCH_ENDPOINT,
    **_USER_AGENT,
    "utm_properties": _UTM_PROPERTIES,
    "referrer": _REFERRER,
    "min_id_length": _MIN_ID_LENGTH,
    "userAgentData": _USER_AGENT_DATA,
}

_LOG_EVENT_V2_FIELDS: dict[str, FieldSpec] = {
    **_EVENT_FIELDS,
    "products": _PRODUCTS,
    "setOnce": _object(
        {
            "initial_referrer": _path("$.context.page.referrer"),
            **{f"initial_{k}": v for k, v in _CAMPAIGN.items()},
        },
        "User properties set only when they have no value ($setOnce).",
    ),
    "setAlways": _object(
        {"referrer": _path("$.context.page.referrer"), **_CAMPAIGN},
        "User properties set with every event ($set).",
    ),
    "add": _object(description="User properties to increment ($add)."),
    "use_batch_endpoint": _USE_BATCH_ENDPOINT,
    **_USER_AGENT,
    "min_id_length": _MIN_ID_LENGTH,
    "userAgentData": _USER_AGENT_DATA,
}

_LOG_PURCHASE_FIELDS: dict[str, FieldSpec] = {
    "trackRevenuePerProduct": _boolean(False, "Put the revenue on each product's event."),
    **_LOG_EVENT_FIELDS,
}

_IDENTIFY_FIELDS: dict[str, FieldSpec] = {
    "user_id": _USER_ID,
    "device_id": _DEVICE_ID,
    "user_properties": _object(_path("$.traits")),
    "groups": _object(description="The user's groups (Amplitude's Accounts add-on)."),
    **_DEVICE_FIELDS,
    "paying": FieldSpec("boolean", required=False, description="Whether the user pays."),
    "start_version": _string(description="The version of the app the user was first on."),
    "insert_id": _INSERT_ID,
    **_USER_AGENT,
    "utm_properties": _UTM_PROPERTIES,
    "referrer": _REFERRER,
    "min_id_length": _MIN_ID_LENGTH,
    "library": _string(
        _path("$.context.library.name"), "The source library; analytics.js means platform Web."
    ),
    "userAgentData": _USER_AGENT_DATA,
}

_GROUP_IDENTIFY_FIELDS: dict[str, FieldSpec] = {
    "user_id": _USER_ID,
    "device_id": _DEVICE_ID,
    "insert_id": _INSERT_ID,
    "time": _string(_path("$.timestamp"), "When the user joined the group."),
    "group_properties": _object(_path("$.traits")),
    "group_type": FieldSpec("string", required=True, description="The group's type."),
    "group_value": FieldSpec("string", required=True, description="The group's name or id."),
    "min_id_length": _MIN_ID_LENGTH,
}

# What an event or an identification carries over from the payload as it is.
_EVENT_KEYS: Final = (
    "user_id",
    "device_id",
    "event_type",
    "event_properties",
    "user_properties",
    "groups",
    *_DEVICE_FIELDS,
    "location_lat",
    "location_lng",
    "ip",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "event_id",
    "insert_id",
)
_IDENTIFY_KEYS: Final = (
    "user_id",
    "device_id",
    "user_properties",
    "groups",
    *_DEVICE_FIELDS,
    "paying",
    "start_version",
    "insert_id",
)


# --- payloads to events and identifications --------------------------------------------------


def _min_id_length(payload: Mapping[str, Any], settings: AmplitudeActionsSettings) -> int | None:
    """The ``options.min_id_length`` to send: the mapping's, else the instance's."""
    value = payload.get("min_id_length")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return settings.min_id_length


def _valid_id(value: Any, min_length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) >= min_length
        and value.lower() not in amplitude.INVALID_IDS
    )


def _keep_valid_ids(item: dict[str, Any], min_length: int) -> bool:
    """Leave out IDs Amplitude would refuse; whether one is left."""
    for key in ("user_id", "device_id"):
        if key in item and not _valid_id(item[key], min_length):
            del item[key]
    return "user_id" in item or "device_id" in item


def _require_id(item: dict[str, Any], min_length: int) -> None:
    if not _keep_valid_ids(item, min_length):
        raise MessageRejected(
            f"Amplitude needs a user_id or device_id of at least {min_length} characters that "
            "is not a placeholder; the mapping gave none"
        )


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _millis(value: Any) -> int | None:
    """Milliseconds since the epoch, as dayjs reads a number or a date string."""
    if _is_number(value):
        return int(value) if math.isfinite(value) and value != 0 else None
    parsed = parse_timestamp(value)
    return None if parsed is None else (parsed - _EPOCH) // _MILLISECOND


def _session_id(value: Any) -> int | None:
    """Segment's ``formatSessionId``: digits as the number they spell, dates in milliseconds."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return _millis(value)


def _platform(item: dict[str, Any], library: Any) -> None:
    platform = item.get("platform")
    if isinstance(platform, str) and platform:
        platform = re.sub("ios", "iOS", platform, count=1, flags=re.IGNORECASE)
        item["platform"] = re.sub("android", "Android", platform, count=1, flags=re.IGNORECASE)
    elif library == "analytics.js":
        item["platform"] = "Web"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _merge_user_properties(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Later parts win, except that their ``$set`` and ``$setOnce`` are merged."""
    merged: dict[str, Any] = {}
    for part in parts:
        combined = {**merged, **part}
        for operation in ("$set", "$setOnce"):
            if truthy(merged.get(operation)) or truthy(part.get(operation)):
                combined[operation] = {**_dict(merged.get(operation)), **_dict(part.get(operation))}
        merged = combined
    return merged


def _campaign_parts(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The UTM parameters and referrer as ``$set`` (latest) and ``$setOnce`` (initial_)."""
    parts = []
    utm = payload.get("utm_properties")
    if isinstance(utm, dict):
        parts.append(
            {"$set": dict(utm), "$setOnce": {f"initial_{key}": value for key, value in utm.items()}}
        )
    referrer = payload.get("referrer")
    if truthy(referrer):
        parts.append({"$set": {"referrer": referrer}, "$setOnce": {"initial_referrer": referrer}})
    return parts


def _with_campaign(
    payload: Mapping[str, Any], item: dict[str, Any], *, campaign_wins: bool
) -> None:
    utm = payload.get("utm_properties")
    if not (isinstance(utm, dict) and utm) and not truthy(payload.get("referrer")):
        return
    own = {
        key: value
        for key, value in _dict(item.get("user_properties")).items()
        if key not in ("utm_properties", "referrer")
    }
    campaign = _campaign_parts(payload)
    item["user_properties"] = (
        _merge_user_properties(own, *campaign)
        if campaign_wins
        else _merge_user_properties(*campaign, own)
    )


def _with_operations(payload: Mapping[str, Any], item: dict[str, Any]) -> None:
    """``logEventV2``'s setOnce, setAlways and add, each sent when it holds a non-empty value."""
    for operation, field in (("$setOnce", "setOnce"), ("$set", "setAlways"), ("$add", "add")):
        value = payload.get(field)
        if isinstance(value, dict) and any(v != "" for v in value.values()):
            item["user_properties"] = {**_dict(item.get("user_properties")), operation: value}


def _library(payload: Mapping[str, Any]) -> dict[str, Any]:
    setting = payload.get("library2")
    if isinstance(setting, dict) and setting.get("behavior") == "use_mapping":
        mapped = setting.get("mapping")
        return {} if mapped is None else {"library": mapped}
    return {"library": SEGMENT_LIBRARY}


def _raw_user_agent(payload: Mapping[str, Any]) -> dict[str, Any]:
    if payload.get("includeRawUserAgent") and "userAgent" in payload:
        return {"user_agent": payload["userAgent"]}
    return {}


def _event_properties(payload: Mapping[str, Any], min_length: int) -> dict[str, Any]:
    """What every event of a payload shares (without the user agent and the library)."""
    item = {key: payload[key] for key in _EVENT_KEYS if key in payload}
    _require_id(item, min_length)
    _platform(item, payload.get("library"))
    time = _millis(payload.get("time"))
    if time is not None:
        item["time"] = time
    session = _session_id(payload["session_id"]) if truthy(payload.get("session_id")) else None
    if session is not None:
        item["session_id"] = session
    return item


def _log_event(payload: Mapping[str, Any], min_length: int) -> list[dict[str, Any]]:
    item = _event_properties(payload, min_length)
    _with_campaign(payload, item, campaign_wins=False)
    return [{**_raw_user_agent(payload), **item, **_library(payload)}]


def _log_event_v2(payload: Mapping[str, Any], min_length: int) -> list[dict[str, Any]]:
    item = _event_properties(payload, min_length)
    _with_operations(payload, item)
    return [{**_raw_user_agent(payload), **item, **_library(payload)}]


def _revenue(source: Mapping[str, Any]) -> dict[str, Any]:
    """Amplitude's revenue fields; revenue is price × quantity when both are numbers."""
    revenue = source.get("revenue")
    price, quantity = source.get("price"), source.get("quantity")
    if _is_number(price) and _is_number(quantity):
        revenue = quantity * price
    if not truthy(revenue):
        return {}
    found: dict[str, Any] = {"revenue": revenue}
    found["revenueType"] = (
        "Purchase" if source.get("revenueType") is None else source["revenueType"]
    )
    if _is_number(quantity):
        found["quantity"] = math.floor(quantity + 0.5)  # Math.round
    for key in ("price", "productId"):
        if key in source:
            found[key] = source[key]
    return found


def _log_purchase(payload: Mapping[str, Any], min_length: int) -> list[dict[str, Any]]:
    item = _event_properties(payload, min_length)
    _with_campaign(payload, item, campaign_wins=False)
    library = _library(payload)
    products = [p for p in payload.get("products") or () if isinstance(p, dict)]
    per_product = bool(payload.get("trackRevenuePerProduct"))
    order = {} if products and per_product else _revenue(payload)
    events = [{**_raw_user_agent(payload), **item, **order, **library}]
    insert_id = item.get("insert_id")
    for product in products:
        event = {
            **item,
            **(_revenue(product) if per_product else {}),
            "event_properties": product,
            "event_type": PRODUCT_EVENT,
        }
        event.pop("insert_id", None)
        if truthy(insert_id):
            event["insert_id"] = f"{insert_id}-{len(events) + 1}"
        events.append({**event, **library})
    if len(events) > MAX_EVENTS_PER_PURCHASE:
        raise MessageRejected(f"{len(events)} events; Amplitude takes fewer than 2,000 a request")
    return events


def _identification(payload: Mapping[str, Any], min_length: int) -> dict[str, Any]:
    item = {key: payload[key] for key in _IDENTIFY_KEYS if key in payload}
    _require_id(item, min_length)
    _platform(item, payload.get("library"))
    _with_campaign(payload, item, campaign_wins=True)
    return {**_raw_user_agent(payload), **item, "library": SEGMENT_LIBRARY}


# --- requests ----------------------------------------------------------------------------------


def _pack(
    rendered: Rendered,
    url: str,
    headers: Mapping[str, str],
    frame: tuple[bytes, bytes],
    separator: bytes,
    items: Sequence[tuple[int, bytes]],
    max_items: int,
) -> None:
    """Items into requests of at most ``max_items`` and ``MAX_BODY_BYTES``, in order."""
    head, tail = frame
    overhead = len(head) + len(tail)
    chunk: list[tuple[int, bytes]] = []
    size = overhead

    def flush() -> None:
        body = head + separator.join(encoded for _, encoded in chunk) + tail
        rendered.outgoing.append(
            Outgoing(Request("POST", url, headers, body), tuple(position for position, _ in chunk))
        )

    for position, encoded in items:
        if overhead + len(encoded) > MAX_BODY_BYTES:
            rendered.reject(
                position,
                f"the request would be {overhead + len(encoded)} bytes; "
                f"Amplitude takes requests under {MAX_BODY_BYTES} bytes",
            )
            continue
        if chunk and (
            len(chunk) == max_items or size + len(separator) + len(encoded) > MAX_BODY_BYTES
        ):
            flush()
            chunk, size = [], overhead
        size += len(encoded) + (len(separator) if chunk else 0)
        chunk.append((position, encoded))
    if chunk:
        flush()


def _json_frame(api_key: str, min_length: int | None) -> tuple[bytes, bytes]:
    head: dict[str, Any] = {"api_key": api_key}
    if min_length is not None:
        head["options"] = {"min_id_length": min_length}
    return _encode(head)[:-1] + b',"events":[', b"]}"


def _form_frame(api_key: str, min_length: int | None) -> tuple[bytes, bytes]:
    head = f"api_key={quote_plus(api_key)}&identification={quote_plus('[')}"
    tail = quote_plus("]")
    if min_length is not None:
        tail += "&options=" + quote_plus(_encode({"min_id_length": min_length}).decode())
    return head.encode(), tail.encode()


_FORM_SEPARATOR: Final = quote_plus(",").encode()


def _form_item(item: Mapping[str, Any]) -> bytes:
    return quote_plus(_encode(item).decode()).encode()


Build = Callable[[Mapping[str, Any], int], list[dict[str, Any]]]


def _events(build: Build, *, one_per_request: bool = False) -> Callable[..., Rendered]:
    def perform(
        payloads: Sequence[Mapping[str, Any]], settings: AmplitudeActionsSettings
    ) -> Rendered:
        rendered = Rendered()
        groups: dict[tuple[str, int | None], list[tuple[int, bytes]]] = {}
        for position, payload in enumerate(payloads):
            option = _min_id_length(payload, settings)
            try:
                events = build(payload, option or amplitude.DEFAULT_MIN_ID_LENGTH)
            except MessageRejected as exc:
                rendered.reject(position, exc)
                continue
            path = BATCH_PATH if payload.get("use_batch_endpoint") else HTTPAPI_PATH
            groups.setdefault((path, option), []).append(
                (position, b",".join(_encode(e) for e in events))
            )
        for (path, option), items in groups.items():
            _pack(
                rendered,
                settings.url(path),
                _JSON,
                _json_frame(settings.api_key, option),
                b",",
                items,
                1 if one_per_request else MAX_ITEMS_PER_REQUEST,
            )
        return rendered

    return perform


def identify_user(
    payloads: Sequence[Mapping[str, Any]], settings: AmplitudeActionsSettings
) -> Rendered:
    rendered = Rendered()
    groups: dict[int | None, list[tuple[int, bytes]]] = {}
    for position, payload in enumerate(payloads):
        option = _min_id_length(payload, settings)
        try:
            item = _identification(payload, option or amplitude.DEFAULT_MIN_ID_LENGTH)
        except MessageRejected as exc:
            rendered.reject(position, exc)
            continue
        groups.setdefault(option, []).append((position, _form_item(item)))
    for option, items in groups.items():
        _pack(
            rendered,
            settings.url(IDENTIFY_PATH),
            _FORM,
            _form_frame(settings.api_key, option),
            _FORM_SEPARATOR,
            items,
            MAX_ITEMS_PER_REQUEST,
        )
    return rendered


def group_identify_user(
    payloads: Sequence[Mapping[str, Any]], settings: AmplitudeActionsSettings
) -> Rendered:
    """The group's properties, and the user's association with it when the payload has a user."""
    rendered = Rendered()
    groups: dict[int | None, list[tuple[int, bytes]]] = {}
    associations: dict[int | None, list[tuple[int, bytes]]] = {}
    for position, payload in enumerate(payloads):
        option = _min_id_length(payload, settings)
        group = {payload["group_type"]: payload["group_value"]}
        member: dict[str, Any] = {
            key: payload[key] for key in ("device_id", "user_id") if key in payload
        }
        if _keep_valid_ids(member, option or amplitude.DEFAULT_MIN_ID_LENGTH):
            member.update(groups=group, user_properties=group, library=SEGMENT_LIBRARY)
            if "insert_id" in payload:
                member["insert_id"] = payload["insert_id"]
            time = _millis(payload.get("time"))
            if time is not None:
                member["time"] = time
            associations.setdefault(option, []).append((position, _form_item(member)))
        properties = {
            key: payload[key]
            for key in ("group_properties", "group_value", "group_type")
            if key in payload
        }
        groups.setdefault(option, []).append(
            (position, _form_item({**properties, "library": SEGMENT_LIBRARY}))
        )
    for option, items in associations.items():
        _pack(
            rendered,
            settings.url(IDENTIFY_PATH),
            _FORM,
            _form_frame(settings.api_key, option),
            _FORM_SEPARATOR,
            items,
            MAX_ITEMS_PER_REQUEST,
        )
    for option, items in groups.items():
        _pack(
            rendered,
            settings.url(GROUP_IDENTIFY_PATH),
            _FORM,
            _form_frame(settings.api_key, option),
            _FORM_SEPARATOR,
            items,
            MAX_ITEMS_PER_REQUEST,
        )
    return rendered


def interpret(response: Response, count: int) -> list[str | None] | None:
    """The classic destination's per-event verdicts, when the events Amplitude names are the
    request's messages; an answer naming a later event (a purchase's product) counts for the
    whole request."""
    if 200 <= response.status < 300:
        return None
    if any(i >= count for i in _named_events(response.body)):
        return None
    return amplitude.interpret(response, count)


def _named_events(body: bytes) -> set[int]:
    try:
        answer = json.loads(body)
    except ValueError:
        return set()
    if not isinstance(answer, dict):
        return set()
    lists = [answer.get("silenced_events"), answer.get("throttled_events")]
    for key in ("events_with_invalid_fields", "events_with_missing_fields"):
        by_field = answer.get(key)
        if isinstance(by_field, dict):
            lists.extend(by_field.values())
    return {
        i
        for found in lists
        if isinstance(found, list)
        for i in found
        if isinstance(i, int) and not isinstance(i, bool)
    }


DEFINITION = DestinationDefinition(
    type="amplitude-actions",
    name=NAME,
    metadata_id="5f7dd6d21ad74f3842b1fc47",
    slug="actions-amplitude",
    settings=AmplitudeActionsSettings,
    secrets=frozenset({"api_key", "secret_key"}),
    interpret=interpret,
    description="Events, purchases, user and group properties to Amplitude, as Segment's "
    "Amplitude (Actions) maps them.",
    actions={
        "logEvent": ActionDefinition(
            "logEvent",
            "Log Event",
            _LOG_EVENT_FIELDS,
            _events(_log_event),
            description="Send an event to Amplitude.",
            default_trigger='type = "track"',
        ),
        "logEventV2": ActionDefinition(
            "logEventV2",
            "Log Event V2",
            _LOG_EVENT_V2_FIELDS,
            _events(_log_event_v2),
            description="Send an event to Amplitude, with $setOnce, $set and $add user properties.",
            default_trigger='type = "track"',
        ),
        "logPurchase": ActionDefinition(
            "logPurchase",
            "Log Purchase",
            _LOG_PURCHASE_FIELDS,
            _events(_log_purchase, one_per_request=True),
            description="Send an order's revenue, and a Product Purchased event per product.",
            default_trigger='type = "track"',
        ),
        "identifyUser": ActionDefinition(
            "identifyUser",
            "Identify User",
            _IDENTIFY_FIELDS,
            identify_user,
            description="Set the user ID of a device or update user properties without an event.",
            default_trigger='type = "identify"',
        ),
        "groupIdentifyUser": ActionDefinition(
            "groupIdentifyUser",
            "Group Identify User",
            _GROUP_IDENTIFY_FIELDS,
            group_identify_user,
            description="Set or update a group's properties and add the user to the group.",
            default_trigger='type = "group"',
        ),
    },
)
