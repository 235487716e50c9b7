"""Deleting a subject from a data lake: its Parquet files rewritten without the subject's rows.

Segment deletes from S3 "by re-copying clean versions of any file containing the userId"
(spec §10.3). Each file under ``data/`` (of the erasure's sources, or all) has its id columns
read first (``userId``, ``anonymousId``, ``previousId``, and a cloud source's ``id`` /
``objectId``); only a file with a match is read whole, filtered and put back under its own key
through the lake's target, which makes the swap whole: a local lake writes aside, fsyncs and
renames; S3 replaces the object in one PUT. A file left with no rows stays, empty, so the
table's columns stay readable. Reports and schemas hold no event values and are left alone;
so is the seen-ids store, which holds only messageIds and times (docs/decisions.md).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.warehouse.connect import LAKE, lake_target
from headwater.warehouse.lake.targets import LakeTarget
from headwater.warehouse.paths import key_segment
from headwater.warehouse.store import WarehouseStore

logger = logging.getLogger(__name__)

_ID_COLUMNS = ("userId", "anonymousId", "previousId", "id", "objectId")


class LakeEraser:
    """Erases from one lake (``Target("warehouse", <lake id>)``)."""

    def __init__(self, target: LakeTarget, lake_id: str, name: str = "") -> None:
        self._lake = target
        self._target = Target("warehouse", lake_id, name)

    @property
    def target(self) -> Target:
        return self._target

    def erase(self, erasure: Erasure) -> Progress | None:
        if not erasure.subjects:
            return None
        if erasure.source_ids is None:
            prefixes = ["data/"]
        else:
            prefixes = [f"data/{key_segment(s)}/" for s in sorted(erasure.source_ids)]
        for prefix in prefixes:
            for key in self._lake.list_keys(prefix):
                if key.endswith(".parquet"):
                    self._erase_file(key, erasure.subjects)
        return None

    def _erase_file(self, key: str, subjects: Subjects) -> int:
        data = self._lake.get(key)
        if data is None:
            return 0
        source = pa.BufferReader(data)
        names = set(pq.read_schema(source).names)
        columns = [c for c in _ID_COLUMNS if c in names]
        if not columns:
            return 0
        mask = _subject_rows(pq.read_table(pa.BufferReader(data), columns=columns), subjects)
        gone = sum(mask)
        if not gone:
            return 0
        table = pq.read_table(pa.BufferReader(data))
        kept = table.filter(pa.array([not hit for hit in mask], pa.bool_()))
        sink = io.BytesIO()
        pq.write_table(kept, sink, compression="snappy")
        self._lake.put(key, sink.getvalue())
        logger.info(
            "lake %s: removed %d rows of an erased subject from %s", self._target.id, gone, key
        )
        return gone


def lake_erasers(warehouses: WarehouseStore, data_dir: Path) -> list[LakeEraser]:
    """An eraser per data lake (``warehouse_erasers`` has the ones with tables)."""
    return [
        LakeEraser(lake_target(warehouse, data_dir), warehouse.id, warehouse.name)
        for warehouse in warehouses.list()
        if warehouse.type == LAKE
    ]


def _subject_rows(table: pa.Table, subjects: Subjects) -> list[bool]:
    """Per row, whether it is the subject's (as ``Subjects.matches`` reads an event)."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    return [
        subjects.matches({name: values[row] for name, values in columns.items()})
        for row in range(table.num_rows)
    ]
