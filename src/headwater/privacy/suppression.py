"""Suppression at ingest: a suppressed user's new events stop right after dedup.

Segment blocks a suppressed ``userId`` "at the API" (§10.4, §24 step 2): acknowledged, then
never shown in the debugger, archived or sent anywhere. Here that is a stage of the chain,
after dedup and before Protocols: an event whose ``userId`` is suppressed for its workspace
or its source leaves the record and is counted on it as filtered at source with the reason
``suppressed``, which says nothing of who. What the stage drops never reaches the processed
stream, so no consumer (archive, debugger, router, warehouses, identity resolution) sees it.

The suppressed subjects are a set per workspace and per source in memory, so an event costs
one decode of its ``userId`` and one or two set probes; the sets are reloaded when the
suppression version (moved by the worker as it processes a regulation) changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from sqlalchemy.engine import Connection, Engine

from headwater import reasons
from headwater.privacy.regulations import Regulations
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.record import LogRecord

Sets = Mapping[tuple[str, str], frozenset[str]]


class _UserId(msgspec.Struct):
    userId: Any = None


_user_id = msgspec.json.Decoder(_UserId).decode


class SuppressionStage:
    name = "suppression"

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_interval: float = 1.0,
    ) -> None:
        regulations = Regulations(engine)
        empty: Sets = {}
        self._sets = ConfigSnapshot(
            regulations.suppression_version,
            regulations.suppression_sets,
            empty,
            clock=clock,
            interval=refresh_interval,
        )

    def acquire(self, partition: int) -> None:
        """The sets are the whole database's, not a partition's."""

    def release(self, partition: int) -> None:
        """Nothing per partition."""

    def process(self, partition: int, records: list[LogRecord]) -> None:
        sets = self._sets.get()
        if not sets:
            return
        find = sets.get
        for record in records:
            workspace = find((record.workspace_id, ""))
            source = find((record.workspace_id, record.source_id))
            if (workspace or source) and record.events:
                drop(record, workspace or frozenset(), source or frozenset())

    def commit_in(self, conn: Connection) -> None:
        """The stage writes nothing: its drops are counted on the records."""

    def committed(self) -> None:
        """Nothing to make current."""

    def abandoned(self) -> None:
        """Nothing to forget."""


def drop(record: LogRecord, workspace: frozenset[str], source: frozenset[str]) -> int:
    """Leave out the events of suppressed users; count them on the record."""
    kept = []
    dropped = 0
    for raw in record.events:
        try:
            user_id = _user_id(raw).userId
        except msgspec.DecodeError:
            user_id = None
        if isinstance(user_id, str) and (user_id in workspace or user_id in source):
            dropped += 1
        else:
            kept.append(raw)
    if dropped:
        record.events = kept
        filtered = dict(record.filtered)
        filtered[reasons.SUPPRESSED] = filtered.get(reasons.SUPPRESSED, 0) + dropped
        record.filtered = filtered
    return dropped
