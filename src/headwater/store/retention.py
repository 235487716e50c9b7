"""The workspace's data retention (spec §10.6): how long the archive keeps events.

Segment offers a workspace policy of 14, 30, 90, 180 or 365 days or Unlimited. Here the
workspace's choice (``data_retention`` in headwater.yaml, ``/api/v1/workspace/data-retention``)
is kept in the workspace's settings; while it has none, the server's
``archive_retention_days`` applies. The archive purge removes hour files past it, and replay
refuses a window that starts before it, since those events are gone or going.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from headwater.errors import InvalidError
from headwater.store.workspace import WorkspaceStore

OPTIONS = (14, 30, 90, 180, 365)
UNLIMITED = "unlimited"
SETTING = "data_retention_days"

# Days, or None for unlimited.
Retention = int | None


def parse_retention(value: object, field: str = "data_retention") -> Retention:
    """A retention as a client or headwater.yaml writes it: one of the days or ``unlimited``."""
    if value == UNLIMITED:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in OPTIONS:
        return value
    choices = ", ".join(str(days) for days in OPTIONS)
    raise InvalidError(f"{field} must be one of {choices} or {UNLIMITED!r}", field)


def shown(days: Retention) -> int | str:
    return UNLIMITED if days is None else days


class DataRetention:
    """The workspace's retention, falling back to the server's ``default_days``."""

    def __init__(self, store: WorkspaceStore, default_days: Retention) -> None:
        self._store = store
        self._default = default_days

    def chosen(self) -> tuple[bool, Retention]:
        """(whether the workspace chose one, the days it chose or None for unlimited)."""
        workspace = self._store.workspace()
        settings = workspace.settings if workspace is not None else {}
        if SETTING not in settings:
            return False, None
        value = settings[SETTING]
        return True, None if value is None else int(value)

    def days(self) -> Retention:
        """The retention in force: the workspace's, else the server's."""
        chosen, days = self.chosen()
        return days if chosen else self._default

    def set(self, days: Retention) -> None:
        self._store.set_setting(SETTING, days)

    def oldest(self, now: float) -> datetime | None:
        """The earliest ``receivedAt`` still kept, or None when nothing expires."""
        days = self.days()
        if days is None:
            return None
        return datetime.fromtimestamp(now, UTC) - timedelta(days=days)
