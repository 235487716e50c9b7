"""``SqlGraph``: one space's identity graph on the state database (SQLite or PostgreSQL).

Built for millions of profiles: a lookup by identifier is one probe of the unique index on
(space, collection, type, value); ``find_many`` is one query; a merge updates the merged
profile's rows through their indexes (never a scan); ``apply`` is one transaction.

The pipeline stage (one owner per space, the only writer of its space's graph) resolves a batch
of events in one transaction, ``with graph.batch(conn):``, after one ``applied_many`` of its
``messageId``s and one ``warm`` (a lookup of every identifier the batch carries, and a read of
the profiles its events will add to or merge): then an event of a known user costs no query at
all, and the others only their writes. New profiles, identifiers and counts go as one statement
a table before the next read, merge or link (``_Unsent``); on PostgreSQL a merge is one
statement, and the statements are pipelined. The ``messageId``s applied are written in one
statement when the batch ends. Outside a batch every call opens its own connection (Profile API
reads, tests).

The hot path runs its statements on the driver's cursor, not through SQLAlchemy's execution
layer, whose per-statement cost (tens of µs) would be most of an event's budget.

In-process cache: identifier → canonical profile and canonical profile → (seq, collection), kept
right through merges (a merge re-points the moved identifiers it returns, and drops the merged
profile), halved when over ``cache_size`` entries, and dropped whole when a batch's transaction
rolls back (so nothing it added survives) and by ``forget()`` (ownership moved).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store.database import is_sqlite, write_transaction
from headwater.unify.graph import (
    AddIdentifier,
    Change,
    CreateProfile,
    LinkProfiles,
    MergeProfiles,
    ProfileRecord,
    StoredIdentifier,
)

Key = tuple[str, str, str]  # (collection, type, value)

CHUNK = 2000  # keys (or messageIds) per query: well under both databases' parameter limits


class _Batch:
    def __init__(self, conn: Connection, cursor: Any) -> None:
        self.conn = conn
        self.cursor = cursor
        self.absent: set[Key] = set()  # keys the graph does not hold (this batch only)
        self.applied: set[str] = set()  # messageIds known applied, the batch's included
        self.new: set[str] = set()  # messageIds known not applied before the batch
        self.pending: list[str] = []  # messageIds the batch applied, written at its end
        # profiles read with their identifiers since the last apply: resolution reads a
        # profile's identifiers and then its counts, in one query this way
        self.records: dict[str, ProfileRecord] = {}
        self.held: dict[str, _Held] = {}
        self.added = 0  # identifiers the batch added: their order after every stored one
        self.unsent = _Unsent()
        self.failed = False
        self.pipeline: Any = None  # psycopg's pipeline context while one is open


class _Held:
    """A profile whose identifiers a batch knows in full: read in one query for all such
    profiles when the batch is warmed, or made in the batch, and kept right through its
    applies. Resolution counts a profile's identifiers before it adds to it or merges it; for
    these profiles that costs no query, and no wait for the pipeline."""

    __slots__ = ("record", "rows")

    def __init__(self, record: ProfileRecord) -> None:
        self.record = record
        # in the order added: (0, seq) stored before the batch, (1, n) added in it
        self.rows: list[tuple[tuple[int, int], StoredIdentifier]] = []


class _Unsent:
    """Rows applies wrote that are not sent yet: they go as one statement a table before the
    next read, merge or link, and when the apply (outside a batch) or the batch ends. Most of
    a batch's new profiles and identifiers then cost a share of three statements, not two
    statements each."""

    def __init__(self) -> None:
        self.profiles: list[tuple[Any, ...]] = []  # PostgreSQL only: seqs are taken ahead
        self.identities: list[tuple[Any, ...]] = []
        self.grow: dict[int, int] = {}  # profile seq → identifiers added (mappings)

    def __bool__(self) -> bool:
        return bool(self.profiles or self.identities or self.grow)


class _Local:
    """One ``apply``'s view of the profiles it touches, before the cache learns of them."""

    def __init__(self) -> None:
        self.live: dict[str, tuple[int, str]] = {}  # created or looked up: (seq, collection)
        self.gone: set[str] = set()
        self.merged: list[tuple[str, str]] = []  # (from, into)
        self.index: list[tuple[Key, str]] = []


class SqlGraph:
    """A ``GraphStore`` for one space on ``engine`` (migrated)."""

    def __init__(
        self,
        engine: Engine,
        space_id: str,
        *,
        cache_size: int = 200_000,
        sqlite_page_cache_mib: int = 256,
    ) -> None:
        self._engine = engine
        self.space_id = space_id
        self._cache_size = cache_size
        self._page_cache_kib = sqlite_page_cache_mib * 1024
        self._pg = not is_sqlite(engine)
        self._index: dict[Key, str] = {}
        self._profiles: dict[str, tuple[int, str]] = {}  # canonical only
        # merged-away profile → the one it went into, for cached identifiers that still name
        # it (a merge does not know which of the moved identifiers the cache holds)
        self._moved: dict[str, str] = {}
        self._seqs: list[int] = []  # profile seqs taken from PostgreSQL's sequence, unused
        self._batch: _Batch | None = None
        self._dirty = False  # the cache holds what an uncommitted batch did
        self._hooked: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._sql: dict[str, str] = {}

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def batch(self, conn: Connection) -> Iterator[None]:
        """Run reads and applies on ``conn``'s open transaction, which the caller commits (or
        rolls back: then the cache forgets everything, so nothing the batch added stays).

        An ``apply`` that raises spoils the batch: its transaction must roll back. On
        PostgreSQL the graph's statements are pipelined (sent without waiting for each answer;
        an error surfaces at the next read or at the end); a statement the caller runs on
        ``conn`` inside the block first sends the graph's unsent rows and ends the pipeline,
        so it sees them all."""
        if self._batch is not None:
            raise RuntimeError("a batch is already open")
        if not conn.in_transaction():
            raise ValueError("batch() needs a connection with an open transaction")
        if conn not in self._hooked:
            sa.event.listen(conn, "rollback", self._rolled_back)
            sa.event.listen(conn, "commit", self._committed)
            sa.event.listen(conn, "before_cursor_execute", self._before_callers_statement)
            self._hooked.add(conn)
        self._batch = batch = _Batch(conn, conn.connection.cursor())
        self._dirty = True
        try:
            if not self._pg:
                # The graph's hot pages in SQLite's own cache, not re-read from the OS.
                batch.cursor.execute(f"PRAGMA cache_size = -{self._page_cache_kib}")
            yield
            self._end(batch)
            self._end_pipeline(batch)
        except BaseException as error:
            self.forget()
            self._end_pipeline(batch, error)
            raise
        finally:
            self._batch = None
            batch.cursor.close()

    def _cursor(self, batch: _Batch) -> Any:
        """The batch's cursor, in pipeline mode on PostgreSQL."""
        if self._pg and batch.pipeline is None:
            pipeline = batch.conn.connection.dbapi_connection.pipeline()  # type: ignore[union-attr]
            pipeline.__enter__()
            batch.pipeline = pipeline
        return batch.cursor

    def _end_pipeline(self, batch: _Batch, error: BaseException | None = None) -> None:
        """Leave pipeline mode, waiting for every answer (raising the first error)."""
        pipeline, batch.pipeline = batch.pipeline, None
        if pipeline is not None:
            if error is None:
                pipeline.__exit__(None, None, None)
            else:
                with contextlib.suppress(Exception):
                    pipeline.__exit__(type(error), error, error.__traceback__)

    def _before_callers_statement(self, conn: Connection, *_args: Any) -> None:
        batch = self._batch
        if batch is not None and batch.conn is conn:
            self._send(self._cursor(batch), batch.unsent)
            self._end_pipeline(batch)

    def _end(self, batch: _Batch) -> None:
        if batch.failed:
            raise RuntimeError("an apply failed in this batch: roll its transaction back")
        self._send(self._cursor(batch), batch.unsent)
        if not batch.pending:
            return
        now = int(time.time())
        if self._pg:  # one statement, not one a row
            batch.cursor.execute(
                "INSERT INTO unify_applied (space_id, message_id, applied_at) "
                "SELECT %s, unnest(%b::text[]), %s",  # %b: binary, see profiles._flush
                (self.space_id, batch.pending, now),
            )
        else:
            batch.cursor.executemany(
                "INSERT INTO unify_applied (space_id, message_id, applied_at) VALUES (?, ?, ?)",
                [(self.space_id, m, now) for m in batch.pending],
            )

    def _rolled_back(self, _conn: Connection) -> None:
        if self._dirty:
            self.forget()
            self._dirty = False

    def _committed(self, _conn: Connection) -> None:
        if self._batch is None:
            self._dirty = False

    def forget(self) -> None:
        """Drop the in-process cache (a rolled-back batch, or ownership of the space moved)."""
        self._index.clear()
        self._profiles.clear()
        self._moved.clear()
        self._seqs.clear()

    # --- GraphStore ---------------------------------------------------------------------------

    def applied(self, message_id: str) -> bool:
        batch = self._batch
        if batch is not None:
            if message_id in batch.applied:
                return True
            if message_id in batch.new:
                return False
        rows = self._rows(
            "SELECT 1 FROM unify_applied WHERE space_id = ? AND message_id = ?",
            (self.space_id, message_id),
        )
        return bool(rows)

    def applied_many(self, message_ids: Collection[str]) -> set[str]:
        """The ``messageId``s of these that were applied: one query (per 2,000). In a batch,
        ``applied`` answers for them without a query."""
        ids = list(dict.fromkeys(message_ids))
        found: set[str] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            params: tuple[Any, ...] = (self.space_id, chunk)
            if self._pg:  # one statement text whatever the count: parsed once
                where = "message_id = ANY(%b::text[])"
            else:
                where = f"message_id IN ({', '.join('?' * len(chunk))})"
                params = (self.space_id, *chunk)
            found.update(
                row[0]
                for row in self._rows(
                    f"SELECT message_id FROM unify_applied WHERE space_id = ? AND {where}",
                    params,
                    planned=False,
                )
            )
        batch = self._batch
        if batch is not None:
            found.update(m for m in ids if m in batch.applied)
            batch.applied.update(found)
            batch.new.update(m for m in ids if m not in found)
        return found

    def find(self, collection: str, type_: str, value: str) -> str | None:
        return self.find_many([(collection, type_, value)]).get((collection, type_, value))

    def find_many(self, keys: Sequence[Key]) -> dict[Key, str]:
        index, batch, moved = self._index, self._batch, self._moved
        found: dict[Key, str] = {}
        missing: list[Key] = []
        for key in keys:
            profile = index.get(key)
            if profile is not None:
                if profile in moved:
                    while profile in moved:
                        profile = moved[profile]
                    index[key] = profile
                found[key] = profile
            elif batch is None or key not in batch.absent:
                missing.append(key)
        if not missing:
            return found
        missing = list(dict.fromkeys(missing))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            for collection, type_, value, profile, seq in self._find(chunk):
                key = (collection, type_, value)
                found[key] = profile
                self._remember(key, profile, (int(seq), collection))
        if batch is not None:
            batch.absent.update(key for key in missing if key not in found)
        return found

    def warm(self, events: Sequence[Sequence[Key]]) -> None:
        """Ready a batch for these events (each event's identifiers): one lookup of all their
        identifiers, then, in a batch, one read of the profiles whose identifiers resolution
        will count: those an event would add an identifier to or merge with another."""
        found = self.find_many([key for keys in events for key in keys])
        batch = self._batch
        if batch is None or not found:
            return
        wanted: dict[int, str] = {}
        for keys in events:
            for collection in {key[0] for key in keys}:
                mine = [key for key in keys if key[0] == collection]
                held = [found[key] for key in mine if key in found]
                profiles = set(held)
                if profiles and (len(profiles) > 1 or len(held) < len(mine)):
                    for profile_id in profiles:
                        known = self._profiles.get(profile_id)
                        if known is not None and profile_id not in batch.held:
                            wanted[known[0]] = profile_id
        seqs = list(wanted)
        for start in range(0, len(seqs), CHUNK):
            self._hold_stored(batch, {seq: wanted[seq] for seq in seqs[start : start + CHUNK]})

    def _hold_stored(self, batch: _Batch, profiles: dict[int, str]) -> None:
        select = (
            "SELECT p.seq, p.collection, p.created_at, p.merges, p.mappings, i.seq, i.type, "
            "i.value, i.first_seen, i.source_id, i.message_id FROM unify_profiles p "
            "LEFT JOIN unify_identities i ON i.profile = p.seq "
        )
        if self._pg:
            rows = self._rows(select + "WHERE p.seq = ANY(%b::bigint[])", (list(profiles),))
        else:
            marks = ", ".join("?" * len(profiles))
            rows = self._rows(select + f"WHERE p.seq IN ({marks})", list(profiles))
        for row in sorted(rows, key=lambda row: (row[0], row[5] or 0)):
            seq, collection, created_at, merges, mappings, order = row[:6]
            profile_id = profiles[seq]
            held = batch.held.get(profile_id)
            if held is None:
                record = ProfileRecord(
                    profile_id, collection, seq, float(created_at), int(merges), int(mappings)
                )
                held = batch.held[profile_id] = _Held(record)
            if order is not None:
                kind, value, first_seen, source_id, message_id = row[6:]
                stored = StoredIdentifier(kind, value, float(first_seen), source_id, message_id)
                held.rows.append(((0, int(order)), stored))

    def _hold(self, batch: _Batch, changes: Sequence[Change], local: _Local) -> None:
        """One applied event's changes, into the batch's held profiles."""
        held = batch.held
        for change in changes:
            if isinstance(change, CreateProfile):
                seq, collection = local.live[change.profile_id]
                record = ProfileRecord(change.profile_id, collection, seq, change.at, 0, 0)
                held[change.profile_id] = _Held(record)
            elif isinstance(change, AddIdentifier):
                batch.absent.discard((change.collection, change.type, change.value))
                profile = held.get(change.profile_id)
                if profile is not None:
                    batch.added += 1
                    stored = StoredIdentifier(
                        change.type, change.value, change.at, change.source_id, change.message_id
                    )
                    profile.rows.append(((1, batch.added), stored))
                    record = profile.record
                    profile.record = record._replace(mappings=record.mappings + 1)
            elif isinstance(change, MergeProfiles):
                gone = held.pop(change.from_id, None)
                into = held.get(change.into_id)
                if gone is None or into is None:
                    held.pop(change.into_id, None)  # not known in full any more
                    continue
                into.rows = sorted(into.rows + gone.rows, key=lambda row: row[0])
                record = into.record
                into.record = record._replace(
                    merges=record.merges + gone.record.merges + 1,
                    mappings=record.mappings + gone.record.mappings,
                )

    def profile(self, profile_id: str) -> ProfileRecord:
        batch = self._batch
        if batch is not None:
            if profile_id in batch.held:
                return batch.held[profile_id].record
            if profile_id in batch.records:
                return batch.records[profile_id]
        rows = self._rows(
            "SELECT seq, collection, created_at, merges, mappings, canonical "
            "FROM unify_profiles WHERE space_id = ? AND segment_id = ?",
            (self.space_id, profile_id),
        )
        if not rows:
            raise KeyError(profile_id)
        seq, collection, created_at, merges, mappings, canonical = rows[0]
        if canonical is not None:
            raise KeyError(f"{profile_id} was merged")
        return ProfileRecord(
            profile_id, collection, int(seq), float(created_at), int(merges), int(mappings)
        )

    def identifiers(
        self, profile_id: str, types: Collection[str] | None = None
    ) -> list[StoredIdentifier]:
        batch = self._batch
        if batch is not None and profile_id in batch.held:
            held = batch.held[profile_id].rows
            return [row for _, row in held if types is None or row.type in types]
        seq, _ = self._live(profile_id)
        if types is not None and not types:
            return []
        wanted = () if types is None else tuple(sorted(types))
        of_types = f" AND i.type IN ({', '.join('?' * len(wanted))})" if wanted else ""
        rows = self._rows(
            "SELECT p.collection, p.created_at, p.merges, p.mappings, "
            "i.type, i.value, i.first_seen, i.source_id, i.message_id FROM unify_profiles p "
            f"LEFT JOIN unify_identities i ON i.profile = p.seq{of_types} "
            "WHERE p.seq = ? ORDER BY i.seq",
            (*wanted, seq),
        )
        if not rows:
            raise KeyError(profile_id)
        if batch is not None:
            collection, created_at, merges, mappings = rows[0][:4]
            batch.records[profile_id] = ProfileRecord(
                profile_id, collection, seq, float(created_at), int(merges), int(mappings)
            )
        return [
            StoredIdentifier(t, v, float(at), s, m) for *_, t, v, at, s, m in rows if t is not None
        ]

    def linked(self, user_id: str, account_id: str) -> bool:
        user, _ = self._live(user_id)
        account, _ = self._live(account_id)
        return bool(
            self._rows(
                "SELECT 1 FROM unify_links WHERE user_profile = ? AND account_profile = ?",
                (user, account),
            )
        )

    def canonical(self, profile_id: str) -> str | None:
        if profile_id in self._profiles:
            return profile_id
        rows = self._rows(
            "SELECT c.segment_id FROM unify_profiles p "
            "LEFT JOIN unify_profiles c ON c.seq = p.canonical "
            "WHERE p.space_id = ? AND p.segment_id = ?",
            (self.space_id, profile_id),
        )
        if not rows:
            return None
        into: str | None = rows[0][0]
        return into or profile_id

    def links(self, profile_id: str) -> list[str]:
        seq, collection = self._live(profile_id)
        mine, other = (
            ("user_profile", "account_profile")
            if collection == "users"
            else ("account_profile", "user_profile")
        )
        rows = self._rows(
            f"SELECT p.segment_id FROM unify_links l JOIN unify_profiles p ON p.seq = l.{other} "
            f"WHERE l.{mine} = ? ORDER BY l.seq",
            (seq,),
        )
        return [row[0] for row in rows]

    def apply(self, message_id: str, changes: Sequence[Change]) -> None:
        batch = self._batch
        if batch is not None:
            if batch.failed:
                raise RuntimeError("an apply failed in this batch: roll its transaction back")
            batch.records.clear()
            try:
                local = self._write(self._cursor(batch), changes, batch.unsent)
            except BaseException:
                batch.failed = True
                raise
            self._learn(local)
            self._hold(batch, changes, local)
            if message_id:
                batch.pending.append(message_id)
                batch.applied.add(message_id)
            return
        with write_transaction(self._engine) as conn:
            cursor = conn.connection.cursor()
            unsent = _Unsent()
            local = self._write(cursor, changes, unsent)
            self._send(cursor, unsent)
            if message_id:
                cursor.execute(
                    self._q(
                        "INSERT INTO unify_applied (space_id, message_id, applied_at) "
                        "VALUES (?, ?, ?)"
                    ),
                    (self.space_id, message_id, int(time.time())),
                )
            cursor.close()
        self._learn(local)

    # --- beyond the protocol ------------------------------------------------------------------

    def merge_history(self, profile_id: str) -> list[MergeProfiles]:
        """The merges into a canonical profile, directly or into profiles since merged into
        it, oldest first."""
        seq, _ = self._live(profile_id)
        rows = self._rows(
            "SELECT f.segment_id, i.segment_id, m.collection, m.at, m.source_id, m.message_id, "
            "m.event_type FROM unify_merges m "
            "JOIN unify_profiles f ON f.seq = m.from_profile "
            "JOIN unify_profiles i ON i.seq = m.into_profile "
            "WHERE m.into_profile = ? OR m.into_profile IN "
            "(SELECT seq FROM unify_profiles WHERE space_id = ? AND canonical = ?) "
            "ORDER BY m.seq",
            (seq, self.space_id, seq),
        )
        return [MergeProfiles(f, i, c, float(at), s, m, e) for f, i, c, at, s, m, e in rows]

    def profiles(self, collection: str, after: str | None = None, limit: int = 100) -> list[str]:
        """Canonical profiles of ``collection`` in creation order, from the one after
        ``after`` (a profile id, the previous page's last), at most ``limit``."""
        sql = (
            "SELECT segment_id FROM unify_profiles "
            "WHERE space_id = ? AND canonical IS NULL AND collection = ?"
        )
        params: tuple[Any, ...] = (self.space_id, collection)
        if after is not None:
            sql += (
                " AND seq > (SELECT seq FROM unify_profiles WHERE space_id = ? AND segment_id = ?)"
            )
            params += (self.space_id, after)
        return [row[0] for row in self._rows(sql + " ORDER BY seq LIMIT ?", (*params, limit))]

    def prune(self, before: float) -> int:
        """Forget the ``messageId``s applied before ``before`` (seconds since 1970), which
        bounds ``unify_applied``: an event replayed after that resolves again, and finds its
        identifiers where it put them (no change). The number forgotten."""
        with write_transaction(self._engine) as conn:
            cursor = conn.connection.cursor()
            cursor.execute(
                self._q("DELETE FROM unify_applied WHERE space_id = ? AND applied_at < ?"),
                (self.space_id, int(before)),
            )
            count = int(cursor.rowcount)
            cursor.close()
        return count

    # --- reads --------------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        """``sql`` in the driver's parameter style (written with ``?``)."""
        if not self._pg:
            return sql
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = sql.replace("?", "%s")
        return found

    def _rows(self, sql: str, params: Sequence[Any], *, planned: bool = True) -> list[Any]:
        """``planned=False`` (PostgreSQL): plan the statement for these values every time,
        never with the generic plan of a prepared statement."""
        options = {} if planned or not self._pg else {"prepare": False}
        batch = self._batch
        if batch is not None:
            cursor = self._cursor(batch)
            try:
                self._send(cursor, batch.unsent)  # a read sees every write before it
                cursor.execute(self._q(sql), params, **options)
                return list(cursor.fetchall())
            except Exception:
                batch.failed = True  # a write sent late may be what failed
                raise
        with self._engine.connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute(self._q(sql), params, **options)
            rows = list(cursor.fetchall())
            cursor.close()
        return rows

    def _find(self, keys: Sequence[Key]) -> list[Any]:
        """The rows of ``keys`` found: (collection, type, value, segment_id, seq)."""
        if self._pg:
            # One statement whatever the number of keys (parsed once): a nested loop of
            # probes of the unique index. The arrays go in binary (%b): see profiles._flush.
            # Then the profiles' ids, each profile once (an event's identifiers are mostly on
            # one profile: fewer probes than a join).
            found = self._rows(
                "SELECT i.collection, i.type, i.value, i.profile FROM unify_identities i "
                "JOIN unnest(%b::text[], %b::text[], %b::text[]) AS k(c, t, v) "
                "ON i.space_id = ? AND i.collection = k.c AND i.type = k.t AND i.value = k.v",
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    self.space_id,
                ),
                planned=False,
            )
            if not found:
                return []
            names = dict(
                self._rows(
                    "SELECT seq, segment_id FROM unify_profiles WHERE seq = ANY(%b::bigint[])",
                    (list({row[3] for row in found}),),
                    planned=False,
                )
            )
            return [(c, t, v, names[seq], seq) for c, t, v, seq in found]
        # SQLite: one IN list per (collection, type), each term a probe of the unique index
        # (SQLite takes no row values on the right of IN, and plans a join to a VALUES list or
        # json_each as a scan of the space's rows).
        groups: dict[tuple[str, str], list[str]] = {}
        for collection, type_, value in keys:
            groups.setdefault((collection, type_), []).append(value)
        terms: list[str] = []
        params: list[Any] = []
        for (collection, type_), values in groups.items():
            terms.append(
                "(i.space_id = ? AND i.collection = ? AND i.type = ? AND i.value IN "
                f"({', '.join('?' * len(values))}))"
            )
            params += [self.space_id, collection, type_, *values]
        return self._rows(
            "SELECT i.collection, i.type, i.value, p.segment_id, p.seq FROM unify_identities i "
            "JOIN unify_profiles p ON p.seq = i.profile WHERE " + " OR ".join(terms),
            params,
        )

    def _live(self, profile_id: str, local: _Local | None = None) -> tuple[int, str]:
        """A canonical profile's (seq, collection), else KeyError."""
        if local is not None:
            if profile_id in local.gone:
                raise KeyError(f"{profile_id} was merged")
            if profile_id in local.live:
                return local.live[profile_id]
        found = self._profiles.get(profile_id)
        if found is not None:
            if local is not None:
                local.live[profile_id] = found
            return found
        rows = self._rows(
            "SELECT seq, collection, canonical FROM unify_profiles "
            "WHERE space_id = ? AND segment_id = ?",
            (self.space_id, profile_id),
        )
        if not rows or rows[0][2] is not None:
            raise KeyError(f"no canonical profile {profile_id}")
        found = (int(rows[0][0]), str(rows[0][1]))
        if local is not None:
            local.live[profile_id] = found
        else:
            self._remember_profile(profile_id, found)
        return found

    # --- the cache ----------------------------------------------------------------------------

    def _remember(self, key: Key, profile_id: str, profile: tuple[int, str]) -> None:
        if self._cache_size <= 0:
            return  # a reader in another process than the space's writer: no cache
        index = self._index
        if len(index) >= self._cache_size:
            _halve(index)
        index[key] = profile_id
        self._remember_profile(profile_id, profile)

    def _remember_profile(self, profile_id: str, profile: tuple[int, str]) -> None:
        if self._cache_size <= 0:
            return
        profiles = self._profiles
        if len(profiles) >= self._cache_size:
            _halve(profiles)
        profiles[profile_id] = profile

    def _learn(self, local: _Local) -> None:
        """What one applied event changed, into the cache."""
        if local.merged:
            if len(self._moved) + len(local.merged) > self._cache_size // 10:
                self.forget()  # rather than look for the entries naming merged profiles
                return
            for gone, into in local.merged:
                self._profiles.pop(gone, None)
                self._moved[gone] = into
        for profile_id, profile in local.live.items():
            if profile_id not in local.gone:
                self._remember_profile(profile_id, profile)
        for key, profile_id in local.index:
            if profile_id in local.live and profile_id not in local.gone:
                self._remember(key, profile_id, local.live[profile_id])
            else:
                self._index.pop(key, None)  # added, then merged in the same event

    # --- writes -------------------------------------------------------------------------------

    def _write(self, cursor: Any, changes: Sequence[Change], unsent: _Unsent) -> _Local:
        local = _Local()
        # A created profile starts with the identifiers this event adds to it; any other
        # profile's count grows when the unsent rows go.
        adds: dict[str, int] = {}
        for change in changes:
            if isinstance(change, AddIdentifier):
                adds[change.profile_id] = adds.get(change.profile_id, 0) + 1
        created: set[str] = set()
        for change in changes:
            if isinstance(change, CreateProfile):
                if change.profile_id in local.live or change.profile_id in self._profiles:
                    raise ValueError(f"profile {change.profile_id} exists")
                seq = self._create(cursor, change, adds.get(change.profile_id, 0), unsent)
                local.live[change.profile_id] = (seq, change.collection)
                created.add(change.profile_id)
            elif isinstance(change, AddIdentifier):
                seq, collection = self._live(change.profile_id, local)
                if collection != change.collection:
                    raise ValueError(
                        f"{change.type}:{change.value} does not belong on a profile of {collection}"
                    )
                unsent.identities.append(
                    (
                        change.collection,
                        change.type,
                        change.value,
                        seq,
                        change.at,
                        change.source_id,
                        change.message_id,
                    )
                )
                local.index.append(
                    ((change.collection, change.type, change.value), change.profile_id)
                )
                if change.profile_id not in created:
                    unsent.grow[seq] = unsent.grow.get(seq, 0) + 1
            elif isinstance(change, MergeProfiles):
                self._merge(cursor, change, local, unsent)
            else:
                self._link(cursor, change, local, unsent)
        return local

    def _create(self, cursor: Any, change: CreateProfile, mappings: int, unsent: _Unsent) -> int:
        """A new profile's seq; on PostgreSQL its row waits with the unsent ones (the seq was
        taken ahead, so nothing waits for a RETURNING), on SQLite it is written now."""
        row = (
            change.profile_id,
            change.collection,
            change.at,
            mappings,
            change.source_id,
            change.message_id,
        )
        if self._pg:
            seq = self._next_seq(cursor)
            unsent.profiles.append((seq, *row))
            return seq
        cursor.execute(
            "INSERT INTO unify_profiles (space_id, segment_id, collection, canonical, "
            "created_at, merges, mappings, source_id, message_id) "
            "VALUES (?, ?, ?, NULL, ?, 0, ?, ?, ?) RETURNING seq",
            (self.space_id, *row),
        )
        return int(cursor.fetchone()[0])

    def _send(self, cursor: Any, unsent: _Unsent) -> None:
        """The unsent rows, one statement a table (on PostgreSQL the rows go as arrays)."""
        if not unsent:
            return
        space = self.space_id
        if self._pg:
            if unsent.profiles:
                cursor.execute(
                    _INSERT_PROFILES_PG, (space, *map(list, zip(*unsent.profiles, strict=True)))
                )
            if unsent.identities:
                columns = map(list, zip(*unsent.identities, strict=True))
                cursor.execute(_INSERT_IDENTITIES_PG, (space, *columns))
            if unsent.grow:
                cursor.execute(_GROW_PG, (list(unsent.grow), list(unsent.grow.values())))
        else:
            if unsent.identities:
                cursor.executemany(
                    "INSERT INTO unify_identities (space_id, collection, type, value, profile, "
                    "first_seen, source_id, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(space, *row) for row in unsent.identities],
                )
            if unsent.grow:
                cursor.executemany(
                    "UPDATE unify_profiles SET mappings = mappings + ? WHERE seq = ?",
                    [(count, seq) for seq, count in unsent.grow.items()],
                )
        unsent.profiles.clear()
        unsent.identities.clear()
        unsent.grow.clear()

    def _next_seq(self, cursor: Any) -> int:
        if not self._seqs:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('unify_profiles', 'seq')) "
                "FROM generate_series(1, 100)"
            )
            self._seqs = sorted((int(row[0]) for row in cursor.fetchall()), reverse=True)
        return self._seqs.pop()

    def _merge(self, cursor: Any, change: MergeProfiles, local: _Local, unsent: _Unsent) -> None:
        if change.from_id == change.into_id:
            raise ValueError(f"cannot merge {change.from_id} into itself")
        gone, kind = self._live(change.from_id, local)
        into, into_kind = self._live(change.into_id, local)
        if kind != into_kind or kind != change.collection:
            raise ValueError(f"cannot merge {change.from_id} into {change.into_id}")
        self._send(cursor, unsent)  # the rows and counts the merge moves
        params = {
            "gone": gone,
            "into": into,
            "space": self.space_id,
            "collection": change.collection,
            "at": change.at,
            "source": change.source_id,
            "message": change.message_id,
            "event_type": change.event_type,
        }
        if self._pg:
            cursor.execute(_MERGE_PG[kind], params)
        else:
            for statement in _MERGE_SQLITE[kind]:
                cursor.execute(statement, params)
        local.gone.add(change.from_id)
        local.merged.append((change.from_id, change.into_id))
        local.live[change.into_id] = (into, kind)

    def _link(self, cursor: Any, change: LinkProfiles, local: _Local, unsent: _Unsent) -> None:
        user, user_kind = self._live(change.user_id, local)
        account, account_kind = self._live(change.account_id, local)
        if (user_kind, account_kind) != ("users", "accounts"):
            raise ValueError(f"cannot link {change.user_id} to {change.account_id}")
        self._send(cursor, unsent)
        cursor.execute(
            self._q(
                "INSERT INTO unify_links (user_profile, account_profile, at, source_id, "
                "message_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            (user, account, change.at, change.source_id, change.message_id),
        )


def _halve(cache: dict[Any, Any]) -> None:
    """Drop the older half of a cache (dicts keep insertion order): bounded, and cheaper per
    hit than an LRU's reordering."""
    for key in list(islice(cache, len(cache) // 2)):
        del cache[key]


# --- statements ---------------------------------------------------------------------------------

_INSERT_PROFILES_PG = """INSERT INTO unify_profiles (seq, space_id, segment_id, collection,
    canonical, created_at, merges, mappings, source_id, message_id)
SELECT u.seq, %s, u.segment_id, u.collection, NULL, u.created_at, 0, u.mappings, u.source_id,
    u.message_id
FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::float8[], %b::int[], %b::text[],
    %b::text[]) AS u(seq, segment_id, collection, created_at, mappings, source_id, message_id)"""

# in the order given: an identifier's seq is the order the graph got it
_INSERT_IDENTITIES_PG = """INSERT INTO unify_identities (space_id, collection, type, value,
    profile, first_seen, source_id, message_id)
SELECT %s, u.collection, u.type, u.value, u.profile, u.first_seen, u.source_id, u.message_id
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::float8[], %b::text[],
    %b::text[]) WITH ORDINALITY AS u(collection, type, value, profile, first_seen, source_id,
    message_id, n)
ORDER BY u.n"""

_GROW_PG = """UPDATE unify_profiles p SET mappings = p.mappings + u.count
FROM unnest(%b::bigint[], %b::int[]) AS u(seq, count) WHERE p.seq = u.seq"""


def _merge_statements(mine: str, other: str) -> list[str]:
    """A merge of profile ``:gone`` into ``:into``, for the collection whose profiles are
    ``mine`` in ``unify_links``: the identifiers move; the survivor counts the merged
    profile's merges (and the merge) and its identifiers; lineage stays one hop deep (what
    pointed at the merged profile points at the survivor); links move to the survivor, made
    again now (so last in order), unless it has them; the merge is recorded."""
    return [
        "UPDATE unify_identities SET profile = :into WHERE profile = :gone",
        "UPDATE unify_profiles SET "
        "merges = merges + (SELECT merges + 1 FROM unify_profiles WHERE seq = :gone), "
        "mappings = mappings + (SELECT mappings FROM unify_profiles WHERE seq = :gone) "
        "WHERE seq = :into",
        "UPDATE unify_profiles SET canonical = :into, mappings = 0 "
        "WHERE seq = :gone OR (space_id = :space AND canonical = :gone)",
        f"INSERT INTO unify_links ({mine}, {other}, at, source_id, message_id) "
        f"SELECT :into, {other}, at, source_id, message_id FROM unify_links "
        f"WHERE {mine} = :gone ORDER BY seq ON CONFLICT DO NOTHING",
        f"DELETE FROM unify_links WHERE {mine} = :gone",
        "INSERT INTO unify_merges (space_id, from_profile, into_profile, collection, at, "
        "source_id, message_id, event_type) "
        "VALUES (:space, :gone, :into, :collection, :at, :source, :message, :event_type)",
    ]


def _merge_pg(mine: str, other: str) -> str:
    """The same as one statement (PostgreSQL): the writes as data-modifying CTEs. They all
    see the tables as they were before it, so the survivor adds the merged profile's counts
    as they were before lineage zeroes them. One statement a merge, not six."""
    return f"""WITH gone AS (
    SELECT merges, mappings FROM unify_profiles WHERE seq = %(gone)s
), moved AS (
    UPDATE unify_identities SET profile = %(into)s WHERE profile = %(gone)s
), survivor AS (
    UPDATE unify_profiles p SET merges = p.merges + gone.merges + 1,
        mappings = p.mappings + gone.mappings
    FROM gone WHERE p.seq = %(into)s
), lineage AS (
    UPDATE unify_profiles SET canonical = %(into)s, mappings = 0
    WHERE seq = %(gone)s OR (space_id = %(space)s AND canonical = %(gone)s)
), relinked AS (
    INSERT INTO unify_links ({mine}, {other}, at, source_id, message_id)
    SELECT %(into)s, {other}, at, source_id, message_id FROM unify_links
    WHERE {mine} = %(gone)s ORDER BY seq ON CONFLICT DO NOTHING
), unlinked AS (
    DELETE FROM unify_links WHERE {mine} = %(gone)s
)
INSERT INTO unify_merges (space_id, from_profile, into_profile, collection, at, source_id,
    message_id, event_type)
VALUES (%(space)s, %(gone)s, %(into)s, %(collection)s, %(at)s, %(source)s, %(message)s,
    %(event_type)s)"""


# per collection: its profiles' column in unify_links, and the other collection's
_LINKS = {
    "users": ("user_profile", "account_profile"),
    "accounts": ("account_profile", "user_profile"),
}
_MERGE_SQLITE = {kind: _merge_statements(*columns) for kind, columns in _LINKS.items()}
_MERGE_PG = {kind: _merge_pg(*columns) for kind, columns in _LINKS.items()}
