"""The analytics.js settings document (``GET /v1/projects/{writeKey}/settings``).

analytics.js loaded with ``cdnURL`` pointing here reads this document and sends its events to
``integrations["Segment.io"].apiHost``. Only device-mode destinations appear besides
``Segment.io``; Headwater has none yet, so the document names only Segment.io.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def settings_document(write_key: str, base_url: str) -> dict[str, Any]:
    url = urlsplit(base_url)
    path = url.path.rstrip("/")
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{url.netloc}{path}/v1",
                "protocol": url.scheme or "https",
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # analytics.js reports its own metrics to apiHost/m unless the sample rate is 0.
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
