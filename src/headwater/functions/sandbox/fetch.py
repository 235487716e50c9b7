"""The host's ``fetch`` for functions: the sandbox's only way out.

A function's ``fetch(url)`` is a message to the host, which makes the request here. The URL the
code asked for must match ``server.functions_fetch_allow`` (``api.example.com``,
``*.stripe.com``, ``*``); a host whose addresses are loopback, private, link-local (the cloud
metadata service at 169.254.169.254) or otherwise not public is refused unless it is listed by
its exact name, not by a wildcard. Then ``server.request_redirects`` applies, as for
destinations. Redirects are followed hop by hop like node-fetch v2 (``follow`` up to 20,
``manual``, ``error``), each hop checked again; the time is the call's remaining deadline and
the body is capped (``MAX_BODY_BYTES``). Every fetch is recorded as an ``OutgoingRequest``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

from headwater.functions.contract import OutgoingRequest

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 20  # node-fetch v2's follow limit
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers the host sets itself: the code's values would be wrong after a rewrite or redirect.
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class Refused(Exception):
    """The request may not be made: the message is the function's ``FetchError`` reason."""


class Fetcher:
    def __init__(
        self,
        *,
        allow: Sequence[str] = ("*",),
        redirects: Mapping[str, str] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.allow = [p.strip().strip("[]").lower() for p in allow if p.strip()]
        self.max_body_bytes = max_body_bytes
        self._redirects = sorted(
            (redirects or {}).items(), key=lambda item: len(item[0]), reverse=True
        )
        self._session: aiohttp.ClientSession | None = None
        # hosts that may resolve to non-public addresses: listed by name, or a redirect's target
        self._private_ok = {pattern for pattern in self.allow if "*" not in pattern} | {
            (urlsplit(target).hostname or "").lower() for _, target in self._redirects
        }

    # ---- the rules ----
    def listed(self, host: str) -> tuple[bool, bool]:
        """(allowed, listed by its exact name)."""
        host = host.lower().rstrip(".")
        if host in self.allow:
            return True, True
        wildcard = any(
            pattern == "*" or (pattern.startswith("*.") and host.endswith(pattern[1:]))
            for pattern in self.allow
        )
        return wildcard, False

    async def check(self, url: str) -> None:
        """Raise ``Refused`` unless the code may call ``url``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"only http(s) URLs can be fetched, not {url!r}")
        host = parts.hostname
        allowed, explicit = self.listed(host)
        if not allowed:
            raise Refused(f"{host} is not on the functions' allow list (functions_fetch_allow)")
        if explicit:
            return
        for address in await _addresses(host, parts.port or 0):
            if not _public(address):
                raise Refused(
                    f"{host} resolves to {address}, a non-public address: list the host "
                    "explicitly in functions_fetch_allow to call it"
                )

    def rewrite(self, url: str) -> str:
        """``server.request_redirects``: the longest matching prefix wins."""
        for source, target in self._redirects:
            if url.startswith(source):
                return target + url[len(source) :]
        return url

    # ---- the request ----
    async def fetch(
        self, message: Mapping[str, Any], *, timeout: float
    ) -> tuple[dict[str, Any], OutgoingRequest]:
        """Answer a worker's ``fetch`` message: the ``fetched`` fields and the record."""
        started = time.monotonic()
        url = str(message.get("url") or "")
        method = str(message.get("method") or "GET").upper()
        try:
            answer = await asyncio.wait_for(self._follow(message, url, method), timeout)
        except TimeoutError:
            answer = {"error": f"network timeout at: {url}", "code": "ETIMEDOUT"}
        except Refused as refused:
            answer = {"error": str(refused), "code": "EACCES"}
        except aiohttp.ClientConnectorError as error:
            answer = {"error": str(error.os_error or error), "code": "ECONNREFUSED"}
        except (aiohttp.ClientError, OSError, ValueError) as error:
            answer = {"error": str(error) or type(error).__name__, "code": "ECONNRESET"}
        record = OutgoingRequest(
            method=method,
            url=url,
            status=answer.get("status"),
            error=answer.get("error"),
            duration_ms=(time.monotonic() - started) * 1000,
        )
        return answer, record

    async def _follow(self, message: Mapping[str, Any], url: str, method: str) -> dict[str, Any]:
        mode = message.get("redirect") or "follow"
        headers = [
            (str(name), str(value))
            for name, value in message.get("headers") or ()
            if str(name).lower() not in _HOP_HEADERS
        ]
        encoded = message.get("body_base64")
        body = base64.b64decode(encoded) if encoded else None
        for _ in range(MAX_REDIRECTS + 1):
            await self.check(url)
            status, reason, answer_headers, data = await self._once(
                method, self.rewrite(url), headers, body
            )
            location = _header(answer_headers, "location")
            if status not in _REDIRECTS or location is None or mode == "manual":
                if location is not None and status in _REDIRECTS:
                    answer_headers = [
                        (k, urljoin(url, v) if k.lower() == "location" else v)
                        for k, v in answer_headers
                    ]
                return {
                    "status": status,
                    "statusText": reason,
                    "url": url,
                    "headers": [list(pair) for pair in answer_headers],
                    "body_base64": base64.b64encode(data).decode(),
                }
            if mode == "error":
                raise Refused(
                    f"uri requested responds with a redirect, redirect mode is set to error: {url}"
                )
            url = urljoin(url, location)
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        raise Refused(f"maximum redirect reached at: {url}")

    async def _once(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(resolver=_PublicResolver(self._private_ok))
            session = self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        async with session.request(
            method, url, headers=headers, data=body, allow_redirects=False
        ) as response:
            received = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                received += chunk
                if len(received) > self.max_body_bytes:
                    raise Refused(f"content size at {url} over limit: {self.max_body_bytes}")
            data = bytes(received)
            return (
                response.status,
                response.reason or "",
                [(str(k), str(v)) for k, v in response.headers.items()],
                data,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _PublicResolver(aiohttp.ThreadedResolver):
    """Resolves for the connection itself, keeping only public addresses (unless the host may
    be private): a name that ``check`` saw public cannot rebind to 127.0.0.1 in between."""

    def __init__(self, private_ok: set[str]) -> None:
        super().__init__()
        self.private_ok = private_ok

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        if host.lower().rstrip(".") in self.private_ok:
            return found
        public = [one for one in found if _public(ipaddress.ip_address(one["host"]))]
        if not public:
            raise OSError(f"{host} resolves to non-public addresses only")
        return public


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Refused(f"getaddrinfo ENOTFOUND {host}: {error}") from error
    found = []
    for info in infos:
        found.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    return found
