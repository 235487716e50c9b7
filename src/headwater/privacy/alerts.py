"""Privacy alerts (spec §9.7, A-PR-7): a new, unclassified field in the Inbox is announced once.

Two channels: Slack (an incoming webhook: ``POST`` of ``{"text": …, "channel": "#…"}``, Slack's
published format) and a Segment source (a Track event appended to the chosen source through the
internal path). The worker runs ``Alerts.run_once`` on a timer, never the hot path. A field is
new when it was first seen after its channel was enabled (turning alerts on does not announce
every field the Inbox already holds) and unclassified while it is not in the Inventory. Each
path is announced once, whatever the source sending it: ``privacy_alerted`` remembers it once
every enabled channel took it. A Slack failure leaves the field for the next run; the Track
event's ``messageId`` is derived from the path, so a repeat is deduplicated.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore

logger = logging.getLogger(__name__)

CHANNELS = ("slack", "source")
EVENT = "Privacy Field Detected"  # the Track event a source alert sends
ALERT_USER = "headwater-privacy-portal"  # its anonymousId
PER_RUN = 50  # fields announced a run at most


class Appender(Protocol):
    """``ingest/internal.py``'s ``InternalAppend``: the worker's way into a source."""

    def append(
        self, workspace_id: str, source_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> list[str]: ...


@dataclass(frozen=True)
class AlertSettings:
    channel: str
    enabled: bool
    settings: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.settings.items() if k != "enabledAt"}
        return {"type": self.channel.upper(), "enabled": self.enabled, **shown}


def check_alert(channel: str, data: object) -> tuple[bool, dict[str, Any]]:
    """A channel's settings from the API's (or headwater.yaml's) JSON."""
    if channel not in CHANNELS:
        raise InvalidError("must be SLACK or SOURCE", "channel")
    if not isinstance(data, Mapping):
        raise InvalidError("must be an object")
    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidError("must be true or false", "enabled")
    if channel == "slack":
        url = data.get("webhookUrl")
        name = data.get("channel")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise InvalidError("must be the webhook's http(s) URL", "webhookUrl")
        if not urlsplit(url).hostname or len(url) > 2000:
            raise InvalidError("must be the webhook's http(s) URL", "webhookUrl")
        if not isinstance(name, str) or not name.startswith("#") or not 1 < len(name) <= 80:
            raise InvalidError("must be a channel name such as '#privacy'", "channel")
        return enabled, {"webhookUrl": url, "channel": name}
    source = data.get("sourceId")
    if not isinstance(source, str) or not source or len(source) > 200:
        raise InvalidError("must be the id or name of a source", "sourceId")
    return enabled, {"sourceId": source}


class Alerts:
    def __init__(
        self,
        store: WorkspaceStore,
        *,
        appender: Appender | None = None,
        clock: Callable[[], float] = time.time,
        post: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._store = store
        self._appender = appender
        self._clock = clock
        self._post = post or _post

    def settings(self) -> list[AlertSettings]:
        t = schema.privacy_alerts
        with self._store.reading() as conn:
            rows = {r.channel: r for r in conn.execute(sa.select(t))}
        return [
            AlertSettings(c, bool(rows[c].enabled), dict(rows[c].settings))
            if c in rows
            else AlertSettings(c, False, {})
            for c in CHANNELS
        ]

    def configure(self, channel: str, data: object) -> AlertSettings:
        channel = channel.lower() if isinstance(channel, str) else ""
        enabled, settings = check_alert(channel, data)
        if channel == "source":
            source = self._store.get_source(settings["sourceId"])
            if source is None:
                raise InvalidError("no source has this id or name", "sourceId")
            settings["sourceId"] = source.id
        t = schema.privacy_alerts
        with self._store.writing() as conn:
            old = conn.execute(sa.select(t).where(t.c.channel == channel)).first()
            was = dict(old.settings) if old is not None and old.enabled else {}
            if enabled:  # announce what is new from now on, not the Inbox's backlog
                settings["enabledAt"] = was.get("enabledAt", int(self._clock()))
            conn.execute(t.delete().where(t.c.channel == channel))
            conn.execute(t.insert().values(channel=channel, enabled=enabled, settings=settings))
        return AlertSettings(channel, enabled, settings)

    def remove(self, channel: str) -> None:
        """Forget a channel's settings (headwater.yaml no longer lists it)."""
        t = schema.privacy_alerts
        with self._store.writing() as conn:
            conn.execute(t.delete().where(t.c.channel == channel))

    def run_once(self) -> int:
        """Announce the new unclassified fields; the number announced."""
        channels = [s for s in self.settings() if s.enabled]
        if not channels:
            return 0
        since = min(int(s.settings.get("enabledAt", 0)) for s in channels)
        inbox, inventory = schema.privacy_inbox, schema.privacy_inventory
        alerted, sources = schema.privacy_alerted, schema.sources
        query = (
            sa.select(inbox, sources.c.name.label("source_name"))
            .join(sources, sources.c.id == inbox.c.source_id)
            .where(
                inbox.c.first_seen >= since,
                ~sa.exists().where(inventory.c.path == inbox.c.path),
                ~sa.exists().where(alerted.c.path == inbox.c.path),
            )
            .order_by(inbox.c.first_seen, inbox.c.path)
            .limit(PER_RUN * 5)
        )
        with self._store.reading() as conn:
            rows = conn.execute(query).all()
        workspace = self._store.workspace()
        done = 0
        announced: set[str] = set()
        for row in rows:
            if row.path in announced or done >= PER_RUN:
                continue
            announced.add(row.path)
            try:
                for channel in channels:
                    if row.first_seen >= int(channel.settings.get("enabledAt", 0)):
                        self._send(channel, row, workspace.id if workspace else "")
            except Exception as exc:
                logger.warning("privacy alert for %r not sent, retrying later: %s", row.path, exc)
                continue
            with write_transaction(self._store.engine) as conn:
                conn.execute(alerted.insert().values(path=row.path, at=int(self._clock())))
            done += 1
        return done

    def _send(self, channel: AlertSettings, row: Any, workspace_id: str) -> None:
        recommended = (row.classification or "green").upper()
        if channel.channel == "slack":
            text = (
                f"New field `{row.path}` detected in source {row.source_name} "
                f"(recommended classification: {recommended}"
                + (f", matcher: {row.matcher}" if row.matcher else "")
                + "). Classify it in the Privacy Portal's Inbox."
            )
            self._post(
                channel.settings["webhookUrl"],
                {"text": text, "channel": channel.settings["channel"]},
            )
            return
        if self._appender is None:
            raise RuntimeError("no append path for source alerts")
        digest = hashlib.sha256(row.path.encode()).hexdigest()[:32]
        self._appender.append(
            workspace_id,
            channel.settings["sourceId"],
            [
                {
                    "type": "track",
                    "event": EVENT,
                    "anonymousId": ALERT_USER,
                    "messageId": f"privacy-alert-{digest}",
                    "properties": {
                        "field": row.path,
                        "sourceId": row.source_id,
                        "sourceName": row.source_name,
                        "recommendedClassification": recommended,
                        "matcher": row.matcher,
                        "matcherType": (row.matcher_type or "").upper() or None,
                        "events": list(row.events or []),
                    },
                }
            ],
        )


def _post(url: str, body: dict[str, Any]) -> None:
    response = httpx.post(url, json=body, timeout=10.0)
    response.raise_for_status()
