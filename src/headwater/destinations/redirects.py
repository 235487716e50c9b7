"""``server.request_redirects``: outgoing destination requests sent somewhere else.

A map from a URL prefix to another (``"https://track.customer.io": "http://127.0.0.1:9000"``)
for egress proxies, vendor sandboxes and tests. Native destinations and the actions runtime
apply the same map, so a redirect means one thing whichever code makes the request. The
longest matching prefix wins; Event Delivery samples keep the URL the destination asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from headwater.errors import ConfigError


class Redirects:
    def __init__(self, prefixes: Mapping[str, str] | None = None) -> None:
        given = dict(prefixes or {})
        for source, target in given.items():
            for url in (source, target):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise ConfigError(
                        [
                            f"server.request_redirects: {url!r} is not an http(s) URL prefix; "
                            'write e.g. "https://api.vendor.com": "http://127.0.0.1:9000"'
                        ]
                    )
        self.prefixes: dict[str, str] = given
        self._ordered = sorted(given.items(), key=lambda item: len(item[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._ordered)

    def rewrite(self, url: str) -> str:
        for source, target in self._ordered:
            if url.startswith(source):
                return target + url[len(source) :]
        return url
