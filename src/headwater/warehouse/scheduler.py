"""When warehouses sync: each on its schedule, and at once when someone asked for a sync now.

The server's worker role calls ``tick`` every few seconds in a thread of its own; a sync is a
blocking batch job. Several worker processes may tick at once: a warehouse already syncing
elsewhere is skipped (``SyncBusy``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from headwater.errors import SyncBusy
from headwater.store.archive import Archive
from headwater.warehouse.store import WarehouseStore
from headwater.warehouse.sync import (
    SyncResult,
    WarehouseSync,
    due,
    last_started,
    requested,
)

logger = logging.getLogger(__name__)


class WarehouseScheduler:
    def __init__(
        self,
        warehouses: WarehouseStore,
        archive: Archive,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._warehouses = warehouses
        self._engine = warehouses.workspace.engine
        self._sync = WarehouseSync(warehouses, archive, data_dir, clock=clock)
        self._clock = clock

    def stop(self) -> None:
        """Make a running sync end after the chunk it is loading (its position is kept)."""
        self._sync.stop()

    def tick(self) -> list[SyncResult]:
        """Run every requested or due sync, one after another."""
        found = self._warehouses.list()
        asked = requested(self._engine)
        now_due = due(
            [w for w in found if w.id not in asked], last_started(self._engine), self._clock()
        )
        results = []
        for warehouse, trigger in [(w, "manual") for w in found if w.id in asked] + [
            (w, "schedule") for w in now_due
        ]:
            try:
                result = self._sync.run(warehouse, trigger=trigger)
            except SyncBusy as exc:
                logger.info("%s", exc)
                continue
            logger.info("warehouse %s: sync %s", warehouse.name, result.status)
            results.append(result)
        return results
