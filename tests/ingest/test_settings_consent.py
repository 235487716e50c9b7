"""The settings document's ``consentSettings``: what analytics.js's consent wrapper reads
(``@segment/analytics-consent-tools``: ``allCategories``, ``hasUnmappedDestinations``)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.ingest.settings_document import SourceConsent, settings_document
from headwater.privacy.consent import ConsentCategories
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock


def test_consent_settings_per_source(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    web = workspace.create_source("web", write_key="WK_web")
    ios = workspace.create_source("ios", write_key="WK_ios")
    bare = workspace.create_source("bare", write_key="WK_bare")
    destinations = DestinationStore(workspace)
    destinations.create("hook", "webhook", "web", settings={"url": "http://127.0.0.1:9/"})
    destinations.create("hook-ios", "webhook", "ios", settings={"url": "http://127.0.0.1:9/"})
    destinations.create(
        "amp",
        "amplitude",
        "ios",
        settings={"api_key": "0123456789abcdef0123456789abcdef"},
        enabled=False,
    )
    clock = Clock(0.0)
    consent = SourceConsent(workspace, clock=clock)
    assert consent.of(web.id) is None  # no category: nothing for the wrapper to do
    assert "consentSettings" not in settings_document("WK_web", "http://h", None, None)
    categories = ConsentCategories(workspace)
    categories.create("Ads", "Advertising", ["webhook"])
    categories.create("Analytics", "Analytics", ["amplitude"])
    categories.create("Off", "Off", ["webhook"], enabled=False)
    clock.now += 2
    assert consent.of(web.id) == {"allCategories": ["Ads"], "hasUnmappedDestinations": False}
    # a disabled instance counts for nothing; a source without destinations keeps loading
    assert consent.of(ios.id) == {"allCategories": ["Ads"], "hasUnmappedDestinations": False}
    assert consent.of(bare.id) == {"allCategories": [], "hasUnmappedDestinations": True}
    document = settings_document("WK_web", "http://h", None, consent.of(web.id))
    assert document["consentSettings"]["allCategories"] == ["Ads"]
