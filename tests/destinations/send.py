"""Render messages with a destination definition and send the requests, as delivery would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from headwater.destinations.definition import Message, Rendered
from headwater.destinations.registry import get


def render(
    destination_type: str, settings: Mapping[str, Any], messages: Sequence[Message]
) -> Rendered:
    definition = get(destination_type)
    assert definition.render is not None, "an Actions destination renders through its mappings"
    return definition.render(messages, definition.parse_settings(settings))


def send(
    destination_type: str, settings: Mapping[str, Any], messages: Sequence[Message]
) -> list[httpx.Response]:
    """Every request the destination makes for these messages, sent; their responses."""
    responses = []
    with httpx.Client(timeout=10) as client:
        for outgoing in render(destination_type, settings, messages).outgoing:
            request = outgoing.request
            responses.append(
                client.request(
                    request.method, request.url, headers=dict(request.headers), content=request.body
                )
            )
    return responses
