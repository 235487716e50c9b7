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

from collections.abc import Sequence

from pydantic import Field, HttpUrl

from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Message,
    Rendered,
)
from headwater.destinations.partner import render_each

TYPES = {"page": "pageview", "screen": "screenview", "identify": "identify", "track": "track"}


class ClearBrainSettings(DestinationSettings):
    endpoint: HttpUrl
    api_key: str = Field(min_length=1)


def render(messages: Sequence[Message], settings: ClearBrainSettings) -> Rendered:
    return render_each(messages, str(settings.endpoint), settings.api_key, TYPES)


DEFINITION = DestinationDefinition(
    type="clearbrain",
    name="ClearBrain",
    metadata_id="5c412bc57526b50001622f52",
    slug="clearbrain",
    settings=ClearBrainSettings,
    render=render,
    methods=frozenset(TYPES),
    secrets=frozenset({"api_key"}),
    description="Predictive analytics (partner destination): every page, screen, identify and "
    "track call, one request each.",
)
