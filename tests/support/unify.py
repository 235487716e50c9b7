"""Identity resolution in tests: events as the Tracking API stores them, and a space (a
``MemoryGraph`` and its ``Resolver``) to send them to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headwater.timestamps import format_timestamp
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.resolution import Resolution, Resolver
from headwater.unify.settings import IdentitySettings

START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
DAY = 86_400.0


class Space:
    """A space's graph and resolver; ``send`` builds an event with a fresh ``messageId`` at the
    current time (``at``, moved by ``later``) and resolves it."""

    def __init__(self, settings: IdentitySettings | None = None, seed: int | None = 1) -> None:
        self.graph = MemoryGraph()
        self.resolver = Resolver(self.graph, settings, ids=ProfileIds(seed))
        self.at = START
        self.sent = 0
        self.history: list[tuple[dict[str, Any], str]] = []

    def later(self, seconds: float) -> None:
        self.at += seconds

    def event(self, type_: str = "track", **fields: Any) -> dict[str, Any]:
        self.sent += 1
        event: dict[str, Any] = {
            "type": type_,
            "messageId": f"msg-{self.sent}",
            "timestamp": format_timestamp(datetime.fromtimestamp(self.at, UTC)),
            "receivedAt": format_timestamp(datetime.fromtimestamp(self.at, UTC)),
            "context": {},
        }
        if type_ == "track":
            event["event"] = "Something Happened"
        event.update(fields)
        return event

    def send(self, type_: str = "track", source_id: str = "src", **fields: Any) -> Resolution:
        return self.resolve(self.event(type_, **fields), source_id)

    def resolve(self, event: dict[str, Any], source_id: str = "src") -> Resolution:
        self.history.append((event, source_id))
        return self.resolver.resolve(event, source_id)

    def ids(self, profile_id: str | None) -> dict[str, list[str]]:
        assert profile_id is not None
        return self.graph.identities(profile_id)

    def profile_of(self, type_: str, value: str, collection: str = "users") -> str | None:
        return self.graph.find(collection, type_, value)
