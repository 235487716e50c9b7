"""A space whose resolved events also go to real ``ProfileData`` (SQLite or PostgreSQL), the way
the identity stage will call it: the event's merges first, then the user's and the account's
profiles, in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from headwater.store.database import write_transaction
from headwater.unify.profiles import ProfileData
from headwater.unify.resolution import Resolution
from headwater.unify.settings import IdentitySettings
from tests.support.unify import START, Space


class ProfileSpace(Space):
    """``send`` resolves an event and records it; ``changed`` holds what each call changed."""

    def __init__(
        self,
        engine: Engine,
        space_id: str = "spa_test",
        now: float = START,
        settings: IdentitySettings | None = None,
    ) -> None:
        super().__init__(settings)
        self.now = now  # the data's clock: what "the last 14 days" counts from
        self.data = ProfileData(engine, space_id, settings, clock=lambda: self.now)
        self.engine = engine
        self.changed: dict[str, dict[str, Any]] = {}

    def resolve(self, event: dict[str, Any], source_id: str = "src") -> Resolution:
        resolution = super().resolve(event, source_id)
        self.record(resolution, event, source_id)
        return resolution

    def record(self, resolution: Resolution, event: dict[str, Any], source_id: str) -> None:
        with write_transaction(self.engine) as conn:
            self.changed = self.data.apply(conn, resolution, event, source_id)

    def user(self, type_: str, value: str) -> str:
        found = self.profile_of(type_, value)
        assert found is not None
        return found

    def values(self, profile_id: str) -> dict[str, Any]:
        return {key: trait.value for key, trait in self.data.traits(profile_id).items()}
