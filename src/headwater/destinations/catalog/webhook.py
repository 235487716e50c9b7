"""Webhooks: POST each message, as JSON, to your own HTTP endpoints.

As Segment's Webhooks destination: up to five URLs, extra headers, and with a shared secret an
``X-Signature`` header holding the hex HMAC-SHA1 of the body, so the receiver can check that
the request came from here. Each message is one request to each URL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import msgspec
from pydantic import Field, HttpUrl, model_validator

from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Message,
    Outgoing,
    Rendered,
    Request,
)


class WebhookSettings(DestinationSettings):
    url: HttpUrl | None = None
    urls: list[HttpUrl] = Field(default_factory=list, max_length=5)
    headers: dict[str, str] = Field(default_factory=dict)
    shared_secret: str | None = None

    @model_validator(mode="after")
    def _some_url(self) -> WebhookSettings:
        if not self.targets():
            raise ValueError("give at least one webhook URL in url or urls")
        return self

    def targets(self) -> list[str]:
        return [str(u) for u in ([self.url] if self.url else []) + list(self.urls)]


def render(messages: Sequence[Message], settings: WebhookSettings) -> Rendered:
    rendered = Rendered()
    targets = settings.targets()
    for position, message in enumerate(messages):
        body = msgspec.json.encode(message)
        headers = {
            "User-Agent": "Segment.io/1.0",
            "Content-Type": "application/json",
            **settings.headers,
        }
        if settings.shared_secret:
            headers["X-Signature"] = hmac.new(
                settings.shared_secret.encode(), body, hashlib.sha1
            ).hexdigest()
        for url in targets:
            rendered.outgoing.append(Outgoing(Request("POST", url, headers, body), (position,)))
    return rendered


DEFINITION = DestinationDefinition(
    type="webhook",
    name="Webhooks",
    metadata_id="54521fdc25e721e32a72ef04",
    slug="webhooks",
    aliases=("Webhook",),
    settings=WebhookSettings,
    render=render,
    # Custom headers often carry credentials, so they are never shown back either.
    secrets=frozenset({"shared_secret", "headers"}),
    timeout_seconds=5.0,  # Segment's webhooks must answer within 5 seconds
    description="POST every message as JSON to up to five URLs.",
)
