"""The processed stream: partitioned, consumed by groups, leased to processes.

The stage chain appends what survived its stages (``pipeline/chain.py``); the archive, the
observer and the router are its consumer groups. See docs/event-log.md for the contract.
Offsets are dense per partition; an append holds its partition's counter row until commit, so
offsets become visible in order and a consumer never skips a record that commits late.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store.database import is_sqlite, write_transaction
from headwater.store.ingest_log import IngestLog
from headwater.store.leases import acquire_in, release_in
from headwater.store.recent import RecentRecords
from headwater.store.schema import log_groups, log_members, log_partitions, log_records

logger = logging.getLogger(__name__)

Position = tuple[int, int]
# What the consumer groups of one process read lately, kept for the others (store/recent.py).
RECENT_BYTES = 64 << 20
TRUNCATE_SECONDS = 0.01  # how long one truncate transaction may hold the write lock, about


class IngestRef(NamedTuple):
    """An ingest log record a processed record names instead of holding a copy of it."""

    partition: int
    offset: int


_RECORD_COLUMNS = tuple(c.name for c in log_records.columns)  # the order append_in's rows use


class EventLog:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        recent_bytes: int = RECENT_BYTES,
        ingest_log: IngestLog | None = None,
    ) -> None:
        """``ingest_log``: where the records that name an ingest log record are read from;
        without it, every record appended must carry its payload."""
        self._engine = engine
        self.ingest_log = ingest_log
        self._clock = clock
        self._sqlite = is_sqlite(engine)
        with engine.connect() as conn:
            self.partitions = sorted(conn.execute(sa.select(log_partitions.c.partition)).scalars())
        self._next = itertools.cycle(self.partitions)
        self._recent = RecentRecords(len(self.partitions), recent_bytes)
        self._truncate_chunk = 250  # records a truncate transaction deletes: see truncate()

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- writing ------------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes | IngestRef]) -> list[Position]:
        with write_transaction(self._engine) as conn:
            return self.append_in(conn, payloads)

    def append_in(self, conn: Connection, payloads: Sequence[bytes | IngestRef]) -> list[Position]:
        """Append records: a payload, or the ingest log record whose payload it is (read from
        there by ``poll``: a 100 KB batch is written, checkpointed and deleted once, not twice).
        """
        if not payloads:
            return []
        if self.ingest_log is None and any(type(p) is IngestRef for p in payloads):
            raise ValueError("this processed stream has no ingest log to read references from")
        n = len(payloads)
        if self._sqlite:  # the hot path: straight to the driver, no statement building
            partition = next(self._next)
            row = conn.exec_driver_sql(
                "UPDATE log_partitions SET next_offset = next_offset + ? WHERE partition = ? "
                "RETURNING next_offset",
                (n, partition),
            ).one()
        else:
            start = next(self._next)
            locked = (
                sa.select(log_partitions.c.partition)
                .order_by(
                    (log_partitions.c.partition - start + len(self.partitions))
                    % len(self.partitions)
                )
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            found = conn.execute(
                sa.update(log_partitions)
                .where(log_partitions.c.partition == locked)
                .values(next_offset=log_partitions.c.next_offset + n)
                .returning(log_partitions.c.next_offset, log_partitions.c.partition)
            ).first()
            if found is not None:
                row = found
            else:  # every partition busy: wait for ours
                row = conn.execute(
                    sa.update(log_partitions)
                    .where(log_partitions.c.partition == start)
                    .values(next_offset=log_partitions.c.next_offset + n)
                    .returning(log_partitions.c.next_offset, log_partitions.c.partition)
                ).one()
            partition = row[1]
        first = row[0] - n
        now = int(self._clock())
        rows = [
            (partition, first + i, now, b"", p.partition, p.offset)
            if type(p) is IngestRef
            else (partition, first + i, now, p, None, None)
            for i, p in enumerate(payloads)
        ]
        if self._sqlite:
            conn.exec_driver_sql(
                'INSERT INTO log_records (partition, "offset", appended_at, payload, '
                "ingest_partition, ingest_offset) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        else:
            conn.execute(
                log_records.insert(),
                [dict(zip(_RECORD_COLUMNS, values, strict=True)) for values in rows],
            )
        return [(partition, first + i) for i in range(n)]

    def remember(self, positions: Sequence[Position], payloads: Sequence[bytes]) -> None:
        """Records this process appended and committed just now: the consumer groups that are
        caught up get them from memory instead of reading them back (a named record from the
        ingest log)."""
        rows: dict[int, list[tuple[int, bytes]]] = {}
        for (partition, offset), payload in zip(positions, payloads, strict=True):
            rows.setdefault(partition, []).append((offset, payload))
        for partition, kept in rows.items():
            self._recent.keep(partition, kept, replace=False)

    # --- consuming ----------------------------------------------------------------------------

    def register(self, group: str) -> None:
        with write_transaction(self._engine) as conn:
            if not is_sqlite(self._engine):  # processes starting at once take turns
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242002)"))
            have = set(
                conn.execute(
                    sa.select(log_groups.c.partition).where(log_groups.c.group_name == group)
                ).scalars()
            )
            for partition in self.partitions:
                if partition in have:
                    continue
                oldest = conn.execute(
                    sa.select(sa.func.min(log_records.c.offset)).where(
                        log_records.c.partition == partition
                    )
                ).scalar()
                if oldest is None:
                    oldest = conn.execute(
                        sa.select(log_partitions.c.next_offset).where(
                            log_partitions.c.partition == partition
                        )
                    ).scalar_one()
                conn.execute(
                    log_groups.insert().values(
                        group_name=group,
                        partition=partition,
                        committed_offset=oldest - 1,
                        owner=None,
                        lease_expires_at=0,
                    )
                )

    def poll(self, group: str, partition: int, max: int) -> list[tuple[int, bytes]]:
        return self.poll_many(group, [partition], max)[partition]

    def poll_many(
        self, group: str, partitions: Sequence[int], max: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        """``poll`` for several partitions in at most two queries, whatever their number.

        Consumers poll every partition they hold several times a second, most of them empty
        (a pass of the chain fills one), so the cost per partition is what counts. First where
        each partition ends: one with nothing after the committed offset costs nothing more.
        Offsets are dense, so the offsets wanted are known before any record is read: what
        another group of this process read lately comes from memory, the rest from one query
        of bounded key ranges (a consumer far behind never makes the database sort its
        backlog).
        """
        partitions = list(partitions)
        with self._engine.connect() as conn, conn.begin():
            ends = self._ends(conn, group, partitions)
            out: dict[int, list[tuple[int, bytes]]] = {p: [] for p, _, _ in ends}
            spans: list[tuple[int, int, int]] = []  # (partition, after, through)
            for partition, committed, last in ends:
                if last <= committed:
                    continue
                todo, first, found = self._recent.lookup(
                    partition, committed, min(last, committed + max)
                )
                out[partition].extend(zip(range(first, first + len(found)), found, strict=True))
                spans += [(partition, after, after + n) for after, n in todo]
            if spans:
                for partition, rows in self._read(conn, spans).items():
                    rows.sort()
                    self._recent.keep(partition, rows)
                    out[partition] += rows
        if len(out) < len(set(partitions)):
            raise KeyError(f"consumer group {group!r} is not registered; call register() first")
        for rows in out.values():
            rows.sort()  # (SQL promises no order across the arms of a union)
        return {p: out[p] for p in partitions}

    def _ends(
        self, conn: Connection, group: str, partitions: list[int]
    ) -> list[tuple[int, int, int]]:
        """(partition, the group's committed offset, the last offset appended) per partition."""
        if self._sqlite:
            rows = conn.exec_driver_sql(
                "SELECT g.partition, g.committed_offset, p.next_offset - 1 FROM log_groups g "
                "JOIN log_partitions p ON p.partition = g.partition "
                f"WHERE g.group_name = ? AND g.partition IN ({','.join('?' * len(partitions))})",
                (group, *partitions),
            ).all()
        else:
            rows = conn.execute(
                sa.select(
                    log_groups.c.partition,
                    log_groups.c.committed_offset,
                    log_partitions.c.next_offset - 1,
                )
                .join(log_partitions, log_partitions.c.partition == log_groups.c.partition)
                .where(log_groups.c.group_name == group, log_groups.c.partition.in_(partitions))
            ).all()
        return [(int(p), int(c), int(last)) for p, c, last in rows]

    def _read(
        self, conn: Connection, spans: list[tuple[int, int, int]]
    ) -> dict[int, list[tuple[int, bytes]]]:
        """The records of every (partition, after, through) span, in one query."""
        read: dict[int, list[tuple[int, bytes]]] = {}
        if self._sqlite:
            arm = (
                'SELECT partition, "offset", payload, ingest_partition, ingest_offset '
                'FROM log_records WHERE partition = ? AND "offset" > ? AND "offset" <= ?'
            )
            rows = conn.exec_driver_sql(
                " UNION ALL ".join([arm] * len(spans)), tuple(v for span in spans for v in span)
            )
        else:
            r = log_records.c
            rows = conn.execute(
                sa.union_all(
                    *(
                        sa.select(
                            r.partition, r.offset, r.payload, r.ingest_partition, r.ingest_offset
                        ).where(r.partition == partition, r.offset > after, r.offset <= through)
                        for partition, after, through in spans
                    )
                )
            )
        named: list[tuple[list[tuple[int, bytes]], int, IngestRef]] = []
        for partition, offset, payload, ingest_partition, ingest_offset in rows:
            into = read.setdefault(partition, [])
            if ingest_offset is not None:
                named.append((into, int(offset), IngestRef(ingest_partition, int(ingest_offset))))
            else:
                into.append((int(offset), bytes(payload)))
        if named:
            found = self._read_ingest_log([ref for _, _, ref in named])
            for into, offset, ref in named:
                into.append((offset, found.get(ref, b"")))
        return read

    def _read_ingest_log(self, refs: list[IngestRef]) -> dict[IngestRef, bytes]:
        """The payloads of ``refs``, reading each run of consecutive offsets at once.

        A record the ingest log no longer has (its files were deleted or replaced) is left
        out: the consumers skip its empty payload as unreadable and say so."""
        assert self.ingest_log is not None, "references are only appended with an ingest log"
        found: dict[IngestRef, bytes] = {}
        wanted = sorted(set(refs))
        runs: list[list[IngestRef]] = []
        for ref in wanted:
            if runs and runs[-1][-1] == (ref.partition, ref.offset - 1):
                runs[-1].append(ref)
            else:
                runs.append([ref])
        for run in runs:
            partition, first, last = run[0].partition, run[0].offset, run[-1].offset
            for offset, payload in self.ingest_log.read(partition, first - 1, len(run)):
                if offset <= last:  # (past a gap, read gives what comes next)
                    found[IngestRef(partition, offset)] = payload
        missing = len(wanted) - len(found)

        if missing:
            logger.error(
                "processed stream: %d records name ingest log records that are gone "
                "(was the log directory deleted?); they are skipped",
                missing,
            )
        return found

    def oldest_reference(self, ingest_partition: int) -> int | None:
        """The lowest ingest log offset of ``ingest_partition`` a record still names: the
        ingest log keeps it and everything after it."""
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(log_records.c.ingest_offset)).where(
                    log_records.c.ingest_partition == ingest_partition
                )
            ).scalar()
        return None if value is None else int(value)

    def commit_many(
        self, group: str, offsets: Mapping[int, int], owner: str | None = None
    ) -> dict[int, bool]:
        """``commit`` for several partitions in one transaction."""
        with write_transaction(self._engine) as conn:
            return self.commit_many_in(conn, group, offsets, owner)

    def commit_many_in(
        self, conn: Connection, group: str, offsets: Mapping[int, int], owner: str | None = None
    ) -> dict[int, bool]:
        """``commit_many`` inside the caller's transaction: a stage that writes to the state
        database commits its offsets with its own writes, so they happen exactly once."""
        if not self._sqlite or not offsets:
            return {p: self._commit_in(conn, group, p, o, owner) for p, o in offsets.items()}
        # One prepared statement run for every partition. With an owner, a partition's answer
        # is whether the owner holds its lease (one already past the offset is granted too):
        # so when every row was updated every answer is yes, and otherwise one look at the
        # leases gives them.
        if owner is None:
            conn.exec_driver_sql(
                "UPDATE log_groups SET committed_offset = ? "
                "WHERE group_name = ? AND partition = ? AND committed_offset < ?",
                [(o, group, p, o) for p, o in offsets.items()],
            )
            return dict.fromkeys(offsets, True)
        now = int(self._clock())
        done = conn.exec_driver_sql(
            "UPDATE log_groups SET committed_offset = ? WHERE group_name = ? AND partition = ? "
            "AND committed_offset < ? AND owner = ? AND lease_expires_at >= ?",
            [(o, group, p, o, owner, now) for p, o in offsets.items()],
        ).rowcount
        if done == len(offsets):
            return dict.fromkeys(offsets, True)
        held = {
            p
            for (p,) in conn.exec_driver_sql(
                "SELECT partition FROM log_groups WHERE group_name = ? AND owner = ? "
                f"AND lease_expires_at >= ? AND partition IN ({','.join('?' * len(offsets))})",
                (group, owner, now, *offsets),
            )
        }
        return {p: p in held for p in offsets}

    def commit(self, group: str, partition: int, offset: int, owner: str | None = None) -> bool:
        with write_transaction(self._engine) as conn:
            return self._commit_in(conn, group, partition, offset, owner)

    def _commit_in(
        self, conn: Connection, group: str, partition: int, offset: int, owner: str | None
    ) -> bool:
        where = [
            log_groups.c.group_name == group,
            log_groups.c.partition == partition,
            log_groups.c.committed_offset < offset,
        ]
        if owner is not None:
            where += [
                log_groups.c.owner == owner,
                log_groups.c.lease_expires_at >= int(self._clock()),
            ]
        done = conn.execute(
            sa.update(log_groups).where(*where).values(committed_offset=offset)
        ).rowcount
        if done:
            return True
        if owner is None:
            return True  # already at or past the offset
        held = conn.execute(
            sa.select(log_groups.c.owner).where(
                log_groups.c.group_name == group,
                log_groups.c.partition == partition,
                log_groups.c.lease_expires_at >= int(self._clock()),
            )
        ).scalar()
        return bool(held == owner)

    def committed(self, group: str, partition: int) -> int:
        with self._engine.connect() as conn:
            return self._committed(conn, group, partition)

    def _committed(self, conn: Connection, group: str, partition: int) -> int:
        value = conn.execute(
            sa.select(log_groups.c.committed_offset).where(
                log_groups.c.group_name == group, log_groups.c.partition == partition
            )
        ).scalar()
        if value is None:
            raise KeyError(f"consumer group {group!r} is not registered; call register() first")
        return int(value)

    # --- leases -------------------------------------------------------------------------------

    def acquire(
        self, group: str, owner: str, ttl_seconds: float, *, exclusive: bool = False
    ) -> list[int]:
        with write_transaction(self._engine) as conn:
            return acquire_in(
                conn,
                log_groups,
                log_members,
                group,
                owner,
                now=self._clock(),
                ttl_seconds=ttl_seconds,
                exclusive=exclusive,
            )

    def release(self, group: str, owner: str) -> None:
        with write_transaction(self._engine) as conn:
            release_in(conn, log_groups, log_members, group, owner)

    # --- retention ----------------------------------------------------------------------------

    def truncate(self, chunk: int | None = None) -> int:
        """Remove records every group has committed past, ``chunk`` at most per transaction.

        Where each partition starts and what every group has passed are read first, without
        the write lock, so a call with nothing to remove takes it only to forget dead members.
        Each delete bounds itself again by the groups' offsets inside its own transaction: a
        group registered since the read (it starts at the oldest record) keeps what it needs.
        Short transactions keep the write lock free for the stage chain's passes: without a
        ``chunk``, each holds it about ``TRUNCATE_SECONDS`` (a record of 100 events takes
        about as long to delete as a hundred of one), learned from the ones before.
        """
        floor = sa.select(sa.func.min(log_groups.c.committed_offset)).where(
            log_groups.c.partition == log_partitions.c.partition
        )
        oldest = sa.select(sa.func.min(log_records.c.offset)).where(
            log_records.c.partition == log_partitions.c.partition
        )
        with self._engine.connect() as conn:
            bounds = conn.execute(
                sa.select(
                    log_partitions.c.partition,
                    oldest.scalar_subquery(),
                    floor.scalar_subquery(),
                )
            ).all()
        removed = 0
        for partition, first, last in bounds:
            if first is None or last is None:
                continue
            start = first
            while start <= last:
                rows = chunk or self._truncate_chunk
                with write_transaction(self._engine) as conn:
                    began = time.perf_counter()
                    done = self._delete_through(conn, partition, min(last, start + rows - 1))
                took = time.perf_counter() - began
                if chunk is None and done:
                    fits = int(TRUNCATE_SECONDS * done / max(took, 1e-6))
                    self._truncate_chunk = max(16, min(10_000, (rows + fits) // 2))
                removed += done
                start += rows
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.delete(log_members).where(log_members.c.heartbeat_at < int(self._clock()) - 3600)
            )
        return removed

    def _delete_through(self, conn: Connection, partition: int, offset: int) -> int:
        """Delete ``partition``'s records up to ``offset`` that every group has passed now."""
        if self._sqlite:
            statement = (
                'DELETE FROM log_records WHERE partition = ? AND "offset" <= ? AND "offset" <= '
                "(SELECT min(committed_offset) FROM log_groups WHERE partition = ?)"
            )
            return int(conn.exec_driver_sql(statement, (partition, offset, partition)).rowcount)
        passed = (
            sa.select(sa.func.min(log_groups.c.committed_offset))
            .where(log_groups.c.partition == partition)
            .scalar_subquery()
        )
        return int(
            conn.execute(
                sa.delete(log_records).where(
                    log_records.c.partition == partition,
                    log_records.c.offset <= offset,
                    log_records.c.offset <= passed,
                )
            ).rowcount
        )

    def oldest_appended_at(self) -> int | None:
        """When the oldest record kept was appended (epoch seconds); None when none is."""
        oldest: int | None = None
        with self._engine.connect() as conn:
            for partition in self.partitions:
                value = conn.execute(
                    sa.select(log_records.c.appended_at)
                    .where(log_records.c.partition == partition)
                    .order_by(log_records.c.offset)
                    .limit(1)
                ).scalar()
                if value is not None and (oldest is None or value < oldest):
                    oldest = int(value)
        return oldest

    def behind(self, group: str, before: float) -> bool:
        """Whether ``group`` has yet to pass a record appended at or before ``before`` (a
        deletion waits for the archive to hold what it will rewrite)."""
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(log_records.c.offset)
                .select_from(
                    log_records.join(
                        log_groups,
                        (log_groups.c.partition == log_records.c.partition)
                        & (log_groups.c.group_name == group),
                    )
                )
                .where(
                    log_records.c.offset > log_groups.c.committed_offset,
                    log_records.c.appended_at <= int(before),
                )
                .limit(1)
            ).first()
        return found is not None

    def lag(self, group: str) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.count())
                .select_from(
                    log_records.join(
                        log_groups,
                        (log_groups.c.partition == log_records.c.partition)
                        & (log_groups.c.group_name == group),
                    )
                )
                .where(log_records.c.offset > log_groups.c.committed_offset)
            ).scalar_one()
        return int(value)
