"""The Privacy Inbox (spec §9.4): every field a scanned source sent in the last 7 days.

A consumer group of the processed stream (``privacy-inbox``) walks each event's ``context``,
``traits`` and ``properties`` (Identify and Group calls' traits are ``traits.…``; Track, Page
and Screen properties ``properties.…``), and records per (source, path) when it was first and
last seen, how often, up to 20 event names that carry it, the matchers' pre-classification and
an example payload snippet (the first sighting's value, at most ``SNIPPET`` characters). A pass
is aggregated in memory and writes one row per field; ``last_seen`` is written again only
when it moved by a minute, so a steady source costs the database little.

Only Web, Mobile, Server and Cloud Event sources are scanned (§9.1). A source says which it is
in its settings' ``category`` (``web``, ``mobile``, ``server``, ``cloud-event``,
``cloud-object``, ``reverse-etl``); ``cloud-object`` and ``reverse-etl`` sources are never
scanned, and a source without a category is taken for a Server source (an HTTP source).

The field walk is the Portal's own, not the Source Schema's ``property_paths``: the Inbox
needs each path's value (value matchers, the snippet) and reaches into ``context``, and the
Source Schema sits beside the Portal in the layers.

The snippet holds event data, so ``InboxEraser`` clears the snippets of a deleted subject.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import RecordError
from headwater.privacy.erasure import Erasure, Progress, Target
from headwater.privacy.matchers import Match, Matchers
from headwater.store import schema
from headwater.store.consumer_offsets import claim_offsets, record_offsets
from headwater.store.database import write_transaction
from headwater.store.record import decode_processed
from headwater.store.workspace import is_unicode
from headwater.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

GROUP = "privacy-inbox"
WINDOW = 7 * 24 * 3600  # the Inbox shows the last 7 days (§9.4)
MAX_PATH = 255
MAX_FIELDS = 300  # paths recorded per event
MAX_EVENTS = 20  # event names remembered per field
SNIPPET = 200  # characters of an example snippet
REWRITE_AFTER = 60  # seconds last_seen may lag before it is written again
NOT_SCANNED = frozenset({"cloud-object", "reverse-etl"})
ROOTS = ("context", "traits", "properties")

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def scanned(settings: Mapping[str, Any]) -> bool:
    """Whether the Portal scans a source with these settings (§9.1)."""
    return settings.get("category") not in NOT_SCANNED


def fields(event: Mapping[str, Any], limit: int = MAX_FIELDS) -> Iterator[tuple[str, Any]]:
    """(path, value) of every field under context, traits and properties: nested as
    ``a.b``, array items as ``a.$``; a container's own path comes before its children."""
    count = 0
    for root in ROOTS:
        value = event.get(root)
        if not isinstance(value, dict):
            continue
        stack: list[tuple[str, Any]] = [(root, value)]
        while stack:
            prefix, node = stack.pop()
            items = (
                node.items()
                if isinstance(node, dict)
                else ((("$", item) for item in node[:1]) if node else ())
            )
            for key, item in items:
                path = f"{prefix}.{key}"
                if len(path) > MAX_PATH or "\x00" in path or not is_unicode(path):
                    continue
                yield path, item
                count += 1
                if count >= limit:
                    return
                if isinstance(item, dict | list):
                    stack.append((path, item))


def event_label(event: Mapping[str, Any]) -> str:
    """The name the Inbox lists an event under (Segment's: the Track name, else the call)."""
    kind = event.get("type")
    if kind == "track" and isinstance(event.get("event"), str):
        return str(event["event"])[:200]
    return {"page": "Page Viewed", "screen": "Screen Viewed"}.get(str(kind), str(kind)[:20])


@dataclass
class _Seen:
    first: int
    last: int
    count: int = 0
    events: set[str] = field(default_factory=set)
    match: Match | None = None
    snippet: str = ""
    user_id: str | None = None
    anonymous_id: str | None = None


def snippet(event: Mapping[str, Any], path: str, value: Any) -> str:
    """A short example of the field in its event; event data, so kept short and erasable."""
    shown = {"type": event.get("type"), "event": event_label(event), path: value}
    text = _encode(shown).decode()
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


class InboxObserver:
    """Consumer handler (``observer(records)``) that keeps the Inbox."""

    def __init__(
        self,
        engine: Engine,
        matchers: Callable[[], Matchers],
        sources: Callable[[], Mapping[str, Mapping[str, Any]]],
        *,
        group: str = GROUP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._matchers = matchers
        self._sources = sources  # source id -> its settings
        self._clock = clock
        self._prefix = f"consumer_offset/{group}/"
        self._written: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        self._expired_at = float("-inf")

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        matchers = self._matchers()
        sources = self._sources()
        now = self._clock()
        with write_transaction(self._engine) as conn:
            done = claim_offsets(conn, self._prefix, {p for p, _, _ in records})
            fresh = [r for r in records if r[1] > done.get(r[0], 0)]
            seen: dict[tuple[str, str], _Seen] = {}
            for _partition, offset, payload in fresh:
                try:
                    record = decode_processed(payload)
                except RecordError as exc:
                    logger.error("privacy inbox: skipping log record at %d: %s", offset, exc)
                    continue
                settings = sources.get(record.source_id)
                if settings is None or not scanned(settings) or record.forwarded_from:
                    continue
                at = _seconds(record.received_at, now)
                for raw in record.events:
                    try:
                        event = _decode(raw)
                    except msgspec.DecodeError:
                        continue
                    if isinstance(event, dict):
                        self._observe(record.source_id, event, at, matchers, seen)
            written = self._write(conn, seen)
            record_offsets(conn, self._prefix, ((p, o) for p, o, _ in fresh))
            if now - self._expired_at > 3600:
                t = schema.privacy_inbox
                conn.execute(t.delete().where(t.c.last_seen < int(now) - WINDOW))
                self._expired_at = now
        self._written.update(written)
        if len(self._written) > 100_000:
            self._written.clear()

    def _observe(
        self,
        source_id: str,
        event: dict[str, Any],
        at: int,
        matchers: Matchers,
        seen: dict[tuple[str, str], _Seen],
    ) -> None:
        label = event_label(event)
        for path, value in fields(event):
            key = (source_id, path)
            item = seen.get(key)
            if item is None:
                item = seen[key] = _Seen(at, at)
                item.match = matchers.classify_key(path) or matchers.classify_value(value)
                item.snippet = snippet(event, path, value)
                user_id, anonymous_id = event.get("userId"), event.get("anonymousId")
                item.user_id = user_id[:255] if isinstance(user_id, str) else None
                item.anonymous_id = anonymous_id[:255] if isinstance(anonymous_id, str) else None
            elif item.match is None and not isinstance(value, dict | list):
                item.match = matchers.classify_value(value)
            item.first = min(item.first, at)
            item.last = max(item.last, at)
            item.count += 1
            if len(item.events) < MAX_EVENTS:
                item.events.add(label)

    def _write(
        self, conn: Connection, seen: dict[tuple[str, str], _Seen]
    ) -> dict[tuple[str, str], tuple[int, frozenset[str]]]:
        t = schema.privacy_inbox
        written: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        for (source_id, path), item in seen.items():
            known = self._written.get((source_id, path))
            if (
                known is not None
                and item.last < known[0] + REWRITE_AFTER
                and item.events <= known[1]
            ):
                continue  # nothing worth a write: counts are approximate between rewrites
            where = sa.and_(t.c.source_id == source_id, t.c.path == path)
            row = conn.execute(
                sa.select(t.c.events, t.c.occurrences, t.c.last_seen).where(where)
            ).first()
            match = item.match
            verdict = {
                "classification": match.classification if match else None,
                "matcher": match.matcher if match else None,
                "matcher_type": match.matcher_type if match else None,
            }
            if row is None:
                conn.execute(
                    t.insert().values(
                        source_id=source_id,
                        path=path,
                        first_seen=item.first,
                        last_seen=item.last,
                        events=sorted(item.events),
                        occurrences=item.count,
                        snippet=item.snippet,
                        snippet_user_id=item.user_id,
                        snippet_anonymous_id=item.anonymous_id,
                        **verdict,
                    )
                )
                events = frozenset(item.events)
            else:
                old = [e for e in row.events or [] if isinstance(e, str)]
                merged = list(dict.fromkeys([*old, *sorted(item.events)]))[:MAX_EVENTS]
                conn.execute(
                    t.update()
                    .where(where)
                    .values(
                        last_seen=max(int(row.last_seen), item.last),
                        events=merged,
                        occurrences=int(row.occurrences) + item.count,
                        **verdict,
                    )
                )
                events = frozenset(merged)
            written[(source_id, path)] = (item.last, events)
        return written


@dataclass(frozen=True)
class InboxField:
    source_id: str
    source_name: str
    path: str
    first_seen: int
    last_seen: int
    count: int
    events: list[str]
    classification: str | None
    matcher: str | None
    matcher_type: str | None
    snippet: str
    inventory: str | None  # the user's classification, when the field is in the Inventory

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sourceId": self.source_id,
            "sourceName": self.source_name,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "count": self.count,
            "events": self.events,
            # Segment's recommendation; the Inventory's class once the user chose one.
            "classification": (self.inventory or self.classification or "green").upper(),
            "recommended": (self.classification or "green").upper(),
            "matcher": self.matcher,
            "matcherType": self.matcher_type.upper() if self.matcher_type else None,
            "inInventory": self.inventory is not None,
            "example": self.snippet,
        }


def inbox(
    engine: Engine, now: float, source_id: str | None = None, limit: int = 1000
) -> list[InboxField]:
    """The fields seen in the last 7 days, newest first."""
    t = schema.privacy_inbox
    s = schema.sources
    inv = schema.privacy_inventory
    query = (
        sa.select(t, s.c.name.label("source_name"), inv.c.classification.label("inventory"))
        .join(s, s.c.id == t.c.source_id)
        .outerjoin(inv, inv.c.path == t.c.path)
        .where(t.c.last_seen >= int(now) - WINDOW)
        .order_by(t.c.last_seen.desc(), t.c.path, t.c.source_id)
        .limit(limit)
    )
    if source_id is not None:
        query = query.where(t.c.source_id == source_id)
    with engine.connect() as conn:
        return [
            InboxField(
                r.source_id,
                r.source_name,
                r.path,
                int(r.first_seen),
                int(r.last_seen),
                int(r.occurrences),
                [e for e in r.events or [] if isinstance(e, str)],
                r.classification,
                r.matcher,
                r.matcher_type,
                r.snippet,
                r.inventory,
            )
            for r in conn.execute(query)
        ]


class InboxEraser:
    """Clears the Inbox's example snippets that came from a deleted subject's events."""

    target = Target("internal", "privacy-inbox")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def erase(self, erasure: Erasure) -> Progress | None:
        subjects = erasure.subjects
        t = schema.privacy_inbox
        whose = []
        if subjects.user_ids:
            whose.append(t.c.snippet_user_id.in_(sorted(subjects.user_ids)))
        if subjects.anonymous_ids:
            whose.append(t.c.snippet_anonymous_id.in_(sorted(subjects.anonymous_ids)))
        if not whose:
            return None
        condition = sa.or_(*whose)
        if erasure.source_ids is not None:
            condition = sa.and_(condition, t.c.source_id.in_(sorted(erasure.source_ids)))
        with write_transaction(self._engine) as conn:
            conn.execute(
                t.update()
                .where(condition)
                .values(snippet="", snippet_user_id=None, snippet_anonymous_id=None)
            )
        return None


def _seconds(received_at: Any, default: float) -> int:
    parsed = parse_timestamp(received_at[:40]) if isinstance(received_at, str) else None
    return int(parsed.timestamp() if parsed is not None else default)
