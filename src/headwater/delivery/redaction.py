"""Requests and responses as Event Delivery shows them, with every secret taken out.

A sample of "Request to Destination" would otherwise carry the destination's API key (in a
header, the URL or the body) into the counters store, the REST API and the terminal. Secrets
are the instance's secret settings and the values of headers an Actions mapping adds (its
``headers`` field), and headers that carry credentials are hidden by name whatever they hold
(Basic auth is base64 of a secret).

A secret of any length is hidden wherever it is a whole value: a header value (or one word of
it, as in ``Bearer <secret>``), a query parameter, a segment of the URL's path, a string (or
key) of a JSON body. Inside longer text it is replaced only from ``MIN_SUBSTRING`` characters
up: a one-letter secret replaced as a substring would turn every "a" of a body into
``[redacted]`` and leave the sample unreadable while hiding nothing an attacker could not
guess in a few tries anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec

from headwater.destinations.definition import Request, Response
from headwater.store.instances import REDACTED as HIDDEN

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-signature",
    }
)
MAX_BODY = 8192
MIN_SUBSTRING = 4  # shorter secrets are hidden only where they are a whole value
# Query parameters and header names that usually carry credentials (a token in a webhook URL,
# GA4's api_secret, X-Auth-Token, X-Client-Secret).
_CREDENTIAL_PARAM = re.compile(r"key|token|secret|password|passwd|auth|sig", re.IGNORECASE)
_WORDS = re.compile(r"[\s,;=]+")


class Redactor:
    def __init__(
        self, settings: Mapping[str, Any], secrets: frozenset[str], extra: Iterable[str] = ()
    ) -> None:
        found = {s for key in secrets for s in _strings(settings.get(key)) if s}
        found.update(s for s in extra if s)
        self._whole = frozenset(found)
        # Longest first, so a secret containing another is replaced whole.
        self._parts = sorted((s for s in found if len(s) >= MIN_SUBSTRING), key=len, reverse=True)

    def for_request(self, request: Request) -> Redactor:
        """This redactor, also hiding the values of the request's secret headers."""
        extra = [v for k, v in request.headers.items() if k in request.secret_headers]
        if not extra:
            return self
        return Redactor({}, frozenset(), [*self._whole, *extra])

    def text(self, value: str) -> str:
        if value in self._whole:
            return HIDDEN
        for secret in self._parts:
            value = value.replace(secret, HIDDEN)
        return value

    def url(self, url: str) -> str:
        """The URL with secrets out, and the values of credential-like query parameters."""
        parts = urlsplit(self.text(url))
        parts = parts._replace(
            path="/".join(
                HIDDEN if segment and unquote(segment) in self._whole else segment
                for segment in parts.path.split("/")
            )
        )
        if not parts.query:
            return urlunsplit(parts)
        query = [
            (name, HIDDEN if _CREDENTIAL_PARAM.search(name) or value in self._whole else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))

    def request(self, request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "url": self.url(request.url),
            "headers": self._headers(request.headers, request.secret_headers),
            "body": self._body(request.body or b""),
        }

    def response(self, response: Response) -> dict[str, Any]:
        return {
            "status": response.status,
            "headers": self._headers(response.headers, frozenset()),
            "body": self._body(response.body),
        }

    def _headers(self, headers: Mapping[str, str], secret: frozenset[str]) -> dict[str, str]:
        return {
            name: HIDDEN
            if name in secret or _credential_header(name) or self._holds_secret(value)
            else self.text(value)
            for name, value in headers.items()
        }

    def _holds_secret(self, value: str) -> bool:
        """Whether one word of a header value is a secret (``Bearer <secret>``, ``k=<secret>``)."""
        return bool(self._whole) and any(word in self._whole for word in _WORDS.split(value))

    def _body(self, body: bytes) -> Any:
        text = body[:MAX_BODY].decode("utf-8", errors="replace")
        if len(body) <= MAX_BODY:
            try:
                return self._json(msgspec.json.decode(text))
            except (msgspec.DecodeError, RecursionError):  # 8 KB of "[" nests too deep
                pass
        text = self.text(text)
        return text if len(body) <= MAX_BODY else text + f"… ({len(body)} bytes)"

    def _json(self, value: Any) -> Any:
        """A decoded body with every string (and key) that holds a secret redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self._json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._json(item) for item in value]
        return value


def _credential_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or _CREDENTIAL_PARAM.search(lowered) is not None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
