"""Mixpanel (Actions): Segment's Actions version of Mixpanel, its fields and default mappings.

The actions, their fields, types, required flags and default mappings are those of Segment's
``@segment/action-destinations`` (``destinations/mixpanel``, read at 3.497.0), so a mapping
saved in Segment renders the same payload here; what each action then sends follows that
package too, checked against Mixpanel's Ingestion API reference:

* ``trackEvent`` → ``POST /import?strict=1`` (a JSON array, HTTP Basic with the API secret or
  the project token). The properties are Segment's: ``time`` in ms, ``distinct_id`` (``""``
  when unmapped: Mixpanel's "no user"), ``$device_id`` / ``$user_id`` for Simplified ID Merge,
  ``$insert_id`` (Mixpanel's dedup key), the standard ``$os``, ``$browser`` (from the user
  agent) ..., ``utm_*``, ``mp_lib``, ``$source``, then the mapped event properties, which
  cannot override Mixpanel's reserved ones (``time``, ``distinct_id``, ``$insert_id`` ...).
  ``batch_size`` events a request (1,000 unless mapped; at most 2,000 and 2 MB, the classic
  module's limits); ``enable_batching: false`` sends one event a request.
* ``trackPurchase`` → the same request with the order's event and, with
  ``generatePurchaseEventPerProduct``, one ``Product Purchased`` event per product (the order's
  properties less its totals, the product's fields, ``$insert_id`` prefixed with the index,
  ``time`` 1 ms earlier per product, as Segment sends).
* ``identifyUser`` → an ``$identify`` event on ``/track`` linking the anonymous ID to the user
  ID (Original ID Merge; Simplified ID Merge links through the events' ``$device_id`` and
  ``$user_id`` instead), then a profile ``$set`` on ``/engage`` whose special traits become
  ``$email``, ``$first_name``, ``$name`` (first and last name joined when no name) ...
* ``groupIdentifyUser`` → a group profile ``$set`` on ``/groups``; the group key is
  ``$group_id`` unless mapped, and a trait named like the key overrides the group ID, as in
  the classic destination.
* ``alias`` → a ``$create_alias`` event on ``/track``.

``/track``, ``/engage`` and ``/groups`` get one ``data=<json>`` form post per event as Segment
sends them, with ``verbose=1`` so that the classic module's ``interpret`` can tell a refused
record (``status: 0``) from an accepted one; ``/engage`` also gets ``ip=0`` so that profiles
are not placed where Headwater runs. ``/import`` lists one message position per record, so a
400's ``failed_records`` fails exactly the messages whose records failed, purchases included.
Where Headwater departs from Segment's code it is to refuse, before sending, what Mixpanel
would refuse anyway, or to make retries safe (a missing ``insert_id`` becomes a hash of the
payload, not a random id). Settings are the classic module's (an ``endpoint`` URL rather than
Segment's region list; ``/import`` always strict, which per-record verdicts need) plus
``source_name``. Segment's ``incrementProperties`` action and its preset mappings are not
carried over.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Final

import msgspec

from headwater.destinations.actions import ActionDefinition
from headwater.destinations.catalog.mixpanel import (
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_REQUEST,
    MixpanelSettings,
    chunks,
    import_auth,
    interpret,
)
from headwater.destinations.definition import (
    Batching,
    DestinationDefinition,
    Outgoing,
    Rendered,
    Request,
)
from headwater.destinations.javascript import truthy
from headwater.destinations.mapping import FieldSpec
from headwater.timestamps import parse_timestamp

NAME: Final = "Mixpanel (Actions)"
DEFAULT_BATCH_SIZE: Final = 1000
# Event properties a mapping cannot override (Segment's list).
RESERVED: Final = frozenset(
    {"time", "id", "$anon_id", "distinct_id", "$group_id", "$insert_id", "$user_id"}
)
# Order properties Product Purchased events leave out.
ORDER_TOTALS: Final = frozenset(
    {
        "affiliation",
        "subtotal",
        "total",
        "revenue",
        "shipping",
        "tax",
        "discount",
        "coupon",
        "currency",
        "order_number",
        "products",
    }
)
PRODUCT_EVENT: Final = "Product Purchased"
_CREATED: Final = ("created", "createdAt", "created_at")
# User traits that become Mixpanel's reserved profile properties ($email, $first_name ...).
_USER_SPECIALS: Final = frozenset(
    {*_CREATED, "email", "firstName", "lastName", "name", "username", "phone"}
)

_encode = msgspec.json.Encoder().encode
_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded"}


class MixpanelActionsSettings(MixpanelSettings):
    # Sent as segment_source_name with every event when set (Segment's "Source Name").
    source_name: str | None = None


def _path(path: str) -> dict[str, str]:
    return {"@path": path}


def _either(first: str, second: str) -> dict[str, Any]:
    return {"@if": {"exists": _path(first), "then": _path(first), "else": _path(second)}}


def _string(path: str | dict[str, Any], description: str) -> FieldSpec:
    default = _path(path) if isinstance(path, str) else path
    return FieldSpec("string", required=False, description=description, default=default)


_EVENT_PROPERTIES: Final[dict[str, FieldSpec]] = {
    "distinct_id": _string(_either("$.userId", "$.anonymousId"), "A distinct ID specified by you."),
    "anonymous_id": _string(
        "$.anonymousId", "A distinct ID randomly generated prior to calling identify."
    ),
    "user_id": _string("$.userId", "The distinct ID after calling identify."),
    "group_id": _string("$.context.groupId", "The group that performed this event."),
    "insert_id": _string("$.messageId", "Mixpanel's deduplication key."),
    "time": FieldSpec(
        "datetime",
        required=False,
        default=_path("$.timestamp"),
        description="When the event happened; Mixpanel's receipt time if empty.",
    ),
    "app_name": _string("$.context.app.name", "The name of your application."),
    "app_namespace": _string("$.context.app.namespace", "The namespace of your application."),
    "app_build": _string("$.context.app.build", "The current build of your application."),
    "app_version": _string("$.context.app.version", "The current version of your application."),
    "os_name": _string("$.context.os.name", "The operating system or browser."),
    "os_version": _string("$.context.os.version", "Its version."),
    "device_id": _string("$.context.device.id", "A unique identifier for the device."),
    "device_type": _string("$.context.device.type", "The type of the user's device."),
    "device_name": _string("$.context.device.name", "The name of the user's device."),
    "device_manufacturer": _string("$.context.device.manufacturer", "The device manufacturer."),
    "device_model": _string("$.context.device.model", "The device model."),
    "bluetooth": FieldSpec(
        "boolean",
        required=False,
        default=_path("$.context.network.bluetooth"),
        description="Whether bluetooth is enabled.",
    ),
    "carrier": _string("$.context.network.carrier", "The user's carrier."),
    "cellular": FieldSpec(
        "boolean",
        required=False,
        default=_path("$.context.network.cellular"),
        description="Whether cellular is enabled.",
    ),
    "wifi": FieldSpec(
        "boolean",
        required=False,
        default=_path("$.context.network.wifi"),
        description="Whether the device has an active Wifi connection.",
    ),
    "country": _string("$.context.location.country", "The user's current country."),
    "region": _string("$.context.location.region", "The user's current region."),
    "language": _string("$.context.locale", "The language set by the user."),
    "library_name": _string("$.context.library.name", "The SDK that sent the event."),
    "library_version": _string("$.context.library.version", "Its version."),
    "ip": _string("$.context.ip", "The user's IP address, for geolocation only."),
    "idfa": _string(
        _either("$.context.device.advertisingId", "$.context.device.idfa"),
        "Identifier for Advertiser (iOS).",
    ),
    "url": _string("$.context.page.url", "The full URL of the page."),
    "screen_width": FieldSpec(
        "number",
        required=False,
        default=_path("$.context.screen.width"),
        description="Screen width in pixels.",
    ),
    "screen_height": FieldSpec(
        "number",
        required=False,
        default=_path("$.context.screen.height"),
        description="Screen height in pixels.",
    ),
    "screen_density": FieldSpec(
        "number",
        required=False,
        default=_path("$.context.screen.density"),
        description="Pixel density of the screen.",
    ),
    "referrer": _string("$.context.page.referrer", "The referrer URL."),
    "userAgent": _string("$.context.userAgent", "The user agent; gives $browser."),
    "advertising_id": _string("$.context.device.advertisingId", "The advertising ID."),
    "ad_tracking_enabled": _string(
        "$.context.device.adTrackingEnabled", "Whether ad tracking is enabled (true or false)."
    ),
    "timezone": _string("$.context.timezone", "The event's timezone."),
    "app_platform": _string("$.context.app.platform", "The app platform."),
    "name": _string(_either("$.event", "$.name"), "The event's original name."),
    "event_properties": FieldSpec(
        "object",
        required=False,
        default=_path("$.properties"),
        description="Further properties of the event.",
    ),
    "context": FieldSpec(
        "object",
        required=False,
        default=_path("$.context"),
        description="The event's context (hidden in Segment).",
    ),
    "utm_properties": FieldSpec(
        "object",
        required=False,
        description="UTM tracking properties.",
        default={
            f"utm_{key}": _path(f"$.context.campaign.{source}")
            for key, source in (
                ("source", "source"),
                ("medium", "medium"),
                ("campaign", "name"),
                ("term", "term"),
                ("content", "content"),
            )
        },
    ),
    "enable_batching": FieldSpec(
        "boolean", required=False, default=True, description="Send events to Mixpanel in batches."
    ),
    "batch_size": FieldSpec(
        "number",
        required=False,
        default=DEFAULT_BATCH_SIZE,
        description=f"Events per request, up to {MAX_EVENTS_PER_REQUEST}.",
    ),
    "userAgentData": FieldSpec(
        "object",
        required=False,
        description="User agent client hints of the device.",
        default={
            key: _path(f"$.context.userAgentData.{key}")
            for key in (
                "mobile",
                "platform",
                "architecture",
                "bitness",
                "model",
                "platformVersion",
                "uaFullVersion",
                "wow64",
            )
        },
    ),
}
_EVENT_NAME: Final = FieldSpec(
    "string",
    required=True,
    default=_path("$.event"),
    description="The name of the action being performed.",
)
TRACK_EVENT_FIELDS: Final = {"event": _EVENT_NAME, **_EVENT_PROPERTIES}
_PRODUCT_KEYS: Final = (
    "product_id",
    "sku",
    "category",
    "name",
    "brand",
    "variant",
    "price",
    "quantity",
    "coupon",
    "position",
    "url",
    "image_url",
)
TRACK_PURCHASE_FIELDS: Final = {
    "generatePurchaseEventPerProduct": FieldSpec(
        "boolean",
        required=False,
        default=True,
        description=f"Also send a {PRODUCT_EVENT!r} event for each product.",
    ),
    **_EVENT_PROPERTIES,
    "products": FieldSpec(
        "object",
        required=False,
        multiple=True,
        description="Products in the order.",
        default={
            "@arrayPath": ["$.properties.products", {key: _path(key) for key in _PRODUCT_KEYS}]
        },
    ),
    "event": _EVENT_NAME,
}
IDENTIFY_USER_FIELDS: Final = {
    "ip": _string("$.context.ip", "The user's IP address, for geolocation only."),
    "user_id": _string("$.userId", "The unique user identifier set by you."),
    "anonymous_id": _string("$.anonymousId", "The generated anonymous ID for the user."),
    "traits": FieldSpec(
        "object",
        required=False,
        default=_path("$.traits"),
        description="Properties to set on the user profile.",
    ),
}
GROUP_IDENTIFY_USER_FIELDS: Final = {
    "group_key": FieldSpec(
        "string",
        required=False,
        description="The group key set up in Mixpanel; $group_id if empty.",
    ),
    "group_id": FieldSpec(
        "string",
        required=True,
        default=_path("$.groupId"),
        description="The group; a trait named like the group key overrides.",
    ),
    "traits": FieldSpec(
        "object",
        required=False,
        default=_path("$.traits"),
        description="Properties to set on the group profile.",
    ),
}
ALIAS_FIELDS: Final = {
    "alias": _string(
        _either("$.userId", "$.anonymousId"), "A new distinct ID to merge with the original one."
    ),
    "distinct_id": _string("$.previousId", "The distinct ID to merge with the alias."),
}


# --- track ------------------------------------------------------------------------------------


def track_event(
    payloads: Sequence[Mapping[str, Any]], settings: MixpanelActionsSettings
) -> Rendered:
    return _import(payloads, settings, lambda p: [_event(p, settings)])


def track_purchase(
    payloads: Sequence[Mapping[str, Any]], settings: MixpanelActionsSettings
) -> Rendered:
    return _import(payloads, settings, lambda p: _purchase(p, settings))


def _import(
    payloads: Sequence[Mapping[str, Any]],
    settings: MixpanelActionsSettings,
    records: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
) -> Rendered:
    """Records in batches; each request lists a message's position once per record of it."""
    rendered = Rendered()
    per_message: list[list[tuple[int, bytes]]] = []
    for position, payload in enumerate(payloads):
        encoded = [_encode(r) for r in records(payload)]
        too_large = [len(e) for e in encoded if len(e) >= MAX_EVENT_BYTES]
        if too_large:
            rendered.reject(
                position,
                f"the event is {too_large[0]} bytes; Mixpanel takes events "
                f"under {MAX_EVENT_BYTES} bytes",
            )
            continue
        per_message.append([(position, e) for e in encoded])
    if not per_message:
        return rendered
    first = payloads[per_message[0][0][0]]
    if first.get("enable_batching") is False:
        groups, size = per_message, MAX_EVENTS_PER_REQUEST
    else:
        groups = [[m for members in per_message for m in members]]
        size = max(
            1, min(int(first.get("batch_size") or DEFAULT_BATCH_SIZE), MAX_EVENTS_PER_REQUEST)
        )
    url = f"{settings.base()}/import?strict=1"
    headers = {"Content-Type": "application/json", "Authorization": import_auth(settings)}
    for group in groups:
        for chunk in chunks(group, size):
            body = b"[" + b",".join(e for _, e in chunk) + b"]"
            rendered.outgoing.append(
                Outgoing(Request("POST", url, headers, body), tuple(p for p, _ in chunk))
            )
    return rendered


def _event(payload: Mapping[str, Any], settings: MixpanelActionsSettings) -> dict[str, Any]:
    return {"event": payload["event"], "properties": _properties(payload, settings)}


def _purchase(
    payload: Mapping[str, Any], settings: MixpanelActionsSettings
) -> list[dict[str, Any]]:
    order = _event(payload, settings)
    found = [order]
    products = payload.get("products")
    if products and payload.get("generatePurchaseEventPerProduct"):
        shared = {k: v for k, v in order["properties"].items() if k not in ORDER_TOTALS}
        at, insert_id = shared["time"], shared["$insert_id"]
        for n, product in enumerate(products):
            found.append(
                {
                    "event": PRODUCT_EVENT,
                    "properties": {
                        **shared,
                        "$insert_id": f"{n}{insert_id}",
                        "time": at - n - 1,
                        **product,
                    },
                }
            )
    return found


def _properties(payload: Mapping[str, Any], settings: MixpanelActionsSettings) -> dict[str, Any]:
    """Segment's event properties; unmapped ones are left out, as JSON leaves out undefined."""
    get = payload.get
    browser = version = None
    agent = get("userAgent")
    if isinstance(agent, str):
        browser = _browser(agent)
        version = _browser_version(agent, browser)
    utm = _object(get("utm_properties"))
    hints = _object(get("userAgentData"))
    integration = _object(_object(get("context")).get("integration"))
    library = get("library_name")
    found: dict[str, Any] = {
        "time": _time(get("time")),
        "ip": get("ip"),
        "id": get("distinct_id"),
        "$anon_id": get("anonymous_id"),
        "distinct_id": get("distinct_id", ""),
        "$app_build_number": get("app_build"),
        "$app_version_string": get("app_version"),
        "$app_namespace": get("app_namespace"),
        "$app_name": get("app_name"),
        "$browser": browser,
        "$browser_version": version,
        "$bluetooth_enabled": get("bluetooth"),
        "$cellular_enabled": get("cellular"),
        "$carrier": get("carrier"),
        "$current_url": get("url"),
        "$device": get("device_name"),
        "$device_id": get("anonymous_id"),
        "$device_type": get("device_type"),
        "$device_name": get("device_name"),
        "$group_id": get("group_id"),
        "$identified_id": get("user_id"),
        "$insert_id": get("insert_id") or _fallback_insert_id(payload),
        "$ios_ifa": get("idfa"),
        "$lib_version": get("library_version"),
        "$locale": get("language"),
        "$manufacturer": get("device_manufacturer"),
        "$model": get("device_model"),
        "$os": get("os_name"),
        "$os_version": get("os_version"),
        "$referrer": get("referrer"),
        "$screen_height": get("screen_height"),
        "$screen_width": get("screen_width"),
        "$screen_density": get("screen_density"),
        "$source": "Iterable" if integration.get("name") == "Iterable" else "segment",
        "$user_id": get("user_id"),
        "$wifi_enabled": get("wifi"),
        "mp_country_code": get("country"),
        "mp_lib": f"Segment Actions: {library}" if library else None,
        "segment_source_name": settings.source_name,
        "utm_campaign": utm.get("utm_campaign"),
        "utm_content": utm.get("utm_content"),
        "utm_medium": utm.get("utm_medium"),
        "utm_source": utm.get("utm_source"),
        "utm_term": utm.get("utm_term"),
        "advertising_id": get("advertising_id"),
        "ad_tracking_enabled": get("ad_tracking_enabled"),
        "timezone": get("timezone"),
        "app_platform": get("app_platform"),
        "event_original_name": get("name"),
        "$mobile": hints.get("mobile"),
        "$platform": hints.get("platform"),
        "$bitness": hints.get("bitness"),
        "$platformVersion": hints.get("platformVersion"),
        "$uaFullVersion": hints.get("uaFullVersion"),
        "$wow64": hints.get("wow64"),
    }
    properties = {k: v for k, v in found.items() if v is not None}
    properties.update(
        (k, v) for k, v in _object(get("event_properties")).items() if k not in RESERVED
    )
    return properties


def _time(value: Any) -> int:
    """Milliseconds for an ISO or RFC 2822 date; numbers (s or ms, both fine for Mixpanel) as
    they are; now when there is no usable time, as Segment does."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return int(value)
        parsed = parse_timestamp(value)
        if parsed is None:
            try:
                parsed = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
        if parsed is not None:
            return int(parsed.timestamp() * 1000)
    return int(time.time() * 1000)


def _fallback_insert_id(payload: Mapping[str, Any]) -> str:
    """The same for every attempt of a message, so Mixpanel drops retried duplicates."""
    return hashlib.sha256(_encode(payload)).hexdigest()[:32]


_BLACKBERRY: Final = re.compile("BlackBerry|PlayBook|BB10", re.IGNORECASE)
# Segment's browser detection from the user agent, first match wins.
_BROWSERS: Final[tuple[tuple[str, Callable[[str], bool]], ...]] = (
    ("Opera Mini", lambda ua: " OPR/" in ua and "Mini" in ua),
    ("Opera", lambda ua: " OPR/" in ua),
    ("BlackBerry", lambda ua: _BLACKBERRY.search(ua) is not None),
    ("Internet Explorer Mobile", lambda ua: "IEMobile" in ua or "WPDesktop" in ua),
    ("Samsung Internet", lambda ua: "SamsungBrowser/" in ua),
    ("Microsoft Edge", lambda ua: "Edge" in ua or "Edg/" in ua),
    ("Facebook Mobile", lambda ua: "FBIOS" in ua),
    ("Chrome", lambda ua: "Chrome" in ua),
    ("Chrome iOS", lambda ua: "CriOS" in ua),
    ("UC Browser", lambda ua: "UCWEB" in ua or "UCBrowser" in ua),
    ("Firefox iOS", lambda ua: "FxiOS" in ua),
    ("Mobile Safari", lambda ua: "Safari" in ua and "iPhone" in ua),
    ("Safari", lambda ua: "Safari" in ua),
    ("Android Mobile", lambda ua: "Android" in ua),
    ("Konqueror", lambda ua: "Konqueror" in ua),
    ("Firefox", lambda ua: "Firefox" in ua),
    ("Internet Explorer", lambda ua: "MSIE" in ua or "Trident/" in ua),
    ("Mozilla", lambda ua: "Gecko" in ua),
)
_V: Final = r"(?P<v>\d+(?:\.\d+)+)"
_VERSIONS: Final = {
    browser: re.compile(pattern + _V)
    for browser, pattern in (
        ("Internet Explorer Mobile", "rv:"),
        ("Microsoft Edge", "Edge?/"),
        ("Chrome", "Chrome/"),
        ("Chrome iOS", "CriOS/"),
        ("UC Browser", "(?:UCBrowser|UCWEB)/"),
        ("Safari", "Version/"),
        ("Mobile Safari", "Version/"),
        ("Opera", "(?:Opera|OPR)/"),
        ("Firefox", "Firefox/"),
        ("Firefox iOS", "FxiOS/"),
        ("Konqueror", "Konqueror:"),
        ("BlackBerry", "BlackBerry "),
        ("Android Mobile", r"android\s"),
        ("Samsung Internet", "SamsungBrowser/"),
        ("Internet Explorer", "(?:rv:|MSIE )"),
        ("Mozilla", "rv:"),
    )
}


def _browser(agent: str) -> str:
    return next((name for name, test in _BROWSERS if test(agent)), "")


def _browser_version(agent: str, browser: str) -> str | None:
    pattern = _VERSIONS.get(browser)
    found = pattern.search(agent) if pattern is not None else None
    return found.group("v") if found else None


# --- identities and profiles ------------------------------------------------------------------


def identify_user(
    payloads: Sequence[Mapping[str, Any]], settings: MixpanelActionsSettings
) -> Rendered:
    rendered = Rendered()
    for position, payload in enumerate(payloads):
        user_id, anonymous_id = payload.get("user_id"), payload.get("anonymous_id")
        traits = _object(payload.get("traits"))
        distinct_id = user_id or anonymous_id
        if traits and not distinct_id:
            rendered.reject(position, "a profile update needs a user ID or an anonymous ID")
            continue
        if user_id and anonymous_id and user_id != anonymous_id:
            rendered.outgoing.append(
                Outgoing(
                    _form(
                        settings,
                        "/track?verbose=1",
                        {
                            "event": "$identify",
                            "properties": _defined(
                                {
                                    "$identified_id": user_id,
                                    "$anon_id": anonymous_id,
                                    "token": settings.project_token,
                                    "segment_source_name": settings.source_name,
                                }
                            ),
                        },
                    ),
                    (position,),
                )
            )
        if traits:
            rendered.outgoing.append(
                Outgoing(
                    _form(
                        settings,
                        "/engage?verbose=1&ip=0",
                        _defined(
                            {
                                "$token": settings.project_token,
                                "$distinct_id": distinct_id,
                                "$ip": payload.get("ip"),
                                "$set": _profile(traits),
                            }
                        ),
                    ),
                    (position,),
                )
            )
    return rendered


def _profile(traits: Mapping[str, Any]) -> dict[str, Any]:
    """Traits with Segment's special ones as Mixpanel's reserved profile properties."""
    found = {k: v for k, v in traits.items() if k not in _USER_SPECIALS}
    created = _first(traits, _CREATED)
    if created is not None:
        found["$created"] = created
    for key, reserved in (
        ("email", "$email"),
        ("firstName", "$first_name"),
        ("lastName", "$last_name"),
    ):
        if key in traits:
            found[reserved] = traits[key]
    first, last = traits.get("firstName"), traits.get("lastName")
    if traits.get("name") is not None:
        found["$name"] = traits["name"]
    elif isinstance(first, str) and first and isinstance(last, str) and last:
        found["$name"] = f"{first} {last}"
    for key, reserved in (("username", "$username"), ("phone", "$phone")):
        if key in traits:
            found[reserved] = traits[key]
    return found


def group_identify_user(
    payloads: Sequence[Mapping[str, Any]], settings: MixpanelActionsSettings
) -> Rendered:
    rendered = Rendered()
    for position, payload in enumerate(payloads):
        traits = payload.get("traits")
        if not isinstance(traits, dict):
            rendered.reject(position, "traits is a required field")
            continue
        key = payload.get("group_key") or "$group_id"
        group_id = traits.get(key)
        if not truthy(group_id):
            group_id = payload["group_id"]
        values = {k: v for k, v in traits.items() if k not in _CREATED and k != "name"}
        if "name" in traits:
            values["$name"] = traits["name"]
        created = _first(traits, _CREATED)
        if created is not None:
            values["$created"] = created
        rendered.outgoing.append(
            Outgoing(
                _form(
                    settings,
                    "/groups?verbose=1",
                    {
                        "$token": settings.project_token,
                        "$group_key": key,
                        "$group_id": group_id,
                        "$set": values,
                    },
                ),
                (position,),
            )
        )
    return rendered


def alias(payloads: Sequence[Mapping[str, Any]], settings: MixpanelActionsSettings) -> Rendered:
    rendered = Rendered()
    for position, payload in enumerate(payloads):
        new_id, distinct_id = payload.get("alias"), payload.get("distinct_id")
        if not new_id or not distinct_id:
            rendered.reject(position, "an alias needs a distinct ID (previousId) and an alias")
            continue
        rendered.outgoing.append(
            Outgoing(
                _form(
                    settings,
                    "/track?verbose=1",
                    {
                        "event": "$create_alias",
                        "properties": _defined(
                            {
                                "distinct_id": distinct_id,
                                "alias": new_id,
                                "token": settings.project_token,
                                "segment_source_name": settings.source_name,
                            }
                        ),
                    },
                ),
                (position,),
            )
        )
    return rendered


def _form(settings: MixpanelActionsSettings, path: str, data: Mapping[str, Any]) -> Request:
    """One update or event as Mixpanel's form post: ``data=<json>``."""
    body = urllib.parse.urlencode({"data": _encode(data).decode()}).encode()
    return Request("POST", settings.base() + path, _FORM, body)


def _first(values: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((values[k] for k in keys if values.get(k) is not None), None)


def _defined(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


DEFINITION = DestinationDefinition(
    type="mixpanel-actions",
    name=NAME,
    metadata_id="615c7438d93d9b61b1e9e192",
    slug="actions-mixpanel",
    settings=MixpanelActionsSettings,
    secrets=frozenset({"api_secret"}),
    # Lets the delivery worker wait briefly for trackEvent batches to fill.
    batching=Batching(
        max_events=MAX_EVENTS_PER_REQUEST, max_bytes=MAX_BODY_BYTES, max_wait_seconds=1.0
    ),
    interpret=interpret,
    description="Mixpanel through Segment's Actions mappings: events, purchases, user and "
    "group profiles, aliases.",
    actions={
        "trackEvent": ActionDefinition(
            "trackEvent",
            "Track Event",
            TRACK_EVENT_FIELDS,
            track_event,
            description="Send an event to Mixpanel.",
            default_trigger='type = "track"',
            batch_size_field="batch_size",
        ),
        "trackPurchase": ActionDefinition(
            "trackPurchase",
            "Track Purchase",
            TRACK_PURCHASE_FIELDS,
            track_purchase,
            description="Send an Order Completed event, and a Product Purchased event per product.",
            default_trigger='type = "track"',
            batch_size_field="batch_size",
        ),
        "identifyUser": ActionDefinition(
            "identifyUser",
            "Identify User",
            IDENTIFY_USER_FIELDS,
            identify_user,
            description="Link the anonymous ID to the user ID and set profile properties.",
            default_trigger='type = "identify"',
        ),
        "groupIdentifyUser": ActionDefinition(
            "groupIdentifyUser",
            "Group Identify User",
            GROUP_IDENTIFY_USER_FIELDS,
            group_identify_user,
            description="Set properties on a group profile.",
            default_trigger='type = "group"',
        ),
        "alias": ActionDefinition(
            "alias",
            "Alias",
            ALIAS_FIELDS,
            alias,
            description="Create an alias of a distinct ID (Original ID Merge and legacy projects).",
        ),
    },
)
