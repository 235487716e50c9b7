"""Cliff (Cliff.ai): a partner ("subscription webhook") destination; its API is not public.

The request is the one Segment's partner destinations get (see ``partner.py``): each message
POSTed as JSON to the ``endpoint`` setting, which is required as Cliff publishes no URL, with
the type renamed as Cliff's page names it: track → ``track``, page → ``pageview``, screen →
``screenview``, identify → ``identify``, group → ``group``; no alias calls. Cliff's settings
page says "no api key required", so ``api_key`` is optional and, when given, is sent as
``Authorization: Basic base64("<api key>:")``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import HttpUrl

from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Message,
    Rendered,
)
from headwater.destinations.partner import render_each

TYPES = {
    "track": "track",
    "page": "pageview",
    "screen": "screenview",
    "identify": "identify",
    "group": "group",
}


class CliffSettings(DestinationSettings):
    endpoint: HttpUrl
    api_key: str | None = None


def render(messages: Sequence[Message], settings: CliffSettings) -> Rendered:
    return render_each(messages, str(settings.endpoint), settings.api_key, TYPES)


DEFINITION = DestinationDefinition(
    type="cliff",
    name="Cliff",
    metadata_id="603bebf26429db1da7b36150",
    slug="cliff",
    settings=CliffSettings,
    render=render,
    methods=frozenset(TYPES),
    secrets=frozenset({"api_key"}),
    description="Metric monitoring (partner destination): every track, page, screen, identify "
    "and group call, one request each.",
)
