"""Profiles Insights (spec/unify-engage.md §2.7): what identity resolution refused or did.

Segment's two tabs hold four kinds of record, each one item of one event's resolution with the
event's payload:

- ``error``: the event resolved to no profile (``No matching identifiers on event``);
- ``violation``: an identifier left out, or a merge not made (``resolution.violations``, with
  Segment's names: ``ID value blocked``, ``Identifier value limit exceeded``, …); also a
  subscription item of an Identify left unapplied (``messaging_subscriptions``: Segment's CSV
  error codes, ``INVALID_EMAIL``, ``UNABLE_TO_SUBSCRIBE``, …, about the item's contact);
- ``merge`` and ``mapping``, the success logs: a profile merged into another, an identifier
  added to a profile (``new_profile`` when the event created that profile).

Events Unify drops before resolving them (``status == "dropped"``: the ingestion limits of
§2.6) are not Insights errors: Segment's page says it "won't surface errors if the event was
dropped before entering Unify's Identity Resolution"; their codes are counted by the stage.
Duplicates are not recorded either.

Bounded as Segment's page is ("displays up to 500 records, searches within 30 days"): the
newest 500 records per space and kind, none older than 30 days. The stage records inside its
transaction at the stage's rate, so ``record`` costs nothing for an event that produced no
change (most of them), one multi-row insert otherwise; a space's kind is trimmed back to 500
once every ``prune_every`` records, with one index probe, and ``purge`` (the worker's
maintenance) applies the age limit and the bound to whatever is left.

Filters (§2.7): kind, ID type, time range, violation name and an ``external_id`` search
(``type:value``). Mappings and violations are about one identifier; errors and merges are about
the event's, so they are found by any identifier the event carried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater import reasons
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.timestamps import format_timestamp
from headwater.unify.graph import AddIdentifier, CreateProfile, MergeProfiles
from headwater.unify.identifiers import Event, Extractor
from headwater.unify.resolution import Resolution
from headwater.unify.settings import IdentitySettings

Kind = Literal["error", "violation", "merge", "mapping"]
KINDS: Final[tuple[Kind, ...]] = ("error", "violation", "merge", "mapping")
MAX_RECORDS: Final = 500  # per space and kind
RETENTION_SECONDS: Final = 30 * 86_400
PRUNE_EVERY: Final = 50
# The names a violation filter takes: Segment's (the error's is a kind of its own), and the
# codes of the subscription items an Identify could not apply (``messaging_subscriptions``).
VIOLATIONS: Final = frozenset(
    (reasons.INSIGHTS_REASONS - {reasons.NO_MATCHING_IDENTIFIERS}) | reasons.SUBSCRIPTION_CODES
)


class Entry(NamedTuple):
    """One resolved event, as the stage hands a batch of them to ``record_many``."""

    space_id: str
    source_id: str
    event: Event
    resolution: Resolution
    settings: IdentitySettings | None = None


class Record(NamedTuple):
    """One stored record without its payload (``payloads`` reads those)."""

    id: int
    kind: str
    reason: str | None
    collection: str | None
    id_type: str | None
    id_value: str | None
    profile_id: str | None
    merged_id: str | None
    new_profile: bool
    identifiers: list[list[str]]
    source_id: str
    message_id: str
    event_type: str
    recorded_at: int  # epoch milliseconds


class Query(NamedTuple):
    """What to look for; ``None`` leaves a filter out. Times are epoch milliseconds."""

    kinds: tuple[str, ...] = KINDS
    id_type: str | None = None
    violation: str | None = None
    external_id: tuple[str, str] | None = None  # (type, value)
    start: int | None = None
    end: int | None = None


_LIGHT = [c for c in schema.unify_insights.c if c.name not in ("payload", "space_id")]


class Insights:
    """Writes and reads one state database's Profiles Insights (one per process: it counts
    what it wrote since each space's last trim)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_records: int = MAX_RECORDS,
        prune_every: int = PRUNE_EVERY,
    ) -> None:
        self._clock = clock
        self.max_records = max_records
        self._prune_every = prune_every
        self._unpruned: dict[tuple[str, str], int] = {}
        self._extractors: dict[int, tuple[IdentitySettings, Extractor]] = {}

    # --- writing -------------------------------------------------------------------------------

    def record(
        self,
        conn: Connection,
        space_id: str,
        source_id: str,
        event: Event,
        resolution: Resolution,
        settings: IdentitySettings | None = None,
    ) -> int:
        """Record one event's resolution in the caller's transaction; the rows written.
        ``settings``: the space's, which read the identifiers an error or a merge is found by
        (Segment's defaults when not given)."""
        return self.record_many(conn, [Entry(space_id, source_id, event, resolution, settings)])

    def record_many(self, conn: Connection, entries: Iterable[Entry]) -> int:
        """Record a batch of resolutions with one insert; the rows written (never more than
        the bound per space and kind: older ones of the batch would be trimmed at once)."""
        now = int(self._clock() * 1000)
        rows: list[dict[str, Any]] = []
        for entry in entries:
            rows += self.rows(entry, now)
        return self.write(conn, rows)

    def write(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """Insert records made elsewhere (``rows``' shape; a subscription item an Identify
        could not apply, ``messaging_subscriptions``) within the bound; the rows written."""
        if not rows:
            return 0
        by_kind: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            by_kind.setdefault((row["space_id"], row["kind"]), []).append(row)
        # Of a batch's records, those past the bound would be trimmed at once: never written.
        over = {id(row) for group in by_kind.values() for row in group[: -self.max_records]}
        kept = [row for row in rows if id(row) not in over] if over else list(rows)
        conn.execute(schema.unify_insights.insert(), kept)
        for key, group in by_kind.items():
            count = self._unpruned.get(key, 0) + min(len(group), self.max_records)
            if count >= self._prune_every:
                trim(conn, *key, self.max_records)
                count = 0
            self._unpruned[key] = count
        return len(kept)

    def rows(self, entry: Entry, now: int) -> list[dict[str, Any]]:
        """The rows one resolution makes (none for most events)."""
        resolution = entry.resolution
        if resolution.status in ("dropped", "duplicate"):
            return []
        changes = resolution.changes
        unresolved = resolution.status == "unresolved"
        if not (unresolved or resolution.violations or changes):
            return []
        items: list[dict[str, Any]] = []
        event_ids: list[list[str]] | None = None
        if unresolved or any(isinstance(c, MergeProfiles) for c in changes):
            event_ids = self._identifiers(entry.event, entry.settings)
        if unresolved:
            items.append({"kind": "error", "reason": resolution.reason, "identifiers": event_ids})
        for violation in resolution.violations:
            items.append(
                {
                    "kind": "violation",
                    "reason": violation.reason,
                    "collection": violation.collection,
                    "id_type": violation.type,
                    "id_value": violation.value,
                    "profile_id": violation.profile_id,
                    "identifiers": [[violation.collection, violation.type, violation.value]],
                }
            )
        created = {c.profile_id for c in changes if isinstance(c, CreateProfile)}
        for change in changes:
            if isinstance(change, MergeProfiles):
                items.append(
                    {
                        "kind": "merge",
                        "collection": change.collection,
                        "profile_id": change.into_id,
                        "merged_id": change.from_id,
                        "identifiers": [i for i in event_ids or () if i[0] == change.collection],
                    }
                )
            elif isinstance(change, AddIdentifier):
                items.append(
                    {
                        "kind": "mapping",
                        "collection": change.collection,
                        "id_type": change.type,
                        "id_value": change.value,
                        "profile_id": change.profile_id,
                        "new_profile": change.profile_id in created,
                        "identifiers": [[change.collection, change.type, change.value]],
                    }
                )
        event = entry.event
        common = {
            "space_id": entry.space_id,
            "source_id": entry.source_id,
            "message_id": resolution.message_id,
            "event_type": str(event.get("type") or "")[:20],
            "recorded_at": now,
            "payload": event,
        }
        defaults = {
            "reason": None,
            "collection": None,
            "id_type": None,
            "id_value": None,
            "profile_id": None,
            "merged_id": None,
            "new_profile": False,
        }
        return [{**defaults, **item, **common} for item in items]

    def _identifiers(self, event: Event, settings: IdentitySettings | None) -> list[list[str]]:
        """The event's identifiers (blocked ones too: they are what a user searches for)."""
        settings = settings if settings is not None else _DEFAULT_SETTINGS
        cached = self._extractors.get(id(settings))
        if cached is None or cached[0] is not settings:
            if len(self._extractors) > 1000:
                self._extractors.clear()
            cached = self._extractors[id(settings)] = (settings, Extractor(settings))
        extraction = cached[1].extract(event)
        return [list(i) for i in (*extraction.identifiers, *extraction.blocked)]

    # --- reading -------------------------------------------------------------------------------

    def search(self, conn: Connection, space_id: str, query: Query | None = None) -> list[Record]:
        """The records matching ``query``, newest first: at most 500, of the last 30 days."""
        query = query if query is not None else Query()
        t = schema.unify_insights
        now = int(self._clock() * 1000)
        oldest = now - RETENTION_SECONDS * 1000
        start = oldest if query.start is None else max(query.start, oldest)
        found: list[Record] = []
        for kind in query.kinds:
            select = sa.select(*_LIGHT).where(
                t.c.space_id == space_id, t.c.kind == kind, t.c.recorded_at >= start
            )
            if query.end is not None:
                select = select.where(t.c.recorded_at < query.end)
            if query.violation is not None:
                select = select.where(t.c.reason == query.violation)
            select = select.order_by(t.c.id.desc()).limit(self.max_records)
            found += [Record(*row) for row in conn.execute(select)]
        matches = [r for r in found if _matches(r, query)]
        matches.sort(key=lambda r: r.id, reverse=True)
        return matches[: self.max_records]

    def payloads(self, conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
        """The events of these records, by record id."""
        if not ids:
            return {}
        t = schema.unify_insights
        rows = conn.execute(sa.select(t.c.id, t.c.payload).where(t.c.id.in_(list(ids))))
        return {row.id: row.payload for row in rows}

    # --- retention -----------------------------------------------------------------------------

    def purge(self, engine: Engine) -> int:
        """Delete records past 30 days and beyond each space's bound; the rows deleted."""
        t = schema.unify_insights
        cutoff = int(self._clock() * 1000) - RETENTION_SECONDS * 1000
        with write_transaction(engine) as conn:
            gone = conn.execute(sa.delete(t).where(t.c.recorded_at < cutoff)).rowcount or 0
            over = conn.execute(
                sa.select(t.c.space_id, t.c.kind)
                .group_by(t.c.space_id, t.c.kind)
                .having(sa.func.count() > self.max_records)
            ).all()
            for space_id, kind in over:
                gone += trim(conn, space_id, kind, self.max_records)
        self._unpruned.clear()
        return gone


_DEFAULT_SETTINGS: Final = IdentitySettings()


def trim(conn: Connection, space_id: str, kind: str, keep: int) -> int:
    """Delete a space's records of ``kind`` but the newest ``keep`` (one index probe to find
    the first one to go); the rows deleted."""
    t = schema.unify_insights
    first_gone = (
        sa.select(t.c.id)
        .where(t.c.space_id == space_id, t.c.kind == kind)
        .order_by(t.c.id.desc())
        .limit(1)
        .offset(keep)
        .scalar_subquery()
    )
    deleted = conn.execute(
        sa.delete(t).where(t.c.space_id == space_id, t.c.kind == kind, t.c.id <= first_gone)
    )
    return deleted.rowcount or 0


def _matches(record: Record, query: Query) -> bool:
    ids = record.identifiers or []
    if query.id_type is not None and not any(i[1] == query.id_type for i in ids):
        return False
    if query.external_id is not None:
        type_, value = query.external_id
        if not any(i[1] == type_ and i[2] == value for i in ids):
            return False
    return True


def parse_external_id(text: str) -> tuple[str, str]:
    """``type:value`` (the value may hold ``:``; a type never does); ValueError otherwise."""
    type_, colon, value = text.partition(":")
    if not colon or not type_ or not value:
        raise ValueError("give the external id as type:value, for example email:jane@example.com")
    return type_, value


def record_json(record: Record, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record as the REST API shows it."""
    out: dict[str, Any] = {
        "id": str(record.id),
        "kind": record.kind,
        "name": record.reason,
        "collection": record.collection,
        "externalId": (
            {"type": record.id_type, "id": record.id_value} if record.id_type is not None else None
        ),
        "profileId": record.profile_id,
        "sourceId": record.source_id,
        "messageId": record.message_id,
        "eventType": record.event_type,
        "timestamp": format_timestamp(datetime.fromtimestamp(record.recorded_at / 1000, UTC)),
        "externalIds": [
            {"collection": c, "type": t, "id": v} for c, t, v in record.identifiers or ()
        ],
    }
    if record.kind == "merge":
        out["mergedProfileId"] = record.merged_id
    if record.kind == "mapping":
        out["newProfile"] = record.new_profile
    out["payload"] = payload
    return out
