"""The five column types of Segment's warehouses, and rows bound for one table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# Segment: "timestamp, integer, float, boolean, varchar"; a column's type is chosen when the
# column is created and never changed afterwards.
ColumnType = Literal["timestamp", "integer", "float", "boolean", "varchar"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("timestamp", "integer", "float", "boolean", "varchar")


@dataclass
class TableRows:
    """Rows for one table of one schema. Values are Python values of the column's kind
    (``datetime`` in UTC, ``int``, ``float``, ``bool``, ``str``); a missing key is null."""

    table: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    # The type each column would get if it were created now (from the rows' latest values).
    types: dict[str, ColumnType] = field(default_factory=dict)
    # Segment's own columns of the table, created even when every row lacks them (NULL), so
    # queries naming them work whatever the senders set; ``types`` wins when it has one.
    standard: dict[str, ColumnType] = field(default_factory=dict)
    # One row per id, the newest values winning, whatever the table's name: objects that
    # source functions set (``Segment.set`` updates an object); ``users`` and ``accounts``
    # are upserted anyway.
    upsert: bool = False

    def drop(self, columns: Iterable[str]) -> None:
        """Leave ``columns`` out entirely: no values and no column (Selective Sync)."""
        for column in columns:
            self.types.pop(column, None)
            self.standard.pop(column, None)
            for row in self.rows:
                row.pop(column, None)
