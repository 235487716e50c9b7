"""Consent on profiles (protocols §12.4): the latest Identify's or ``Segment Consent Preference
Updated`` event's ``categoryPreferences``, kept apart from traits and shown with the Profile
API's metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from headwater.store.database import write_transaction
from headwater.unify.profiles import CONSENT_EVENT
from tests.unify.test_profile_api import Api


def consent(preferences: Any) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": preferences}}


def test_latest_consent_is_kept_and_shown_with_the_metadata(engine: Engine) -> None:
    api = Api(engine)
    data = api.data
    data.send("identify", "web", userId="u1", context=consent({"Ads": True}))
    data.later(5)
    data.send(
        "track", "web", userId="u1", event=CONSENT_EVENT, context=consent({"Ads": False, "A": 1})
    )
    data.later(5)
    # neither an ordinary Track nor preferences that are not an object change it
    data.send("track", "web", userId="u1", event="Opened", context=consent({"Ads": True}))
    data.send("identify", "web", userId="u1", context=consent("all"))
    metadata = api.users("user_id:u1/metadata").json()["metadata"]
    assert metadata["consent"] == {
        "categoryPreferences": {"Ads": False, "A": 1},
        "updated_at": "2025-01-01T00:00:05.000Z",
        "message_id": "msg-2",
        "source_id": "web",
    }
    traits = api.users("user_id:u1/traits").json()["traits"]
    assert "consent" not in traits and "categoryPreferences" not in traits
    data.send("identify", "web", userId="u2")
    assert "consent" not in api.users("user_id:u2/metadata").json()["metadata"]


def test_an_older_event_arriving_late_does_not_overwrite(engine: Engine) -> None:
    api = Api(engine)
    data = api.data
    early = data.event("identify", userId="u1", context=consent({"Ads": True}))
    data.later(10)
    data.send("identify", "web", userId="u1", context=consent({"Ads": False}))
    data.resolve(early, "web")
    profile = data.user("user_id", "u1")
    found = data.data.consent(profile)
    assert found is not None and found.preferences == {"Ads": False}


def test_merge_keeps_the_later_consent(engine: Engine) -> None:
    api = Api(engine)
    data = api.data
    data.send("identify", "web", anonymousId="a1", context=consent({"Ads": True}))
    data.later(5)
    data.send("identify", "web", userId="u1", context=consent({"Ads": False}))
    older = data.user("anonymous_id", "a1")
    newer = data.user("user_id", "u1")
    with write_transaction(engine) as conn:
        data.data.merge(conn, newer, older)
    kept = data.data.consent(older)
    assert kept is not None and kept.preferences == {"Ads": False}
    assert data.data.consent(newer) is None
