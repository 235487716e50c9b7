"""ClearBrain: a partner ("subscription webhook") destination; its API is not public.

Segment's partner destinations receive each message as JSON in its own ``POST`` to the
partner's endpoint, with the customer's API key in ``Authorization: Basic
base64("<api key>:")`` and ``User-Agent: Segment.io/1.0`` (Segment's "Building a Subscription
Webhook" guide). ClearBrain's URL is not published, so ``endpoint`` is a required setting.
The body is the stored message with its ``type`` named as the partner page names it:
page → ``pageview``, screen → ``screenview``, identify → ``identify``, track → ``track``;
ClearBrain takes no group or alias calls.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import msgspec
from pydantic import Field, HttpUrl

from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Message,
    MessageRejected,
    Outgoing,
    Rendered,
    Request,
)

TYPES = {"page": "pageview", "screen": "screenview", "identify": "identify", "track": "track"}


class ClearBrainSettings(DestinationSettings):
    endpoint: HttpUrl
    api_key: str = Field(min_length=1)


def subscription_request(message: Message, endpoint: str, api_key: str | None,
                         types: Mapping[str, str]) -> Request:
    """One message as Segment's subscription webhooks send it, ``type`` renamed by ``types``."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in types:
        raise MessageRejected(f"this destination takes {', '.join(types)} calls, not {kind!r}")
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}
    if api_key:
        token = base64.b64encode(f"{api_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    body = msgspec.json.encode({**message, "type": types[kind]})
    return Request("POST", endpoint, headers, body)


def render(messages: Sequence[Message], settings: ClearBrainSettings) -> Rendered:
    return Rendered(outgoing=[
        Outgoing(subscription_request(m, str(settings.endpoint), settings.api_key, TYPES), (i,))
        for i, m in enumerate(messages)])


DEFINITION = DestinationDefinition(
    type="clearbrain",
    name="ClearBrain",
    settings=ClearBrainSettings,
    render=render,
    methods=frozenset(TYPES),
    secrets=frozenset({"api_key"}),
    description="Predictive analytics (partner destination): every page, screen, identify and "
                "track call, one request each.",
)
