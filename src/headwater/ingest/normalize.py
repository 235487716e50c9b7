"""Turn one message as a client sent it into the message Headwater stores, or say why not.

Segment's Tracking API checks every message against the Spec and enriches it before anything
downstream sees it (receivedAt, messageId, the corrected timestamp, the client's IP, version,
channel). This module is that step, as a pure function run once per message on the ingest hot
path: it never copies a whole message, it edits the given dict in place, and every check is a
plain type test. Rules and the reasons for the choices Segment's docs leave open are in
``docs/decisions.md``.

A message is checked before it is changed, so a dropped message is recorded as the client sent
it (minus its write key).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import Any, Final

import msgspec

from headwater import reasons
from headwater.timestamps import format_timestamp, normalize_timestamp

MESSAGE_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_MESSAGE_BYTES: Final = 32 * 1024  # per batch item; Segment's "32KB", 1024-byte KB
MAX_MESSAGE_ID_LENGTH: Final = 100
MAX_PROPERTIES: Final = 10_000
CONSENT_EVENT: Final = "Segment Consent Preference Updated"
VERSION: Final = 2

# context.library.name of Segment's client-side SDKs (read from each SDK's source). Their
# messages come from the end user's device, so the request's address is the user's address.
BROWSER_LIBRARIES: Final = frozenset({"analytics.js"})  # classic and analytics-next alike
MOBILE_LIBRARIES: Final = frozenset(
    {
        "analytics-ios",
        "analytics-android",
        "analytics-swift",
        "analytics-kotlin",
        "analytics-react-native",
        "analytics-flutter",
    }
)

_encode = msgspec.json.Encoder().encode
_urandom = os.urandom


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What one HTTP request contributes to each of its messages."""

    received_at: datetime  # aware UTC, arrival time of the HTTP request
    received_at_iso: str  # format_timestamp(received_at), computed once per request
    client_ip: str | None  # remote address of the HTTP client
    batch_context: dict[str, Any] | None = None  # top-level "context" of a batch request
    batch_integrations: dict[str, Any] | None = None  # top-level "integrations"
    batch_sent_at: object = None  # top-level "sentAt" (raw)


@dataclass(frozen=True, slots=True)
class Discard:
    """A message dropped on ingest: Segment's code and a sentence saying what to fix."""

    code: str  # a constant from headwater.reasons
    detail: str


def normalize(
    item: object, request: RequestInfo, *, route_type: str | None, sent_size: int | None = None
) -> dict[str, Any] | Discard:
    """Validate and enrich one message in place; return it, or the reason it is dropped.

    ``route_type`` is the type the route implies (``/v1/track`` → ``"track"``) and wins over the
    message's own ``type``; None for batch items, which must carry one of the six types.
    ``sent_size``: the length of the item's JSON as the client sent it, when known.
    """
    if not isinstance(item, dict):
        return Discard(reasons.BAD_REQUEST, "A message must be a JSON object.")
    item.pop("writeKey", None)  # write keys never land in stored events

    if route_type is None:
        kind = item.get("type")
        if type(kind) is not str or kind not in MESSAGE_TYPES:
            return Discard(
                reasons.INVALID_TYPE,
                "A batch item needs a `type` of identify, track, page, screen, group or alias; "
                f"got {_show(kind)}.",
            )
        # The limit is on the message as stored (compact JSON, no write key). Compacting
        # never makes JSON more than 8 times longer (the worst is a number: "1e9" becomes
        # "1000000000.0"), so an item sent in 4 KB or less is under it without encoding it.
        if sent_size is not None and sent_size <= MAX_MESSAGE_BYTES // 8:
            size = sent_size
        else:
            try:
                size = len(_encode(item))
            except (TypeError, msgspec.EncodeError):
                return Discard(reasons.BAD_REQUEST, "The message cannot be encoded as JSON.")
        if size > MAX_MESSAGE_BYTES:
            return Discard(
                reasons.MESSAGE_TOO_LARGE,
                f"A batch item may be at most {MAX_MESSAGE_BYTES} bytes of JSON; "
                f"this one is {size}.",
            )
    else:
        kind = route_type

    # --- checks (nothing is written to the message until all have passed) ---------------------

    context = item.get("context")
    if context is None:
        context = {}
    elif type(context) is not dict:
        return Discard(reasons.BAD_REQUEST, "`context` must be an object.")
    if request.batch_context:
        context = _merged(request.batch_context, context)

    integrations = item.get("integrations")
    if integrations is None:
        integrations = {}
    elif type(integrations) is not dict:
        return Discard(reasons.BAD_REQUEST, "`integrations` must be an object.")
    if request.batch_integrations:
        integrations = {**request.batch_integrations, **integrations}

    user_id = item.get("userId")
    if user_id is not None:
        user_id = _id_text(user_id)
        if not user_id:
            return Discard(reasons.ID_NOT_STRING, "`userId` must be a non-empty string.")
    anonymous_id = item.get("anonymousId")
    if anonymous_id is not None:
        anonymous_id = _id_text(anonymous_id)
        if not anonymous_id:
            return Discard(reasons.ID_NOT_STRING, "`anonymousId` must be a non-empty string.")
    if user_id is None and anonymous_id is None:
        return Discard(
            reasons.NO_USER_ANON_ID, "Every message needs a `userId` or an `anonymousId`."
        )

    properties = item.get("properties")
    if properties is not None and type(properties) is not dict:
        return Discard(reasons.PROPERTIES_NOT_OBJECT, "`properties` must be an object.")

    event = None
    required_id: str | None = None  # groupId of a group call, previousId of an alias call
    if kind == "track":
        event = item.get("event")
        if event is None or event == "":
            return Discard(reasons.EVENT_NOT_DEFINED, "Track calls need an `event` name.")
        if type(event) is not str:
            return Discard(reasons.EVENT_NOT_STRING, "Track calls need an `event` string.")
    elif kind == "page" or kind == "screen":
        name = item.get("name")
        if name is not None and (type(name) is not str or not name):
            return Discard(reasons.NAME_NOT_STRING, "`name` must be a non-empty string.")
        category = item.get("category")
        if category is not None and (type(category) is not str or not category):
            return Discard(reasons.CATEGORY_NOT_STRING, "`category` must be a non-empty string.")
    elif kind == "alias":
        required_id = _id_text(item.get("previousId"))
        if not required_id:
            return Discard(
                reasons.PREVIOUS_ID_REQUIRED,
                "Alias calls need a `previousId` (a non-empty string).",
            )
    else:  # identify, group
        traits = item.get("traits")
        if traits is not None and type(traits) is not dict:
            return Discard(reasons.TRAITS_NOT_OBJECT, "`traits` must be an object.")
        if kind == "group":
            required_id = _id_text(item.get("groupId"))
            if not required_id:
                return Discard(
                    reasons.GROUP_ID_REQUIRED, "Group calls need a `groupId` (a non-empty string)."
                )

    message_id = item.get("messageId")
    if message_id is None or message_id == "":
        message_id = _new_message_id()
    else:
        message_id = _id_text(message_id)
        if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
            return Discard(
                reasons.MESSAGE_ID_INVALID,
                f"`messageId` must be a string of at most {MAX_MESSAGE_ID_LENGTH} characters.",
            )

    if event == CONSENT_EVENT:
        refused = _check_consent(context)
        if refused is not None:
            return refused

    # --- enrichment ---------------------------------------------------------------------------

    item["type"] = kind
    item["context"] = context
    item["integrations"] = integrations
    item["messageId"] = message_id
    if user_id is not None:
        item["userId"] = user_id
    if anonymous_id is not None:
        item["anonymousId"] = anonymous_id
    if required_id is not None:
        item["groupId" if kind == "group" else "previousId"] = required_id
    if properties is not None and len(properties) > MAX_PROPERTIES:
        item["properties"] = dict(islice(properties.items(), MAX_PROPERTIES))

    _set_timestamps(item, request)

    library = context.get("library")
    library_name = library.get("name") if type(library) is dict else None
    if type(library_name) is not str:  # a list or object here must not reach a set lookup
        library_name = None
    if (
        not context.get("ip")
        and request.client_ip
        and (
            library_name in BROWSER_LIBRARIES
            or library_name in MOBILE_LIBRARIES
            or context.get("direct") is True
        )
    ):
        ip = _ipv4(request.client_ip)
        if ip is not None:
            context["ip"] = ip

    item["version"] = VERSION
    channel = item.get("channel")
    if type(channel) is not str or not channel:
        item["channel"] = (
            "browser"
            if library_name in BROWSER_LIBRARIES
            else "mobile"
            if library_name in MOBILE_LIBRARIES
            else "server"
        )
    return item


def _set_timestamps(item: dict[str, Any], request: RequestInfo) -> None:
    """Segment's four timestamps: timestamp = receivedAt - (sentAt - originalTimestamp)."""
    received_iso = request.received_at_iso
    item["receivedAt"] = received_iso

    # A client's `timestamp` is the event time it asks for, so it becomes originalTimestamp;
    # an `originalTimestamp` it sent itself is the fallback. Unparseable values count as absent.
    original = None
    raw = item.get("timestamp")
    if raw is not None:
        original = normalize_timestamp(raw)
    if original is None:
        raw = item.get("originalTimestamp")
        if raw is not None:
            original = normalize_timestamp(raw)

    raw = item.get("sentAt")
    if raw is None:
        raw = request.batch_sent_at
    sent = normalize_timestamp(raw) if raw is not None else None
    if sent is None:
        item.pop("sentAt", None)
    else:
        item["sentAt"] = sent[1]

    if original is None:
        item.pop("originalTimestamp", None)
        item["timestamp"] = received_iso
        return
    item["originalTimestamp"] = original[1]
    if sent is None:
        item["timestamp"] = original[1]
        return
    try:
        item["timestamp"] = format_timestamp(request.received_at - (sent[0] - original[0]))
    except OverflowError:  # a skew that leaves datetime's range (year 1..9999)
        item["timestamp"] = original[1]


def _check_consent(context: dict[str, Any]) -> Discard | None:
    """Segment's checks for its reserved consent event (Delivery Overview's consent codes)."""
    consent = context.get("consent")
    preferences = consent.get("categoryPreferences") if type(consent) is dict else None
    if preferences is None:
        return Discard(
            reasons.CONSENT_CATEGORYPREFERENCES_SHOULD_EXIST,
            f"A {CONSENT_EVENT!r} event needs `context.consent.categoryPreferences`.",
        )
    if type(preferences) is not dict:
        return Discard(
            reasons.CONSENT_CATEGORYPREFERENCES_SHOULD_BE_OBJECT,
            "`context.consent.categoryPreferences` must be an object.",
        )
    for category, value in preferences.items():
        if type(value) is not bool:
            return Discard(
                reasons.CONSENT_CATEGORYPREFERENCES_FIELDS_SHOULD_BE_BOOL,
                f"`context.consent.categoryPreferences` values must be true or false; "
                f"{category!r} is {_show(value)}.",
            )
    version = consent.get("version") if type(consent) is dict else None
    if version is not None and (type(version) is not int and type(version) is not float):
        return Discard(
            reasons.CONSENT_VERSION_SHOULD_BE_NUMBER, "`context.consent.version` must be a number."
        )
    device = context.get("device")
    advertising_id = device.get("advertisingId") if type(device) is dict else None
    if advertising_id is not None and type(advertising_id) is not str:
        return Discard(
            reasons.DEVICE_ADVERTISINGID_SHOULD_BE_STRING,
            "`context.device.advertisingId` must be a string.",
        )
    return None


def _merged(batch: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A copy of the batch's context with the item's on top, merged at every depth.

    The batch's dicts are shared by all its items, so they are copied, never edited.
    """
    merged: dict[str, Any] = _copy(batch)
    _merge_into(merged, own)
    return merged


def _copy(value: Any) -> Any:
    if type(value) is dict:
        return {key: _copy(inner) for key, inner in value.items()}
    if type(value) is list:
        return [_copy(inner) for inner in value]
    return value


def _merge_into(target: dict[str, Any], own: dict[str, Any]) -> None:
    for key, value in own.items():
        existing = target.get(key)
        if type(value) is dict and type(existing) is dict:
            _merge_into(existing, value)
        else:
            target[key] = value


def _id_text(value: object) -> str:
    """An id as a string, numbers spelled as JavaScript would; "" when it cannot be one."""
    if type(value) is str:
        return value
    if type(value) is int:  # not bool: type(True) is bool
        return str(value)
    if type(value) is float:
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return ""


def _new_message_id() -> str:
    """``api-`` and a random UUID (v4), from the OS's generator so forked workers never repeat."""
    raw = bytearray(_urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = raw.hex()
    return f"api-{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


@lru_cache(maxsize=4096)
def _ipv4(address: str) -> str | None:
    """The address if it is IPv4 (IPv4-mapped IPv6 unwrapped); Segment doesn't collect IPv6."""
    if address[:7].lower() == "::ffff:":
        address = address[7:]
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        return None


def _show(value: object) -> str:
    """A short rendering of a bad value for a discard's detail."""
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
