"""The lake writer: one sync run of one source, as Segment Data Lakes' Parquet partitions.

Layout under the target's root (a directory, or ``s3://bucket/prefix``)::

    data/<source id>/segment_type=<type>/day=<YYYY-MM-DD>/hr=<HH>/<run id>-<n>.parquet
    reports/day=<YYYY-MM-DD>/source=<source id>/run_id=<run id>/report.json
    schemas/<source id>/<type>.json

``segment_type`` is ``identify``, ``page``, ``screen``, ``group``, ``alias``, or for a track
the event name snake_cased with Segment's go-snakecase (``Page Viewed`` → ``page_viewed``,
``101 Account Update`` → ``101_account_update``: no ``_`` prefix, Glue does not need one),
cut to 200 characters ending in ``__`` and a hash of the whole name when longer (so a long name
always maps to the same table and two long names never share one). A source id is kept, or
percent-encoded when it is not path-safe (``paths.key_segment``). Partitions are the day
and hour (UTC) of ``receivedAt``; Segment's other partition schemes (``YYYY/MM/DD/HH`` …) are
not offered.

Columns, as Data Lakes "flatten the whole event": every key keeps its payload name (no
snake_case, so no ``event_text``), nested objects are joined with ``_`` (``context_app_version``,
``properties_billing_address``, ``integrations_All``: Segment's own separator, as in its sync
report example), arrays are compact JSON text. ``_metadata`` becomes ``metadata_*`` and
``project_id`` holds the source id (Segment's ``projectId``), the names Segment documents; no
``uuid``/``uuid_ts``. Hive and Glue ignore case, so names that differ only in case share the
column first seen; the first value of an event wins when two paths flatten to one name; names
over Glue's 250 characters and top-level keys named like a partition key (``segment_type``,
``day``, ``hr``) are left out and counted.

Types are Glue's: ``bigint``, ``boolean``, ``decimal(38,6)`` (Segment's type, kept over float64
so that a table Segment declared reads these files unchanged; values are rounded half up to six
places), ``string``, ``timestamp`` (microseconds, UTC). A new column's type is inferred over the
table's events in one ``write`` call (a sync's batch, Segment's "group of events"): one kind
keeps its type, integers and decimals make ``decimal(38,6)``, any other mix is ``string``;
strings are timestamps only when every one is an ISO-8601 date-time. Types are stored under
``schemas/`` (Segment keeps them in Glue; on Azure it also writes a schema file per event type)
and never change: later values are cast to them as Spark casts (``"12"`` → 12, 12.7 → 12 in a
``bigint``, ``"yes"`` → true), and what cannot be cast becomes null and is counted.

Dedupe: a copy of a messageId written less than 7 days before is dropped (``seen_ids``).

Reports are Segment's sync reports, one JSON object per line (what Glue's JSON SerDe reads):
a ``source`` line and one ``event`` line per table, written when the run finishes or fails.
A run with any failed write is ``failed``; the other partitions stay written. Every line has
Glue's ``sync_reports`` columns (times in Hive's ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC form,
``duration_mins`` rounded down, ``emr_cluster_id`` null, ``s3_bucket`` the bucket or, for a
directory, its path); ``partitions`` lists every hour the run wrote to, ``error_code`` is
``Segment.InsufficientPermissions``, ``Segment.InvalidSettings`` or ``Segment.Internal``.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Final, Literal

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from headwater.timestamps import parse_timestamp
from headwater.warehouse.lake.seen_ids import DEDUPE_WINDOW, SeenIds
from headwater.warehouse.lake.targets import INTERNAL, LakeTarget, error_code
from headwater.warehouse.naming import snake_case
from headwater.warehouse.paths import bounded, key_segment

logger = logging.getLogger(__name__)

LakeType = Literal["bigint", "boolean", "decimal(38,6)", "string", "timestamp"]
DECIMAL: Final = "decimal(38,6)"
ARROW_TYPES: Final[dict[LakeType, pa.DataType]] = {
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "decimal(38,6)": pa.decimal128(38, 6),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
MAX_COLUMN_NAME: Final = 250  # Glue's limit
# Longer event names are cut and get "__" and a hash (snake_case never makes "__"), so the
# table, its directory ``segment_type=<table>`` and its schema file stay valid file names.
MAX_TABLE_NAME: Final = 200
MAX_RUN_ID: Final = 100
MAX_ROWS_PER_FILE: Final = 500_000
EVENT_TYPES: Final = frozenset({"identify", "page", "screen", "group", "alias"})
PARTITION_KEYS: Final = frozenset({"segment_type", "day", "hr"})

FINISHED, FAILED, RUNNING = "finished", "failed", "running"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL_LIMIT: Final = Decimal(10) ** 32  # 38 digits, 6 of them after the point
_SCALE: Final = Decimal("0.000001")
_DECIMAL_CONTEXT: Final = Context(prec=60)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)  # unambiguous
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)
_TRUE: Final = frozenset({"t", "true", "y", "yes", "1"})
_FALSE: Final = frozenset({"f", "false", "n", "no", "0"})
_SAFE_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_encode = msgspec.json.Encoder().encode


class _Fail:
    """A value that could not be cast (distinct from a null that was null already)."""


_FAIL: Final = _Fail()


# --- runs -------------------------------------------------------------------------------------


@dataclass
class LakeTable:
    """What a run did to one table (one ``segment_type``): the report's ``event`` line."""

    name: str
    is_new: bool = False
    rows: int = 0
    partitions: set[tuple[str, str]] = field(default_factory=set)  # (day, hr)
    new_columns: list[tuple[str, LakeType]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    nulled: int = 0  # values that could not be cast to their column's type
    dropped: int = 0  # values with no usable column name
    error: str | None = None
    error_code: str | None = None


@dataclass
class LakeRun:
    """One sync of one source into the lake."""

    source_id: str
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = RUNNING
    tables: dict[str, LakeTable] = field(default_factory=dict)
    duplicates: int = 0  # copies of a messageId dropped (7-day window)
    skipped: int = 0  # events with no table: not an object, unknown type, unnamed track
    error: str | None = None
    error_code: str | None = None
    report_key: str | None = None

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables.values())


@dataclass
class _Schema:
    """A table's columns in order (Glue appends new ones at the end) with their types."""

    columns: dict[str, LakeType]
    exists: bool
    by_lower: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_lower = {name.lower(): name for name in self.columns}


@dataclass
class _Row:
    values: dict[str, Any]
    day: str
    hour: str
    message_id: str | None
    received_at: datetime


class LakeSync:
    """One run of one source: ``write`` batches of events, then ``finish`` for the report.

    Callers hand over events in batches of a size they can hold in memory; each batch's
    new columns are inferred over the batch. After a failed run the caller gives the same
    events again (from where the last finished run stopped): the ``SeenIds`` store skips
    what was written, so nothing is lost and nothing doubled.
    """

    def __init__(
        self,
        target: LakeTarget,
        *,
        source_id: str,
        run_id: str,
        seen: SeenIds,
        now: datetime | None = None,
        workspace_id: str = "",
        database: str | None = None,
        replay: bool = False,
        replay_from: datetime | None = None,
        replay_to: datetime | None = None,
        window: timedelta = DEDUPE_WINDOW,
        max_rows_per_file: int = MAX_ROWS_PER_FILE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not _SAFE_PART.fullmatch(run_id) or len(run_id) > MAX_RUN_ID:
            raise ValueError(
                f"a run id is up to {MAX_RUN_ID} letters, digits, '_', '-' and "
                f"'.', not {run_id!r:.120}"
            )
        if not source_id:
            raise ValueError("a source id is needed")
        self.target = target
        self.seen = seen
        self.workspace_id = workspace_id
        self.database = database if database is not None else source_id
        self.replay, self.replay_from, self.replay_to = replay, replay_from, replay_to
        self.window = window
        self.max_rows_per_file = max(1, max_rows_per_file)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.run = LakeRun(source_id, run_id, _as_utc(now or self._clock()))
        self._source = key_segment(source_id)
        self._schemas: dict[str, _Schema] = {}
        self._known_tables: set[str] | None = None
        self._parts: dict[tuple[str, str, str], int] = {}

    # -- writing -------------------------------------------------------------------------------

    def write(self, events: Iterable[Any]) -> None:
        """Write a batch. Failed writes are recorded on the run (and in its report) rather
        than raised, so one refused partition does not stop the others."""
        if self.run.status != RUNNING:
            raise RuntimeError("this run has finished")
        try:
            known = self._tables()
            rows = self._rows(events)
        except Exception as exc:
            self._fail(None, "could not read the lake's tables or the seen ids", exc)
            return
        for table, table_rows in rows.items():
            try:
                schema = self._schema(table, known)
            except Exception as exc:
                self._fail(table, f"could not read the schema of {table}", exc)
                continue
            self._write_table(table, schema, table_rows)

    def _rows(self, events: Iterable[Any]) -> dict[str, list[_Row]]:
        """Events by table, flattened, less the copies of messageIds already written."""
        pending: list[tuple[str, dict[str, Any], str | None, datetime]] = []
        for event in events:
            table = _table_of(event)
            if table is None:
                self.run.skipped += 1
                continue
            received = parse_timestamp(event.get("receivedAt")) or self.run.started_at
            message_id = event.get("messageId")
            if isinstance(message_id, int) and not isinstance(message_id, bool):
                message_id = str(message_id)
            pending.append(
                (
                    table,
                    event,
                    message_id if isinstance(message_id, str) and message_id else None,
                    received,
                )
            )
        ids = {message_id for _, _, message_id, _ in pending if message_id is not None}
        kept = dict(self.seen.lookup(self.run.source_id, ids)) if ids else {}
        rows: dict[str, list[_Row]] = {}
        for table, event, message_id, received in pending:
            if message_id is not None:
                reference = kept.get(message_id)
                if reference is not None and abs(received - reference) < self.window:
                    self.run.duplicates += 1
                    continue
                kept[message_id] = received
            values, dropped = _flatten(event, self.run.source_id)
            if dropped:
                self._table(table).dropped += dropped
            rows.setdefault(table, []).append(
                _Row(
                    values,
                    received.strftime("%Y-%m-%d"),
                    received.strftime("%H"),
                    message_id,
                    received,
                )
            )
        return rows

    def _write_table(self, table: str, schema: _Schema, rows: list[_Row]) -> None:
        report = self._table(table)
        report.is_new = report.is_new or not schema.exists
        added = _add_columns(schema, rows)
        if added or not schema.exists:
            # The schema is stored before the data, so files written later never disagree
            # with it; columns stored for data that then failed are merely empty.
            try:
                self.target.put(self._schema_key(table), _schema_json(table, schema))
            except Exception as exc:
                for name in added:
                    del schema.columns[name]
                schema.by_lower = {n.lower(): n for n in schema.columns}
                self._fail(table, f"could not store the schema of {table}", exc)
                return
            schema.exists = True
            report.new_columns.extend((name, schema.columns[name]) for name in added)
        partitions: dict[tuple[str, str], list[_Row]] = {}
        for row in rows:
            partitions.setdefault((row.day, row.hour), []).append(row)
        for (day, hour), partition in sorted(partitions.items()):
            self._write_partition(table, schema, day, hour, partition, report)

    def _write_partition(
        self, table: str, schema: _Schema, day: str, hour: str, rows: list[_Row], report: LakeTable
    ) -> None:
        directory = f"data/{self._source}/segment_type={table}/day={day}/hr={hour}/"
        written: list[_Row] = []
        for start in range(0, len(rows), self.max_rows_per_file):
            chunk = rows[start : start + self.max_rows_per_file]
            data, nulled = _parquet(schema, chunk)
            part = self._parts.get((table, day, hour), 0)
            self._parts[(table, day, hour)] = part + 1
            key = f"{directory}{self.run.run_id}-{part}.parquet"
            try:
                self.target.put(key, data)
            except Exception as exc:
                self._fail(table, f"could not write {key}", exc)
                break
            report.nulled += nulled
            report.files.append(key)
            report.rows += len(chunk)
            report.partitions.add((day, hour))
            written.extend(chunk)
        ids = {row.message_id: row.received_at for row in written if row.message_id}
        if ids:
            try:
                self.seen.remember(self.run.source_id, ids)
            except Exception as exc:  # the rows are written; a retry would write them again
                self._fail(table, "could not remember the written messageIds", exc)

    def _tables(self) -> set[str]:
        """Tables the source already has: a listing of its schemas, once per run (also the
        run's first contact with the target, so bad settings fail here)."""
        if self._known_tables is None:
            prefix = f"schemas/{self._source}/"
            self._known_tables = {
                key[len(prefix) : -len(".json")]
                for key in self.target.list_keys(prefix)
                if key.endswith(".json")
            }
        return self._known_tables

    def _schema(self, table: str, known: set[str]) -> _Schema:
        schema = self._schemas.get(table)
        if schema is None:
            schema = _Schema({}, exists=False)
            if table in known:
                raw = self.target.get(self._schema_key(table))
                if raw is not None:
                    schema = _Schema(_parse_schema(raw), exists=True)
            self._schemas[table] = schema
        return schema

    def _schema_key(self, table: str) -> str:
        return f"schemas/{self._source}/{table}.json"

    def _table(self, table: str) -> LakeTable:
        report = self.run.tables.get(table)
        if report is None:
            report = self.run.tables[table] = LakeTable(table)
        return report

    def _fail(self, table: str | None, what: str, exc: BaseException) -> None:
        code = error_code(exc)
        message = f"{what}: {exc}"
        logger.error("lake: source %s run %s: %s", self.run.source_id, self.run.run_id, message)
        if table is not None:
            report = self._table(table)
            if report.error is None:
                report.error, report.error_code = message, code
        if self.run.error is None:
            self.run.error, self.run.error_code = message, code

    # -- finishing -----------------------------------------------------------------------------

    def finish(self, error: BaseException | str | None = None) -> LakeRun:
        """End the run and write its report; ``error`` fails a run that the caller could not
        complete (the archive could not be read …). Forgets ids older than the window.

        Raises when the report itself cannot be written: the run is then unrecorded, as
        Segment has no report for it either, and the caller retries it.
        """
        if self.run.status != RUNNING:
            raise RuntimeError("this run has finished")
        if error is not None:
            if isinstance(error, BaseException):
                self._fail(None, "the sync could not complete", error)
            elif self.run.error is None:
                self.run.error, self.run.error_code = error, INTERNAL
        if self._known_tables is None and self.run.error is None:
            try:
                self._tables()  # is_new of the source, and a check of the settings
            except Exception as exc:
                self._fail(None, "could not read the lake's tables", exc)
        run = self.run
        run.status = FAILED if run.error is not None else FINISHED
        run.finished_at = _as_utc(self._clock())
        key = (
            f"reports/day={run.started_at:%Y-%m-%d}/source={self._source}/"
            f"run_id={run.run_id}/report.json"
        )
        self.target.put(key, self._report())
        run.report_key = key
        try:
            self.seen.expire(run.started_at - self.window)
        except Exception:
            logger.exception("lake: could not expire old message ids")
        return run

    def _report(self) -> bytes:
        run = self.run
        assert run.finished_at is not None
        common: dict[str, Any] = {
            "workspace_id": self.workspace_id,
            "source_id": run.source_id,
            "run_id": run.run_id,
            "start_time": _report_time(run.started_at),
            "finish_time": _report_time(run.finished_at),
            "duration_mins": int((run.finished_at - run.started_at).total_seconds() // 60),
        }
        tail: dict[str, Any] = {
            "database": self.database,
            "replay": self.replay,
            "replay_from": _report_time(self.replay_from) if self.replay_from else None,
            "replay_to": _report_time(self.replay_to) if self.replay_to else None,
            "emr_cluster_id": None,
            "s3_bucket": self.target.bucket,
        }
        lines = [
            {
                "type": "source",
                **common,
                "status": run.status,
                "error": run.error,
                "error_code": run.error_code,
                "table_name": "",
                "partitions": [],
                "new_columns": [],
                "row_count": run.rows,
                "is_new": self._known_tables is not None and not self._known_tables,
                **tail,
            }
        ]
        for name in sorted(run.tables):
            table = run.tables[name]
            if not (table.rows or table.error or table.new_columns):
                continue  # every event was a duplicate: nothing happened to this table
            lines.append(
                {
                    "type": "event",
                    **common,
                    "status": FAILED if table.error else FINISHED,
                    "error": table.error,
                    "error_code": table.error_code,
                    "table_name": name,
                    "partitions": [{"day": d, "hr": h} for d, h in sorted(table.partitions)],
                    "new_columns": [{"name": n, "type": t} for n, t in table.new_columns],
                    "row_count": table.rows,
                    "is_new": table.is_new,
                    **tail,
                }
            )
        return b"".join(_encode(line) + b"\n" for line in lines)


def write_lake(
    events: Iterable[Any],
    *,
    source_id: str,
    target: LakeTarget,
    run_id: str,
    now: datetime,
    seen: SeenIds,
    workspace_id: str = "",
    database: str | None = None,
    replay: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> LakeRun:
    """One run in one call: write ``events``, then the report. Does not raise for failed
    writes: they make a ``failed`` run (see ``LakeSync``)."""
    sync = LakeSync(
        target,
        source_id=source_id,
        run_id=run_id,
        seen=seen,
        now=now,
        workspace_id=workspace_id,
        database=database,
        replay=replay,
        clock=clock,
    )
    sync.write(events)
    return sync.finish()


# --- tables, columns and values ---------------------------------------------------------------


def _table_of(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind in EVENT_TYPES:
        return str(kind)
    if kind == "track":
        name = event.get("event")
        table = snake_case(name) if isinstance(name, str) else ""
        if len(table) > MAX_TABLE_NAME:
            table = bounded(table, MAX_TABLE_NAME, mark="__")
        return table or None
    return None


def _flatten(event: dict[str, Any], source_id: str) -> tuple[dict[str, Any], int]:
    """The event as ``{column: value}`` (nulls left out) and how many values had no usable
    column name. Iterative, so a deeply nested payload cannot exhaust the stack."""
    values: dict[str, Any] = {}
    dropped = 0
    top: list[tuple[str, Any]] = []
    for key, value in event.items():
        if key == "projectId":
            continue
        top.append(("metadata" if key == "_metadata" else key, value))
    top.append(("project_id", event.get("projectId") or source_id))
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [("", iter(top))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = prefix + key
            if isinstance(value, dict):
                if not value:
                    continue
                if len(name) >= MAX_COLUMN_NAME:  # every name below is longer still
                    dropped += 1
                    continue
                stack.append((name + "_", iter(value.items())))
                break
            if value is None:
                continue
            if (
                not name
                or len(name) > MAX_COLUMN_NAME
                or (not prefix and name.lower() in PARTITION_KEYS)
            ):
                dropped += 1
                continue
            values.setdefault(name, value)
        else:
            stack.pop()
    return values, dropped


def _add_columns(schema: _Schema, rows: list[_Row]) -> list[str]:
    """Give each row's names the table's spelling and type the new columns over the batch;
    the names of the new columns, in the order first seen."""
    inferred: dict[str, LakeType] = {}
    for row in rows:
        renamed: dict[str, Any] = {}
        for name, value in row.values.items():
            canonical = schema.by_lower.get(name.lower())
            if canonical is None:
                canonical = schema.by_lower[name.lower()] = name
            if canonical in renamed:
                continue  # two spellings of one column in one event: the first wins
            renamed[canonical] = value
            if canonical not in schema.columns:
                kind = _kind(value)
                seen = inferred.get(canonical)
                inferred[canonical] = kind if seen is None else _wider(seen, kind)
        row.values = renamed
    schema.columns.update(inferred)
    return list(inferred)


def _kind(value: Any) -> LakeType:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return "bigint"
        return DECIMAL if abs(value) < _DECIMAL_LIMIT else "string"
    if isinstance(value, float):
        return DECIMAL if math.isfinite(value) and abs(value) < _DECIMAL_LIMIT else "string"
    if isinstance(value, str) and _DATE_TIME.fullmatch(value) and parse_timestamp(value):
        return "timestamp"
    return "string"  # strings, and arrays as JSON text


def _wider(a: LakeType, b: LakeType) -> LakeType:
    if a == b:
        return a
    if {a, b} == {"bigint", DECIMAL}:
        return DECIMAL
    return "string"


def _cast(value: Any, kind: LakeType) -> Any:
    """A JSON value as the column's type, as Spark's casts would have it; ``_FAIL`` when
    there is no sensible value."""
    if kind == "string":
        if isinstance(value, str):
            return value
        try:
            return _encode(value).decode()
        except (msgspec.EncodeError, RecursionError, OverflowError):
            return _FAIL
    if kind == "timestamp":
        return (parse_timestamp(value) or _FAIL) if isinstance(value, str) else _FAIL
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        if isinstance(value, str):
            text = value.strip().lower()
            return True if text in _TRUE else False if text in _FALSE else _FAIL
        return _FAIL
    number = _decimal(value)
    if number is None:
        return _FAIL
    if kind == "bigint":
        whole = int(number)  # toward zero, as Spark casts 12.7 to 12
        return whole if _INT64_MIN <= whole <= _INT64_MAX else _FAIL
    try:
        rounded = number.quantize(_SCALE, rounding=ROUND_HALF_UP, context=_DECIMAL_CONTEXT)
    except InvalidOperation:
        return _FAIL
    return rounded if abs(rounded) < _DECIMAL_LIMIT else _FAIL


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None  # the digits sent
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text) and len(text) < 100:
            return Decimal(int(text))
        if _NUMBER.fullmatch(text) and len(text) < 100:
            number = Decimal(text)
            if abs(number.adjusted()) < 100:  # 1e999999 is no bigint or decimal(38,6)
                return number
    return None


def _parquet(schema: _Schema, rows: list[_Row]) -> tuple[bytes, int]:
    """A Parquet file of the rows with every column of the table (older columns null), and
    the number of values that could not be cast."""
    nulled = 0
    arrays = []
    for name, kind in schema.columns.items():
        column = []
        for row in rows:
            value = row.values.get(name)
            if value is not None:
                value = _cast(value, kind)
                if value is _FAIL:
                    nulled += 1
                    value = None
            column.append(value)
        arrays.append(pa.array(column, type=ARROW_TYPES[kind]))
    table = pa.Table.from_arrays(arrays, names=list(schema.columns))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue(), nulled


def _schema_json(table: str, schema: _Schema) -> bytes:
    return _encode(
        {
            "table": table,
            "columns": [{"name": name, "type": kind} for name, kind in schema.columns.items()],
        }
    )


def _parse_schema(raw: bytes) -> dict[str, LakeType]:
    document = msgspec.json.decode(raw)
    columns: dict[str, LakeType] = {}
    for column in document["columns"]:
        kind = column["type"]
        if kind not in ARROW_TYPES:
            raise ValueError(f"unknown column type {kind!r}")
        columns[str(column["name"])] = kind
    return columns


# --- names and times --------------------------------------------------------------------------


def _report_time(at: datetime) -> str:
    """Hive's timestamp form, which Glue's JSON SerDe reads: ``2020-08-19 22:15:59.044084``."""
    return _as_utc(at).strftime("%Y-%m-%d %H:%M:%S.%f")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
