"""The analytics.js snippet a source's page offers to paste into a website's ``<head>``.

It is Segment's snippet (version 5.2.1, in analytics-snippet.txt) with one setting added:
``analytics._cdn`` sends analytics.js for its settings to this server
(``/v1/projects/<writeKey>/settings``), whose ``apiHost`` then sends every event here.
analytics.js itself still loads from Segment's CDN: Headwater does not serve
``analytics.min.js``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SNIPPET_VERSION = "5.2.1"

_SNIPPET = (Path(__file__).parent / "analytics-snippet.txt").read_text().strip()


def analytics_snippet(write_key: str, base_url: str) -> str:
    """The snippet for this key and server, each value a JavaScript string that cannot end the
    ``<script>`` element it sits in."""
    values = {"KEY": write_key, "CDN": base_url.rstrip("/"), "VERSION": SNIPPET_VERSION}
    return re.sub(r"@@(KEY|CDN|VERSION)@@", lambda m: _js_string(values[m[1]]), _SNIPPET)


def _js_string(value: str) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
