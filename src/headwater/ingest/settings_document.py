"""The analytics.js settings document (``GET /v1/projects/{writeKey}/settings``).

analytics.js loaded with ``cdnURL`` pointing here reads this document and sends its events to
``integrations["Segment.io"].apiHost``. Only device-mode destinations appear besides
``Segment.io``; Headwater has none yet, so the document names only Segment.io.

When the source's tracking plan blocks unplanned Track events, ``plan.track`` lists the planned
events enabled and ``__default`` disabled: analytics.js then drops unplanned events in the
browser, before they are sent (Segment's §4.3 behaviour: unplanned-event blocking reaches
device mode too). The server still blocks them too, for every other client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from headwater.protocols.plans import load_source_protocols
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import WorkspaceStore


def settings_document(
    write_key: str, base_url: str, planned_events: Collection[str] | None = None
) -> dict[str, Any]:
    """``planned_events``: the Track events allowed when unplanned ones are blocked, else None."""
    url = urlsplit(base_url)
    path = url.path.rstrip("/")
    track: dict[str, Any] = {"__default": {"enabled": True, "integrations": {}}}
    if planned_events is not None:
        track = {name: {"enabled": True, "integrations": {}} for name in sorted(planned_events)}
        track["__default"] = {"enabled": False, "integrations": {}}
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
            "track": track,
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


class PlannedEvents:
    """Source id → the Track events its plan allows, for sources that block unplanned events.

    Rebuilt when the config version changes (checked at most once a second), like the write
    key map: serving the document costs no database round trip.
    """

    def __init__(self, store: WorkspaceStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot: ConfigSnapshot[dict[str, frozenset[str]]] = ConfigSnapshot(
            store.config_version, lambda: _planned(store), {}, clock=clock
        )

    def of(self, source_id: str) -> frozenset[str] | None:
        return self._snapshot.get().get(source_id)


def _planned(store: WorkspaceStore) -> dict[str, frozenset[str]]:
    return {
        source_id: frozenset(found.plan.track)
        for source_id, found in load_source_protocols(store.engine).items()
        if found.plan is not None and not found.settings.track.allow_unplanned_events
    }
