"""Identity resolution as a stage of the pipeline: each space's events, resolved into its profiles.

A consumer group of the processed stream (``unify``) with an exclusive lease: one process at a
time resolves every space, so each space's graph has one writer and its in-process caches stay
true. A pass takes the records of every partition, sorts their events by ``receivedAt`` (the
order within the owner's stream) and, in ONE transaction, resolves each event of a source
connected to a space, writes the profile data (traits, the event on the timeline, metadata),
user subscription states (an Identify's ``context.messaging_subscriptions``), Profiles
Insights and the Profiles Sync feed, and records the offsets it handled. A crash
before the commit leaves nothing, so the records come again; an offset recorded means the pass
that handled it committed, so a record is resolved once (``claim_offsets``). The graph also
remembers every ``messageId`` it applied, so a replay of events already resolved (from the
archive, when a source is connected again) changes nothing.

Connecting a source to a space replays its last month from the archive, oldest first (Segment:
"Unify replays a month of the source's data"): one chunk per pass, in the pass's transaction,
until the connection's replay is marked done.

An erasure (a deletion regulation, ``unify/erasure.py``) deletes profiles in its own
transaction but in the same turn (``take_turn``), and counts itself there (``erased``): the
next pass sees the count moved and forgets its caches, so a deleted profile is never written
back from memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import RecordError
from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.consumer_offsets import claim_offsets, record_offsets
from headwater.store.database import write_transaction
from headwater.store.record import decode_processed
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import parse_timestamp
from headwater.unify.identifiers import Extractor
from headwater.unify.insights import Entry, Insights
from headwater.unify.messaging_subscriptions import SubscriptionRecorder, carries
from headwater.unify.profiles import ProfileData
from headwater.unify.profiles_sync import ProfilesSyncFeed, Resolved
from headwater.unify.resolution import Resolution, Resolver
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.sql_graph import SqlGraph

logger = logging.getLogger(__name__)

GROUP = "unify"
_OFFSETS = "unify.offset."  # meta keys of the offsets a committed pass handled
# A meta row every pass, replay and erasure locks (one writer at a time); its value counts the
# erasures (``unify/erasure.py``), so the resolving process knows when to drop its caches.
_OWNER = "unify.owner."
REPLAY_DAYS = 30  # "the last month" of a newly connected source
REPLAY_CHUNK = 2_000  # archived events per pass
# A connection's replay reads the archive up to a little after the connection, so the events
# the stream delivered while this process had not seen the connection yet are covered too;
# it starts once the archive has had time to write them.
REPLAY_MARGIN = 10.0
REPLAY_WAIT = 300.0  # past this, replay even if the archive consumer has not caught up
# How long a space's graph remembers the messageIds it applied: the Tracking API's dedup window.
# The stage's own offsets already keep a record from being resolved twice; an event replayed
# later finds its identifiers where it put them (no change to the graph).
APPLIED_RETENTION = 2 * 86_400.0


class Observer(Protocol):
    """A later stage fed by identity resolution (Engage): it sees each pass's resolved events
    of a space, in order, inside the pass's transaction and graph batch, so its state commits
    (or rolls back) with the resolution it follows."""

    def observe(
        self,
        conn: Connection,
        space: SpaceInfo,
        graph: SqlGraph,
        profiles: ProfileData,
        resolved: Sequence[Resolved],
    ) -> None: ...

    def expire(
        self, conn: Connection, space: SpaceInfo, graph: SqlGraph, profiles: ProfileData
    ) -> int:
        """Work time alone makes (values leaving their windows); how much was done."""
        ...


@dataclass(eq=False)  # hashed by identity: a pass groups its events per space
class _Space:
    """One space's resolution state in the owner process."""

    info: SpaceInfo
    graph: SqlGraph
    resolver: Resolver
    profiles: ProfileData
    extractor: Extractor


@dataclass(frozen=True)
class _Pending:
    """A connection whose month of history is still to be replayed."""

    space_id: str
    source_id: str
    connected_at: int
    # How far it got: the archive hour it is in (None: not started) and how many of that
    # hour's events it has taken. An hour file only grows, so a count of its events is a
    # stable position where receivedAt (not strictly ordered within a file) is not.
    hour: int | None
    skip: int


class IdentityStage:
    """The ``unify`` consumer group's handler."""

    def __init__(
        self,
        engine: Engine,
        archive: Archive,
        *,
        clock: Callable[[], float] = time.time,
        archive_caught_up: Callable[[], bool] = lambda: True,
        observers: Sequence[Observer] = (),
    ) -> None:
        self._engine = engine
        self._observers = tuple(observers)
        self._archive = archive
        self._clock = clock
        self._archive_caught_up = archive_caught_up
        self._store = SpaceStore(WorkspaceStore(engine))
        # Checked every pass (interval 0): a pass must know a connection made before the
        # events it handles were received, or they would be neither resolved nor replayed.
        self._config: ConfigSnapshot[list[SpaceInfo]] = ConfigSnapshot(
            WorkspaceStore(engine).config_version, self._store.list, [], interval=0.0
        )
        self._spaces: dict[str, _Space] = {}
        self._insights = Insights(clock=clock)
        self._feed = ProfilesSyncFeed(clock=clock)
        self._subscriptions = SubscriptionRecorder(self._insights, clock=clock)
        self._written: dict[int, int] = {}  # the offsets this process's last pass recorded
        self._generation: int | None = None  # the erasures' count at this process's last turn

    # --- the consumer's handler ------------------------------------------------------------

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        spaces = self._current_spaces()
        if not spaces:
            return  # no Unify here: nothing to resolve or replay, and no transaction
        by_source: dict[str, list[_Space]] = {}
        for space in spaces.values():
            info = space.info
            resolved = {*info.source_ids, *filter(None, [info.engage_source_id])}
            for source_id in resolved:
                by_source.setdefault(source_id, []).append(space)
        try:
            with write_transaction(self._engine) as conn:
                self._take_turn(conn)  # passes, replays and erasures take turns
                done = claim_offsets(conn, _OFFSETS, {p for p, _, _ in records})
                if any(self._written.get(p, 0) != offset for p, offset in done.items()):
                    self._forget()  # another process wrote since this one's last pass
                fresh = [r for r in records if r[1] > done.get(r[0], 0)]
                events = self._events(fresh, by_source)
                for space, items in events.items():
                    self._resolve(conn, space, items)
                self._replay_some(conn, spaces)  # under load too
                self._expire(conn, spaces)
                handled = [(p, o) for p, o, _ in fresh]
                record_offsets(conn, _OFFSETS, handled)
        except BaseException:
            self._forget()
            raise
        for partition, offset in handled:
            self._written[partition] = max(offset, self._written.get(partition, 0))
        for partition, offset in done.items():
            self._written.setdefault(partition, offset)

    # --- spaces ------------------------------------------------------------------------------

    def _current_spaces(self) -> dict[str, _Space]:
        infos = {info.id: info for info in self._config.get()}
        for space_id in list(self._spaces):
            if space_id not in infos:
                del self._spaces[space_id]
        for space_id, info in infos.items():
            space = self._spaces.get(space_id)
            if space is None:
                graph = SqlGraph(self._engine, space_id)
                profiles = ProfileData(self._engine, space_id, info.identity, clock=self._clock)
                self._spaces[space_id] = _Space(
                    info,
                    graph,
                    Resolver(graph, info.identity, clock=self._clock),
                    profiles,
                    Extractor(info.identity),
                )
            elif space.info != info:
                if space.info.identity != info.identity:
                    # New events only (A-UE-19): nothing stored is revisited.
                    space.resolver.settings = info.identity
                    space.profiles = ProfileData(
                        self._engine, space_id, info.identity, clock=self._clock
                    )
                    space.extractor = Extractor(info.identity)
                space.info = info
        return self._spaces

    def _take_turn(self, conn: Connection) -> None:
        """Wait for the writer's turn; forget the caches when an erasure ran since the last."""
        generation = take_turn(conn)
        if self._generation is not None and generation != self._generation:
            self._forget()  # profiles were erased behind the caches: none may be written back
        self._generation = generation

    def _forget(self) -> None:
        for space in self._spaces.values():
            space.graph.forget()
        self._written = {}

    # --- events ------------------------------------------------------------------------------

    def _events(
        self, records: Iterable[tuple[int, int, bytes]], by_source: Mapping[str, list[_Space]]
    ) -> dict[_Space, list[tuple[str, dict[str, Any]]]]:
        """The events of connected sources, per space, in ``receivedAt`` order."""
        found: list[tuple[float, int, str, dict[str, Any]]] = []
        for _partition, offset, payload in records:
            try:
                record = decode_processed(payload)
            except RecordError as exc:
                logger.error("identity resolution: skipping log record at %d: %s", offset, exc)
                continue
            if record.source_id not in by_source:
                continue
            for raw in record.events:
                try:
                    event = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    continue
                if isinstance(event, dict):
                    at = _received_at(event)
                    found.append((at, len(found), record.source_id, event))
        found.sort(key=lambda item: (item[0], item[1]))
        per_space: dict[_Space, list[tuple[str, dict[str, Any]]]] = {}
        for _at, _n, source_id, event in found:
            for space in by_source[source_id]:
                per_space.setdefault(space, []).append((source_id, event))
        return per_space

    def _resolve(
        self, conn: Connection, space: _Space, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        graph, resolver, profiles = space.graph, space.resolver, space.profiles
        space_id, settings = space.info.id, space.info.identity
        sync = space.info.profiles_sync is not None
        keep = sync or bool(self._observers)
        insights: list[Entry] = []
        synced: list[Resolved] = []
        subscribing: list[tuple[str, dict[str, Any], Resolution]] = []
        with graph.batch(conn), profiles.batch(conn):
            seen = graph.applied_many(
                [m for _, event in items if (m := str(event.get("messageId") or ""))]
            )
            # Each event's identifiers, read once (the warm-up, the resolver and the timeline
            # entry use them), one lookup of all of them and one read of the profiles events
            # will add to or merge: then a known user's event costs no query at all, and
            # the others only their writes.
            extract = space.extractor.extract
            extractions = [extract(event) for _, event in items]
            graph.warm([e.identifiers for e in extractions])
            for (source_id, event), extraction in zip(items, extractions, strict=True):
                message_id = str(event.get("messageId") or "")
                if message_id:
                    if message_id in seen:
                        continue
                    seen.add(message_id)
                resolution = resolver.plan(event, source_id, extraction)
                traits: list[tuple[str, Mapping[str, Any]]] = []
                if resolution.status != "dropped":
                    graph.apply(message_id, resolution.changes)
                    # Merges first (the survivor takes the merged profile's data), then the
                    # event's traits, timeline entry and metadata.
                    changed = profiles.apply(
                        conn, resolution, event, source_id, extraction.identifiers
                    )
                    traits = list(changed.items())
                    if carries(event):  # context.messaging_subscriptions: user subscriptions
                        subscribing.append((source_id, event, resolution))
                insights.append(Entry(space_id, source_id, event, resolution, settings))
                if keep:
                    synced.append(
                        Resolved(source_id, event, resolution, traits, extraction.identifiers)
                    )
            if subscribing:  # before the observers: a messaging step sees the new states
                self._subscriptions.record(conn, space_id, subscribing)
            for observer in self._observers:
                observer.observe(conn, space.info, graph, profiles, synced)
        self._insights.record_many(conn, insights)
        if sync and synced:
            self._feed.record_many(conn, space_id, synced)

    # --- replay of a newly connected source ------------------------------------------------

    def replay(self) -> int:
        """Replay one chunk when no record is waiting (the consumer's idle work); the events
        replayed, or 1 when a replay only finished."""
        spaces = self._current_spaces()
        if not spaces:
            return 0
        try:
            with write_transaction(self._engine) as conn:
                self._take_turn(conn)
                return self._replay_some(conn, spaces) + self._expire(conn, spaces)
        except BaseException:
            self._forget()
            raise

    def _expire(self, conn: Connection, spaces: Mapping[str, _Space]) -> int:
        """The observers' time-driven work, in the pass's transaction."""
        done = 0
        for observer in self._observers:
            for space in spaces.values():
                with space.graph.batch(conn), space.profiles.batch(conn):
                    done += observer.expire(conn, space.info, space.graph, space.profiles)
        return done

    def _replay_some(self, conn: Connection, spaces: Mapping[str, _Space]) -> int:
        """Replay one chunk of one pending connection's month of history; as ``replay``."""
        pending = _pending(conn)
        now = self._clock()
        for item in pending:
            space = spaces.get(item.space_id)
            if space is None or item.source_id not in space.info.source_ids:
                continue
            end = item.connected_at + REPLAY_MARGIN
            if now < end or not (self._archive_caught_up() or now > end + REPLAY_WAIT):
                continue
            window = item.connected_at - REPLAY_DAYS * 86_400
            hour = item.hour if item.hour is not None else int(window // 3600 * 3600)
            chunk: list[tuple[str, dict[str, Any]]] = []
            at_hour, index = hour, 0
            full = False
            for event in self._archive.read(item.source_id, _utc(max(hour, window)), _utc(end)):
                event_hour = int(_received_at(event) // 3600 * 3600)
                if event_hour != at_hour:
                    at_hour, index = event_hour, 0
                index += 1
                if at_hour == hour and index <= item.skip:
                    continue
                if len(chunk) == REPLAY_CHUNK:
                    full = True
                    index -= 1  # this one is the next chunk's first
                    break
                chunk.append((item.source_id, event))
            self._resolve(conn, space, chunk)
            _mark(conn, item, (at_hour, index) if full else None, now)
            return max(1, len(chunk))  # one chunk per pass keeps passes short
        return 0

    # --- reads for tests and the CLI ----------------------------------------------------------

    def pending_replays(self) -> list[tuple[str, str]]:
        with self._engine.connect() as conn:
            return [(p.space_id, p.source_id) for p in _pending(conn)]


def take_turn(conn: Connection) -> int:
    """Take the graph writer's turn for this transaction (a row every pass, replay and erasure
    locks: one writer of every space's graph at a time); the number of erasures done so far."""
    return claim_offsets(conn, _OWNER, [0])[0]


def erased(conn: Connection, generation: int) -> None:
    """Tell the resolving process, on its next turn, that profiles went behind its caches
    (called by an erasure inside ``take_turn``'s transaction, with what it returned)."""
    record_offsets(conn, _OWNER, [(0, generation + 1)])


def _pending(conn: Connection) -> list[_Pending]:
    ss = schema.space_sources
    rows = conn.execute(
        sa.select(
            ss.c.space_id, ss.c.source_id, ss.c.connected_at, ss.c.replay_hour, ss.c.replay_skip
        )
        .where(ss.c.replayed_at.is_(None))
        .order_by(ss.c.connected_at, ss.c.space_id, ss.c.source_id)
    ).all()
    return [
        _Pending(r.space_id, r.source_id, r.connected_at, r.replay_hour, r.replay_skip or 0)
        for r in rows
    ]


def _mark(conn: Connection, item: _Pending, position: tuple[int, int] | None, now: float) -> None:
    """Record a chunk's progress (hour, events of it taken), or the replay done (None)."""
    ss = schema.space_sources
    values: dict[str, Any] = (
        {"replayed_at": int(now)}
        if position is None
        else {"replay_hour": position[0], "replay_skip": position[1]}
    )
    conn.execute(
        sa.update(ss)
        .where(
            ss.c.space_id == item.space_id,
            ss.c.source_id == item.source_id,
            ss.c.connected_at == item.connected_at,  # not a connection made again meanwhile
        )
        .values(**values)
    )


def _received_at(event: Mapping[str, Any]) -> float:
    parsed = parse_timestamp(event.get("receivedAt"))
    return parsed.timestamp() if parsed is not None else 0.0


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
