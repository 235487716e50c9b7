"""Google Analytics 4 through the Measurement Protocol (``POST /mp/collect``).

Every request names one web data stream in its query (``measurement_id``, ``api_secret``) and
one device in its body (``client_id``, with ``user_id`` when the user is known), and carries up
to 25 events. Mapping:

* ``track`` → an event named after the Segment event in snake case (``Video Played`` →
  ``video_played``); Segment's e-commerce and sign-in events become GA4's recommended events
  with their parameters, as Segment's GA4 destination maps them by default (``Order
  Completed`` → ``purchase`` with ``transaction_id``, ``value``, ``items``…).
* ``page`` → ``page_view`` with ``page_location``, ``page_title``, ``page_referrer``.
* ``identify`` → GA4 has no identify call: the traits become ``user_properties`` of a request
  of their own whose single event is ``identify``, so they are set when the identify happened
  whatever is sent next.

``client_id`` is the message's ``anonymousId`` unless the integrations object gives one
(``{"Google Analytics 4": {"client_id": "…"}}``). GA4's documented limits are applied here,
because the Measurement Protocol answers 2xx even for events it then throws away: names are
made valid, parameters past 25 and nested values are left out, long strings are cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

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
)
from headwater.errors import MessageRejected
from headwater.timestamps import parse_timestamp

NAME: Final = "Google Analytics 4"
ALIASES: Final = ("Google Analytics 4 Cloud",)  # Segment's catalog name of its cloud GA4

MAX_EVENTS_PER_REQUEST: Final = 25
MAX_BODY_BYTES: Final = 130_000  # "the post body must be smaller than 130kB"
MAX_PARAMS: Final = 25
MAX_NAME_LENGTH: Final = 40  # event and parameter names
MAX_VALUE_LENGTH: Final = 100  # string parameter values of a standard property
# Page parameters GA4 allows to be longer than other values.
LONG_VALUES: Final = {"page_location": 1000, "page_referrer": 420, "page_title": 300}
MAX_USER_PROPERTIES: Final = 25
MAX_USER_PROPERTY_NAME: Final = 24
MAX_USER_PROPERTY_VALUE: Final = 36

# Names the Measurement Protocol reserves: events with them are dropped by GA4.
RESERVED_EVENTS: Final = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "session_start",
        "session_start_with_rollout",
        "user_engagement",
    }
)
RESERVED_PREFIXES: Final = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_USER_PROPERTIES: Final = frozenset(
    {
        "first_open_time",
        "first_visit_time",
        "last_deep_link_referrer",
        "user_id",
        "first_open_after_install",
    }
)
IDENTIFY_EVENT: Final = "identify"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_encode = msgspec.json.Encoder().encode

# --- Segment's e-commerce spec → GA4 recommended events ----------------------------------------
# Each entry: GA4 event name, where its items come from ("products": the products array,
# "self": the properties describe one product, None: no items), and (GA4 param, Segment
# properties tried in order). From the defaults of Segment's GA4 destination actions.

_ORDER = (
    ("transaction_id", ("order_id",)),
    ("value", ("total", "revenue", "value")),
    ("currency", ("currency",)),
    ("coupon", ("coupon",)),
    ("affiliation", ("affiliation",)),
    ("shipping", ("shipping",)),
    ("tax", ("tax",)),
)
_PRODUCT = (("currency", ("currency",)), ("value", ("value", "price")))
_CART = (
    ("currency", ("currency",)),
    ("value", ("value", "revenue", "total")),
    ("coupon", ("coupon",)),
)
_PROMOTION = (
    ("promotion_id", ("promotion_id",)),
    ("promotion_name", ("name",)),
    ("creative_name", ("creative",)),
    ("creative_slot", ("position",)),
)

RECOMMENDED: Final[dict[str, tuple[str, str | None, tuple[tuple[str, tuple[str, ...]], ...]]]] = {
    "Order Completed": ("purchase", "products", _ORDER),
    "Order Refunded": ("refund", "products", _ORDER),
    "Checkout Started": ("begin_checkout", "products", _CART),
    "Payment Info Entered": (
        "add_payment_info",
        "products",
        (*_CART, ("payment_type", ("payment_method",))),
    ),
    "Cart Viewed": ("view_cart", "products", _CART),
    "Product Added": ("add_to_cart", "self", _PRODUCT),
    "Product Removed": ("remove_from_cart", "self", _PRODUCT),
    "Product Viewed": ("view_item", "self", _PRODUCT),
    "Product Added to Wishlist": ("add_to_wishlist", "self", _PRODUCT),
    "Product Clicked": (
        "select_item",
        "self",
        (("item_list_id", ("list_id",)), ("item_list_name", ("list_name",))),
    ),
    "Product List Viewed": (
        "view_item_list",
        "products",
        (("item_list_id", ("list_id",)), ("item_list_name", ("category",))),
    ),
    "Products Searched": ("search", None, (("search_term", ("query",)),)),
    "Promotion Viewed": ("view_promotion", None, _PROMOTION),
    "Promotion Clicked": ("select_promotion", None, _PROMOTION),
    "Signed Up": ("sign_up", None, (("method", ("method", "type")),)),
    "Signed In": ("login", None, (("method", ("method", "type")),)),
}
# Segment product property → GA4 item parameter.
ITEM_FIELDS: Final = (
    ("item_id", ("product_id", "id", "sku")),
    ("item_name", ("name",)),
    ("affiliation", ("affiliation",)),
    ("coupon", ("coupon",)),
    ("index", ("position",)),
    ("item_brand", ("brand",)),
    ("item_category", ("category",)),
    ("item_variant", ("variant",)),
    ("price", ("price",)),
    ("quantity", ("quantity",)),
)
# Spec properties of a page call that become page_* parameters or mean nothing to GA4.
PAGE_PROPERTIES: Final = frozenset(
    {"path", "referrer", "search", "title", "url", "keywords", "name", "category"}
)


class GoogleAnalytics4Settings(DestinationSettings):
    measurement_id: str = Field(pattern=r"^G-[A-Za-z0-9]+$")
    api_secret: str = Field(min_length=1)
    # The EU endpoint is https://region1.google-analytics.com; tests and proxies use their own.
    endpoint: HttpUrl = HttpUrl("https://www.google-analytics.com")

    def url(self) -> str:
        query = urlencode({"measurement_id": self.measurement_id, "api_secret": self.api_secret})
        return f"{str(self.endpoint).rstrip('/')}/mp/collect?{query}"


def render(messages: Sequence[Message], settings: GoogleAnalytics4Settings) -> Rendered:
    rendered = Rendered()
    # One client (and user) per request: events are grouped by (client_id, user_id) in order;
    # an identify always gets a request of its own, as its user_properties apply to the request.
    groups: dict[tuple[Any, ...], list[tuple[int, Mapping[str, Any], bytes]]] = {}
    for position, message in enumerate(messages):
        try:
            header, event = _event(message)
            encoded = _encode(event)
        except MessageRejected as exc:
            rendered.reject(position, exc)
            continue
        if "user_properties" in header:
            key: tuple[Any, ...] = ("identify", position)
        else:
            key = ("events", header["client_id"], header.get("user_id"))
        groups.setdefault(key, []).append((position, header, encoded))

    url = settings.url()
    headers = {"Content-Type": "application/json"}
    for members in groups.values():
        chunk: list[tuple[int, bytes]] = []
        head = b""
        size = 0
        for position, fields, encoded in members:
            if chunk and (
                len(chunk) == MAX_EVENTS_PER_REQUEST or size + 1 + len(encoded) > MAX_BODY_BYTES
            ):
                rendered.outgoing.append(_outgoing(url, headers, head, chunk))
                chunk = []
            if not chunk:
                head = _encode(fields)
                size = len(head) - 1 + len(b',"events":[]}')
                if size + len(encoded) > MAX_BODY_BYTES:
                    rendered.reject(
                        position,
                        "the event is too large for one Measurement "
                        f"Protocol request ({len(encoded)} bytes; the limit is "
                        f"{MAX_BODY_BYTES} for the body)",
                    )
                    continue
                size += len(encoded)
            else:
                size += 1 + len(encoded)
            chunk.append((position, encoded))
        if chunk:
            rendered.outgoing.append(_outgoing(url, headers, head, chunk))
    return rendered


def _outgoing(
    url: str, headers: Mapping[str, str], head: bytes, chunk: list[tuple[int, bytes]]
) -> Outgoing:
    body = head[:-1] + b',"events":[' + b",".join(e for _, e in chunk) + b"]}"
    return Outgoing(Request("POST", url, headers, body), tuple(p for p, _ in chunk))


def _event(message: Message) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request-level fields (client, user, time, user properties) and the event."""
    options = integrations.options((NAME, *ALIASES), message.get("integrations"))
    client_id = options.get("client_id") or options.get("clientId") or message.get("anonymousId")
    if not isinstance(client_id, str | int) or isinstance(client_id, bool) or client_id == "":
        raise MessageRejected(
            "GA4 needs a client_id: the message has no anonymousId and the "
            f"integrations object gives no {NAME!r} client_id option"
        )
    header: dict[str, Any] = {"client_id": str(client_id)}
    user_id = message.get("userId")
    if isinstance(user_id, str) and user_id:
        header["user_id"] = user_id
    micros = _micros(message.get("timestamp"))
    if micros is not None:
        header["timestamp_micros"] = micros

    kind = message.get("type")
    if kind == "identify":
        traits = message.get("traits")
        header["user_properties"] = _user_properties(traits if isinstance(traits, dict) else {})
        event: dict[str, Any] = {"name": IDENTIFY_EVENT, "params": {}}
    elif kind == "page":
        event = {"name": "page_view", "params": _page_params(message)}
    elif kind == "track":
        event = _track_event(message)
    else:
        raise MessageRejected(f"GA4 does not take {kind!r} calls")

    params: dict[str, Any] = event["params"]
    extra: dict[str, Any] = {}
    if kind != "identify" and "engagement_time_msec" not in params:
        extra["engagement_time_msec"] = 1  # as Segment does: GA4 counts only engaged users
    session_id = options.get("session_id")
    if (
        isinstance(session_id, str | int)
        and not isinstance(session_id, bool)
        and "session_id" not in params
    ):
        extra["session_id"] = session_id  # joins the session gtag.js started in the browser
    # GA4 ignores parameters past the 25th; the ones added here count more than the last ones.
    event["params"] = {**dict(list(params.items())[: MAX_PARAMS - len(extra)]), **extra}
    if micros is not None:
        event["timestamp_micros"] = micros
    return header, event


def _track_event(message: Message) -> dict[str, Any]:
    event_name = message.get("event")
    if not isinstance(event_name, str):
        raise MessageRejected("a track call needs an event name")
    properties = message.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    recommended = RECOMMENDED.get(event_name)
    if recommended is None:
        name = event_name_for(event_name)
        if not name:
            raise MessageRejected(f"{event_name!r} has no letter to start a GA4 event name with")
        if name in RESERVED_EVENTS or name.startswith(RESERVED_PREFIXES):
            raise MessageRejected(f"{name!r} is an event name GA4 reserves")
        return {"name": name, "params": _custom_params(properties, frozenset())}

    name, items_from, fields = recommended
    params: dict[str, Any] = {}
    used: set[str] = set()
    for param, sources in fields:
        for source in sources:
            value = _scalar(properties.get(source), param)
            if value is not None:
                params[param] = value
                used.update(sources)
                break
    if items_from == "products":
        products = properties.get("products")
        if isinstance(products, list):
            params["items"] = [item for p in products if isinstance(p, dict) if (item := _item(p))]
        used.add("products")
    elif items_from == "self":
        item = _item(properties)
        if item:
            params["items"] = [item]
        used.update(source for _, sources in ITEM_FIELDS for source in sources)
    # GA4 wants ISO 4217 codes and ignores a value without its currency; Segment's spec says
    # USD when none is given.
    if isinstance(params.get("currency"), str):
        params["currency"] = params["currency"].upper()
    elif "value" in params:
        params["currency"] = "USD"
    params.update(_custom_params(properties, frozenset(used), exclude=frozenset(params)))
    return {"name": name, "params": params}


def _page_params(message: Message) -> dict[str, Any]:
    properties = message.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    context = message.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    page = page if isinstance(page, dict) else {}
    params: dict[str, Any] = {}
    for param, source in (
        ("page_location", "url"),
        ("page_title", "title"),
        ("page_referrer", "referrer"),
    ):
        value = _scalar(properties.get(source) or page.get(source), param)
        if value is not None:
            params[param] = value
    if "page_title" not in params and isinstance(message.get("name"), str):
        params["page_title"] = _scalar(message["name"], "page_title")
    params.update(_custom_params(properties, PAGE_PROPERTIES, exclude=frozenset(params)))
    return params


def _item(product: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for param, sources in ITEM_FIELDS:
        for source in sources:
            value = _scalar(product.get(source), param)
            if value is not None:
                item[param] = value
                break
    return item


def _custom_params(
    properties: Mapping[str, Any], skip: frozenset[str], exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Flat properties as parameters; GA4 drops whole events carrying nested values."""
    params: dict[str, Any] = {}
    for key, raw in properties.items():
        if key in skip:
            continue
        name = param_name_for(key)
        if not name or name in exclude or name in params:
            continue
        value = _scalar(raw, name)
        if value is not None:
            params[name] = value
    return params


def _user_properties(traits: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key, raw in traits.items():
        name = param_name_for(key, MAX_USER_PROPERTY_NAME, shorten=False)
        if not name or name in found or name in RESERVED_USER_PROPERTIES:
            continue
        value = _scalar(raw, name, MAX_USER_PROPERTY_VALUE)
        if value is not None:
            found[name] = {"value": value}
        if len(found) == MAX_USER_PROPERTIES:
            break
    return found


def _scalar(value: Any, name: str, limit: int | None = None) -> str | int | float | None:
    """A parameter value GA4 accepts: strings (cut to the limit), numbers; else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and value != "":
        return value[: limit or LONG_VALUES.get(name, MAX_VALUE_LENGTH)]
    return None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^0-9a-zA-Z]+")


def event_name_for(event: str) -> str:
    """``Order Shipped`` → ``order_shipped``: snake case, letter first, at most 40 chars."""
    return _clean(_CAMEL.sub("_", event).lower(), MAX_NAME_LENGTH)


def param_name_for(key: str, limit: int = MAX_NAME_LENGTH, *, shorten: bool = True) -> str:
    """A valid name is kept as it is; others get ``_`` for invalid characters.

    Too long names are cut (``shorten``) or refused (empty result); reserved prefixes too.
    """
    name = key if _VALID_NAME(key) else _clean(key, 10_000)
    if len(name) > limit:
        name = name[:limit].rstrip("_") if shorten else ""
    if name.startswith(RESERVED_PREFIXES):
        return ""
    return name


_VALID_NAME: Final[Callable[[str], object]] = re.compile(r"[A-Za-z][A-Za-z0-9_]*").fullmatch


def _clean(text: str, limit: int) -> str:
    name = _NOT_WORD.sub("_", text)
    name = name.lstrip("_0123456789")  # must start with a letter
    return name[:limit].strip("_")


def _micros(value: object) -> int | None:
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    return (parsed - _EPOCH) // _MICROSECOND


DEFINITION = DestinationDefinition(
    type="google_analytics_4",
    name=NAME,
    metadata_id="60ad61f9ff47a16b8fb7b5d9",
    slug="actions-google-analytics-4",
    aliases=ALIASES,
    settings=GoogleAnalytics4Settings,
    render=render,
    methods=frozenset({"track", "page", "identify"}),
    secrets=frozenset({"api_secret"}),
    batching=Batching(max_events=100, max_bytes=MAX_BODY_BYTES, max_wait_seconds=1.0),
    description="Events, page views and user properties through GA4's Measurement Protocol.",
)
