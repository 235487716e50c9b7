"""Requests and responses as Event Delivery shows them, with every secret taken out.

A sample of "Request to Destination" would otherwise carry the destination's API key (in a
header, the URL or the body) into the counters store, the REST API and the terminal. Every
string of the instance's secret settings is replaced wherever it appears, and headers that
carry credentials are hidden by name whatever they hold (Basic auth is base64 of a secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from headwater.destinations.definition import Request, Response
from headwater.store.instances import REDACTED as HIDDEN

CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-signature",
})
MAX_BODY = 8192
# Query parameters that usually carry credentials (a token in a webhook URL, GA4's api_secret).
_CREDENTIAL_PARAM = re.compile(r"key|token|secret|password|passwd|auth|sig", re.IGNORECASE)


class Redactor:
    def __init__(self, settings: Mapping[str, Any], secrets: frozenset[str]) -> None:
        found = {s for key in secrets for s in _strings(settings.get(key)) if len(s) >= 4}
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(found, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, HIDDEN)
        return value

    def url(self, url: str) -> str:
        """The URL with secrets out, and the values of credential-like query parameters."""
        parts = urlsplit(self.text(url))
        if not parts.query:
            return urlunsplit(parts)
        query = [(name, HIDDEN if _CREDENTIAL_PARAM.search(name) else value)
                 for name, value in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))

    def request(self, request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "url": self.url(request.url),
            "headers": self._headers(request.headers),
            "body": self._body(request.body or b""),
        }

    def response(self, response: Response) -> dict[str, Any]:
        return {
            "status": response.status,
            "headers": self._headers(response.headers),
            "body": self._body(response.body),
        }

    def _headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: HIDDEN if name.lower() in CREDENTIAL_HEADERS else self.text(value)
                for name, value in headers.items()}

    def _body(self, body: bytes) -> Any:
        text = self.text(body[:MAX_BODY].decode("utf-8", errors="replace"))
        if len(body) <= MAX_BODY:
            try:
                return msgspec.json.decode(text)
            except msgspec.DecodeError:
                pass
        return text if len(body) <= MAX_BODY else text + f"… ({len(body)} bytes)"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
