"""The analytics.js settings document (``GET /v1/projects/{writeKey}/settings``).

analytics.js loaded with ``cdnURL`` pointing here reads this document and sends its events to
``integrations["Segment.io"].apiHost``. Only device-mode destinations appear besides
``Segment.io``; Headwater has none yet, so the document names only Segment.io.

When the source's tracking plan blocks unplanned Track events, ``plan.track`` lists the planned
events enabled and ``__default`` disabled: analytics.js then drops unplanned events in the
browser, before they are sent (Segment's §4.3 behaviour: unplanned-event blocking reaches
device mode too). The server still blocks them too, for every other client.

Once the workspace has consent categories, ``consentSettings`` tells analytics.js's consent
wrapper (``@segment/analytics-consent-tools``) which categories matter to this source
(``allCategories``: those mapped to its enabled destinations) and whether it has an enabled
destination no category maps (``hasUnmappedDestinations``); the wrapper does not load
analytics.js at all when there is none and the user consented to none of those categories.
A source without enabled destinations counts as having unmapped ones: the archive, the
warehouses and profiles still take its events. Device-mode integrations would carry their own
``consentSettings.categories``; Headwater serves none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from headwater.privacy.consent import load_categories
from headwater.protocols.plans import load_source_protocols
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import WorkspaceStore


def settings_document(
    write_key: str,
    base_url: str,
    planned_events: Collection[str] | None = None,
    consent: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``planned_events``: the Track events allowed when unplanned ones are blocked, else None;
    ``consent``: the source's ``consentSettings``, None when the workspace has no categories."""
    url = urlsplit(base_url)
    path = url.path.rstrip("/")
    track: dict[str, Any] = {"__default": {"enabled": True, "integrations": {}}}
    if planned_events is not None:
        track = {name: {"enabled": True, "integrations": {}} for name in sorted(planned_events)}
        track["__default"] = {"enabled": False, "integrations": {}}
    document: dict[str, Any] = {
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
    if consent is not None:
        document["consentSettings"] = dict(consent)
    return document


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


class SourceConsent:
    """Source id → its ``consentSettings``, rebuilt when the config version changes."""

    def __init__(self, store: WorkspaceStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot: ConfigSnapshot[dict[str, dict[str, Any]] | None] = ConfigSnapshot(
            store.config_version, lambda: _consent_settings(store), None, clock=clock
        )

    def of(self, source_id: str) -> Mapping[str, Any] | None:
        found = self._snapshot.get()
        if found is None:
            return None
        return found.get(source_id, {"allCategories": [], "hasUnmappedDestinations": True})


def _consent_settings(store: WorkspaceStore) -> dict[str, dict[str, Any]] | None:
    """None when the workspace has no enabled category (nothing for the wrapper to do)."""
    t = schema.destinations
    with store.reading() as conn:
        categories = [c for c in load_categories(conn) if c.enabled]
        rows = list(conn.execute(sa.select(t.c.source_id, t.c.type).where(t.c.enabled.is_(True))))
    if not categories:
        return None
    mapped: dict[str, set[str]] = {}
    for category in categories:
        for destination_type in category.destinations:
            mapped.setdefault(destination_type, set()).add(category.category_id)
    found: dict[str, dict[str, Any]] = {}
    for source_id, destination_type in rows:
        entry = found.setdefault(
            source_id, {"allCategories": set(), "hasUnmappedDestinations": False}
        )
        ids = mapped.get(destination_type)
        if ids:
            entry["allCategories"] |= ids
        else:
            entry["hasUnmappedDestinations"] = True
    for entry in found.values():
        entry["allCategories"] = sorted(entry["allCategories"])
    return found
