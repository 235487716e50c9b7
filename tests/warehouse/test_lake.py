"""The data lake: Segment Data Lakes' Parquet layout in a directory and on S3 (moto_server)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError

from headwater.warehouse.lake.seen_ids import MemorySeenIds, SeenIds, SqliteSeenIds
from headwater.warehouse.lake.targets import (
    INTERNAL,
    PERMISSIONS,
    SETTINGS,
    LakeTarget,
    LocalLakeTarget,
    S3LakeTarget,
    error_code,
    open_target,
)
from headwater.warehouse.lake.writer import FAILED, FINISHED, LakeSync, write_lake
from tests.support.ports import free_port
from tests.support.waiting import wait_for

SRC = "SRC"
NOW = datetime(2020, 5, 11, 13, 0, tzinfo=UTC)


def utc(day: int, hour: int = 0, minute: int = 0, month: int = 5) -> datetime:
    return datetime(2020, month, day, hour, minute, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def message(
    kind: str, received: datetime, message_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An event as the archive holds it (normalized: type, channel, version, timestamps)."""
    event: dict[str, Any] = {
        "type": kind,
        "messageId": message_id or str(uuid.uuid4()),
        "anonymousId": "anon-1",
        "channel": "server",
        "version": 2,
        "receivedAt": iso(received),
        "sentAt": iso(received - timedelta(seconds=1)),
        "timestamp": iso(received),
        "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
        "integrations": {},
    }
    event.update(fields)
    return event


def clock_at(*moments: datetime) -> Callable[[], datetime]:
    times = iter(moments)
    return lambda: next(times)


def run(
    target: LakeTarget,
    events: list[dict[str, Any]],
    seen: SeenIds | None = None,
    run_id: str = "1589195400000000000",
    now: datetime = NOW,
    **options: Any,
) -> Any:
    return write_lake(
        events,
        source_id=SRC,
        target=target,
        run_id=run_id,
        now=now,
        seen=seen if seen is not None else MemorySeenIds(),
        **options,
    )


def parquet(target: LakeTarget, key: str) -> pa.Table:
    data = target.get(key)
    assert data is not None, key
    return pq.read_table(io.BytesIO(data))


def rows_under(target: LakeTarget, prefix: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in target.list_keys(prefix):
        if key.endswith(".parquet"):
            rows.extend(parquet(target, key).to_pylist())
    return rows


def report(target: LakeTarget, key: str | None) -> list[dict[str, Any]]:
    assert key is not None
    data = target.get(key)
    assert data is not None
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture
def lake(tmp_path: Path) -> LocalLakeTarget:
    return LocalLakeTarget(tmp_path / "lake")


# --- layout (AC-145) --------------------------------------------------------------------------


def test_identify_lands_in_its_received_hour(lake: LocalLakeTarget) -> None:
    """AC-145."""
    identify = message("identify", utc(11, 11, 23), userId="u1", traits={"email": "a@example.com"})
    result = run(lake, [identify])
    assert result.status == FINISHED
    assert lake.list_keys("data/") == [
        "data/SRC/segment_type=identify/day=2020-05-11/hr=11/1589195400000000000-0.parquet"
    ]
    assert parquet(lake, lake.list_keys("data/")[0]).column("userId").to_pylist() == ["u1"]


def test_tables_by_type_and_snake_cased_event_name(lake: LocalLakeTarget) -> None:
    events = [
        message("page", utc(11, 9), name="Home"),
        message("screen", utc(11, 9), name="Main"),
        message("group", utc(11, 9), groupId="g1", traits={"employees": 12}),
        message("alias", utc(11, 9), previousId="old", userId="new"),
        message("track", utc(11, 9), event="Page Viewed"),
        message("track", utc(11, 10), event="101 Account Update"),
        message("track", utc(11, 10), event="Order Completed"),
        message("track", utc(11, 10), event="•¶§"),  # nothing left of the name: no table
        message("bogus", utc(11, 10)),
        ["not", "an", "event"],
    ]
    result = run(lake, events)  # type: ignore[arg-type]
    tables = {key.split("/")[2] for key in lake.list_keys("data/SRC/")}
    assert tables == {
        "segment_type=page",
        "segment_type=screen",
        "segment_type=group",
        "segment_type=alias",
        "segment_type=page_viewed",
        "segment_type=101_account_update",
        "segment_type=order_completed",
    }
    assert result.skipped == 3
    assert result.rows == 7
    # A track keeps its event name as sent: Data Lakes have no event_text.
    (row,) = rows_under(lake, "data/SRC/segment_type=101_account_update/")
    assert row["event"] == "101 Account Update"
    assert "event_text" not in row


LONG_300 = ("Checkout Step Viewed With A Very Long Descriptive Suffix " * 6)[:300]
LONG_1000 = ("Experiment Variant Exposure For Campaign " * 25)[:1000]
# Same first 999 characters: must still be two tables.
LONG_1000_OTHER = LONG_1000[:-1] + "Z"


def check_long_event_names(target: LakeTarget) -> None:
    names = [LONG_300, LONG_1000, LONG_1000_OTHER]
    first = run(target, [message("track", utc(11, 10), event=n) for n in names], run_id="r1")
    assert first.status == FINISHED, first.error
    tables = sorted(first.tables)
    assert len(tables) == 3 and all(len(t) <= 200 for t in tables)
    assert all(first.tables[t].rows == 1 and first.tables[t].is_new for t in tables)
    for key in target.list_keys(""):
        assert all(len(part.encode()) <= 240 for part in key.split("/")), key
    # Later runs: the same names find the same tables; other events still sync.
    later = run(
        target,
        [
            *(message("track", utc(11, 11), event=n) for n in names),
            message("track", utc(11, 11), event="Signed Up"),
        ],
        run_id="r2",
    )
    assert later.status == FINISHED, later.error
    assert sorted(later.tables) == sorted([*tables, "signed_up"])
    assert not any(later.tables[t].is_new for t in tables)
    for table in tables:
        rows = rows_under(target, f"data/{SRC}/segment_type={table}/")
        assert len(rows) == 2 and rows[0]["event"] in names
        assert target.get(f"schemas/{SRC}/{table}.json") is not None
    assert {line["table_name"] for line in report(target, later.report_key)} == {
        "",
        *tables,
        "signed_up",
    }


def test_long_event_names_get_bounded_stable_tables(lake: LocalLakeTarget) -> None:
    """A 300- or 1,000-character event name once broke its table for good (File name too
    long); now it is cut with a hash, and later syncs keep working."""
    check_long_event_names(lake)
    table = next(
        t
        for t in (k.split("/")[2] for k in lake.list_keys("data/"))
        if t.startswith("segment_type=checkout")
    )
    assert table.startswith("segment_type=checkout_step_viewed_with_a_very_long")
    assert len(table) == len("segment_type=") + 200 and "__" in table


def test_partitions_by_day_and_hour_of_received_at_in_utc(lake: LocalLakeTarget) -> None:
    events = [
        message("track", utc(11, 23, 59), event="Clicked"),
        {
            **message("track", utc(12, 0, 1), event="Clicked"),
            "receivedAt": "2020-05-12T02:00:01.000+02:00",
        },  # 00:00:01 UTC
        message("track", utc(12, 0, 30), event="Clicked"),
    ]
    result = run(lake, events)
    assert sorted(result.tables["clicked"].partitions) == [
        ("2020-05-11", "23"),
        ("2020-05-12", "00"),
    ]
    assert [k.rsplit("/", 1)[0] for k in lake.list_keys("data/")] == [
        "data/SRC/segment_type=clicked/day=2020-05-11/hr=23",
        "data/SRC/segment_type=clicked/day=2020-05-12/hr=00",
    ]
    assert len(rows_under(lake, "data/SRC/segment_type=clicked/day=2020-05-12/")) == 2


def test_large_partitions_are_split_into_numbered_files(lake: LocalLakeTarget) -> None:
    events = [message("track", utc(11, 10, i), event="Tick") for i in range(5)]
    sync = LakeSync(
        lake, source_id=SRC, run_id="r1", seen=MemorySeenIds(), now=NOW, max_rows_per_file=2
    )
    sync.write(events[:3])
    sync.write(events[3:])  # a second batch of the same run continues the numbering
    sync.finish()
    names = [k.rsplit("/", 1)[1] for k in lake.list_keys("data/")]
    assert names == ["r1-0.parquet", "r1-1.parquet", "r1-2.parquet"]
    assert len(rows_under(lake, "data/")) == 5


def test_unsafe_source_ids_and_run_ids(lake: LocalLakeTarget) -> None:
    write_lake(
        [message("identify", utc(11, 11))],
        source_id="a/b c",
        target=lake,
        run_id="r1",
        now=NOW,
        seen=MemorySeenIds(),
    )
    assert lake.list_keys("data/")[0].startswith("data/a%2Fb%20c/segment_type=identify/")
    with pytest.raises(ValueError):
        LakeSync(lake, source_id=SRC, run_id="../r", seen=MemorySeenIds())


# --- columns and types ------------------------------------------------------------------------


def test_columns_keep_payload_names_flattened_with_underscores(lake: LocalLakeTarget) -> None:
    event = message(
        "track",
        utc(11, 11, 5),
        "m-1",
        event="Order Completed",
        userId="u1",
        properties={
            "orderId": "o-1",
            "revenue": 12.5,
            "quantity": 3,
            "gift": False,
            "products": [{"sku": "a"}, {"sku": "b"}],
            "tags": ["x", "y"],
            "billing": {"address": {"city": "Paris"}},
            "empty": {},
            "gone": None,
        },
        context={
            "app": {"version": "1.0.0"},
            "ip": "1.2.3.4",
            "library": {"name": "analytics-python", "version": "2.3.0"},
        },
        integrations={"All": True, "Mixpanel": False, "Google Analytics": {"clientId": "c1"}},
        _metadata={"bundled": ["Segment.io"], "unbundled": []},
        originalTimestamp="2020-05-11T11:04:59.000Z",
    )
    run(lake, [event])
    table = parquet(lake, lake.list_keys("data/")[0])
    types = {f.name: f.type for f in table.schema}
    row = table.to_pylist()[0]

    assert row["messageId"] == "m-1" and row["anonymousId"] == "anon-1"
    assert row["event"] == "Order Completed" and row["type"] == "track"
    assert row["properties_orderId"] == "o-1"
    assert row["properties_billing_address_city"] == "Paris"
    assert row["context_app_version"] == "1.0.0"
    assert row["context_library_name"] == "analytics-python"
    # Arrays are JSON text, objects in arrays included.
    assert row["properties_products"] == '[{"sku":"a"},{"sku":"b"}]'
    assert json.loads(row["properties_tags"]) == ["x", "y"]
    assert row["metadata_bundled"] == '["Segment.io"]'
    assert row["metadata_unbundled"] == "[]"
    # Segment's internal columns: channel, metadata_*, project_id, type, version, integrations.
    assert row["channel"] == "server" and row["version"] == 2 and row["project_id"] == SRC
    assert row["integrations_All"] is True and row["integrations_Mixpanel"] is False
    assert row["integrations_Google Analytics_clientId"] == "c1"
    for absent in (
        "uuid",
        "uuid_ts",
        "event_text",
        "properties_empty",
        "properties_gone",
        "_metadata_bundled",
        "order_id",
        "received_at",
    ):
        assert absent not in types

    assert types["version"] == pa.int64()
    assert types["properties_quantity"] == pa.int64()
    assert types["properties_revenue"] == pa.decimal128(38, 6)
    assert row["properties_revenue"] == Decimal("12.500000")
    assert types["properties_gift"] == pa.bool_()
    assert types["properties_tags"] == pa.string()
    for name in ("receivedAt", "sentAt", "timestamp", "originalTimestamp"):
        assert types[name] == pa.timestamp("us", tz="UTC"), name
    assert row["receivedAt"] == utc(11, 11, 5)
    assert row["originalTimestamp"] == datetime(2020, 5, 11, 11, 4, 59, tzinfo=UTC)


def test_types_are_inferred_over_the_batch(lake: LocalLakeTarget) -> None:
    values: list[dict[str, Any]] = [
        {"a": 1, "b": 1, "c": 1, "d": "2020-05-01T10:00:00Z", "e": True, "f": 2**70},
        {"a": 2, "b": 1.25, "c": "one", "d": "2020-05-02 10:00:00", "e": False, "f": 1},
        {"a": None, "b": 3, "c": 2, "d": "2020-05-03T10:00:00.123456+02:00", "e": True},
    ]
    run(lake, [message("track", utc(11, 11), event="Typed", properties=p) for p in values])
    table = parquet(lake, lake.list_keys("data/")[0])
    types = {f.name: f.type for f in table.schema}
    assert types["properties_a"] == pa.int64()
    assert types["properties_b"] == pa.decimal128(38, 6)  # integers and decimals
    assert types["properties_c"] == pa.string()  # any other mix
    assert types["properties_d"] == pa.timestamp("us", tz="UTC")
    assert types["properties_e"] == pa.bool_()
    assert types["properties_f"] == pa.decimal128(38, 6)  # past bigint
    assert table.column("properties_a").to_pylist() == [1, 2, None]
    assert table.column("properties_b").to_pylist() == [
        Decimal("1.000000"),
        Decimal("1.250000"),
        Decimal("3.000000"),
    ]
    assert table.column("properties_c").to_pylist() == ["1", "one", "2"]
    assert table.column("properties_d").to_pylist()[2] == datetime(
        2020, 5, 3, 8, 0, 0, 123456, tzinfo=UTC
    )


def test_later_values_are_cast_to_the_stored_type(lake: LocalLakeTarget) -> None:
    first = run(
        lake,
        [
            message(
                "track",
                utc(11, 10),
                event="Paid",
                properties={"amount": 10, "ok": True, "at": "2020-05-11T10:00Z", "note": "x"},
            )
        ],
    )
    assert {c for c, _ in first.tables["paid"].new_columns} >= {"properties_amount"}
    odd = [
        {"amount": "12", "ok": "yes", "at": "2020-05-11", "note": 5},
        {"amount": 12.7, "ok": 0, "at": 17, "note": [1, 2]},
        {"amount": "twelve", "ok": "maybe", "at": "soon", "note": True},
        {"amount": 2**64, "ok": None, "at": None, "note": None, "extra": 1.5},
    ]
    second = run(
        lake,
        [message("track", utc(11, 12, i), event="Paid", properties=p) for i, p in enumerate(odd)],
        run_id="r2",
        now=NOW + timedelta(hours=2),
    )
    table = parquet(lake, lake.list_keys("data/SRC/segment_type=paid/day=2020-05-11/hr=12/")[0])
    assert table.schema.field("properties_amount").type == pa.int64()
    assert table.column("properties_amount").to_pylist() == [12, 12, None, None]
    assert table.column("properties_ok").to_pylist() == [True, False, None, None]
    assert table.column("properties_at").to_pylist() == [utc(11), None, None, None]
    assert table.column("properties_note").to_pylist() == ["5", "[1,2]", "true", None]
    assert second.tables["paid"].nulled == 5  # twelve, 2**64, maybe, 17, soon
    # Only the column this run added is new; it comes last, as Glue appends columns.
    assert second.tables["paid"].new_columns == [("properties_extra", "decimal(38,6)")]
    assert table.column_names[-1] == "properties_extra"
    assert not second.tables["paid"].is_new and first.tables["paid"].is_new


def test_column_names_differing_in_case_share_one_column(lake: LocalLakeTarget) -> None:
    events = [
        message("track", utc(11, 11), event="Cased", properties={"planName": "pro"}),
        message("track", utc(11, 11), event="Cased", properties={"planname": "free"}),
        message(
            "track", utc(11, 11), event="Cased", properties={"a_b": "flat", "a": {"b": "nested"}}
        ),  # one name, first wins
    ]
    result = run(lake, events)
    table = parquet(lake, lake.list_keys("data/")[0])
    assert "properties_planname" not in table.column_names
    assert table.column("properties_planName").to_pylist() == ["pro", "free", None]
    assert table.column("properties_a_b").to_pylist() == [None, None, "flat"]
    assert result.tables["cased"].new_columns.count(("properties_planName", "string")) == 1


def test_names_that_cannot_be_columns_are_dropped_and_counted(lake: LocalLakeTarget) -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"n": deep}
    event = message(
        "track",
        utc(11, 11),
        event="Odd",
        day="Monday",
        hr=3,
        properties={"x" * 300: 1, "deep": deep, "ok": 1},
    )
    result = run(lake, [event])
    table = parquet(lake, lake.list_keys("data/")[0])
    assert "day" not in table.column_names and "hr" not in table.column_names
    assert "properties_ok" in table.column_names
    assert all(len(name) <= 250 for name in table.column_names)
    assert result.tables["odd"].dropped == 4  # day, hr, the long name, the deep branch


# --- dedupe (AC-146) --------------------------------------------------------------------------


def test_same_message_id_within_seven_days_is_one_row(lake: LocalLakeTarget) -> None:
    """AC-146: 5 days apart → one row; 8 days apart → may duplicate."""
    seen = MemorySeenIds()
    run(
        lake,
        [
            message("track", utc(1, 10), "dup-5", event="Signed Up"),
            message("track", utc(1, 10), "dup-8", event="Signed Up"),
        ],
        seen,
        "r1",
        now=utc(1, 12),
    )
    again = run(
        lake, [message("track", utc(6, 10), "dup-5", event="Signed Up")], seen, "r2", now=utc(6, 12)
    )
    later = run(
        lake, [message("track", utc(9, 10), "dup-8", event="Signed Up")], seen, "r3", now=utc(9, 12)
    )
    assert again.duplicates == 1 and again.rows == 0
    assert later.duplicates == 0 and later.rows == 1
    ids = sorted(r["messageId"] for r in rows_under(lake, "data/"))
    assert ids == ["dup-5", "dup-8", "dup-8"]


def test_copies_within_one_batch_are_dropped(lake: LocalLakeTarget) -> None:
    result = run(
        lake,
        [
            message("identify", utc(11, 10), "same"),
            message("identify", utc(11, 11), "same"),
            message("identify", utc(11, 11), "other"),
        ],
    )
    assert result.duplicates == 1 and result.rows == 2
    assert [r["messageId"] for r in rows_under(lake, "data/")] == ["same", "other"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_seen_ids_store(kind: str, tmp_path: Path) -> None:
    store: MemorySeenIds | SqliteSeenIds = (
        MemorySeenIds() if kind == "memory" else SqliteSeenIds(tmp_path / "seen.db")
    )
    store.remember("s1", {"a": utc(1), "b": utc(5)})
    store.remember("s2", {"a": utc(2)})
    store.remember("s1", {"a": utc(3)})  # the copy written last is the reference
    assert store.lookup("s1", ["a", "b", "c"]) == {"a": utc(3), "b": utc(5)}
    assert store.lookup("s2", ["a", "b"]) == {"a": utc(2)}
    assert store.expire(utc(4)) == 2
    assert store.lookup("s1", ["a", "b"]) == {"b": utc(5)}
    many = {f"id-{i}": utc(6) for i in range(1200)}  # more than one query's worth of ids
    store.remember("s1", many)
    assert len(store.lookup("s1", list(many))) == 1200
    if isinstance(store, SqliteSeenIds):
        store.close()
        reopened = SqliteSeenIds(tmp_path / "seen.db")
        assert reopened.lookup("s1", ["b", "id-7"]) == {"b": utc(5), "id-7": utc(6)}
        reopened.close()


def test_dedupe_survives_a_restart_with_the_sqlite_store(
    lake: LocalLakeTarget, tmp_path: Path
) -> None:
    first = SqliteSeenIds(tmp_path / "seen.db")
    run(lake, [message("page", utc(1, 10), "p-1")], first, "r1", now=utc(1, 12))
    first.close()
    second = SqliteSeenIds(tmp_path / "seen.db")
    result = run(lake, [message("page", utc(5, 10), "p-1")], second, "r2", now=utc(5, 12))
    assert result.duplicates == 1 and len(rows_under(lake, "data/")) == 1
    # finish() forgets ids older than the window.
    run(lake, [], second, "r3", now=utc(20))
    assert second.lookup(SRC, ["p-1"]) == {}
    second.close()


# --- sync reports (AC-147) --------------------------------------------------------------------


def test_completed_sync_writes_a_report(lake: LocalLakeTarget) -> None:
    """AC-147: a ``source`` object and one ``event`` object per table."""
    start = datetime(2020, 8, 19, 22, 15, 59, 44084, tzinfo=UTC)
    events = [
        message("identify", utc(11, 11), traits={"plan": "pro"}),
        message("track", utc(11, 10), event="Order Completed", properties={"n": 1}),
        message("track", utc(11, 11), event="Order Completed"),
    ]
    result = run(
        lake,
        events,
        run_id="1597581273464733073",
        now=start,
        workspace_id="W1",
        clock=clock_at(start + timedelta(minutes=2, seconds=13)),
    )
    assert result.report_key == (
        "reports/day=2020-08-19/source=SRC/run_id=1597581273464733073/report.json"
    )
    lines = report(lake, result.report_key)
    assert [(line["type"], line["table_name"]) for line in lines] == [
        ("source", ""),
        ("event", "identify"),
        ("event", "order_completed"),
    ]
    source, identify, order = lines
    for line in lines:
        assert line["workspace_id"] == "W1" and line["source_id"] == SRC
        assert line["run_id"] == "1597581273464733073"
        assert line["start_time"] == "2020-08-19 22:15:59.044084"
        assert line["finish_time"] == "2020-08-19 22:18:12.044084"
        assert line["duration_mins"] == 2
        assert line["status"] == "finished"
        assert line["error"] is None and line["error_code"] is None
        assert line["s3_bucket"] == str(lake.root)
        assert line["replay"] is False
        assert line["database"] == SRC
    assert source["row_count"] == 3 and source["is_new"] is True
    assert order["row_count"] == 2 and order["is_new"] is True
    assert order["partitions"] == [
        {"day": "2020-05-11", "hr": "10"},
        {"day": "2020-05-11", "hr": "11"},
    ]
    assert {"name": "properties_n", "type": "bigint"} in order["new_columns"]
    assert {"name": "receivedAt", "type": "timestamp"} in identify["new_columns"]
    assert identify["partitions"] == [{"day": "2020-05-11", "hr": "11"}]

    # The next run: nothing new about the source or the table.
    nxt = run(
        lake,
        [message("identify", utc(11, 12), traits={"plan": "pro"})],
        run_id="r2",
        now=start + timedelta(hours=2),
    )
    source2, identify2 = report(lake, nxt.report_key)
    assert source2["is_new"] is False and identify2["is_new"] is False
    assert identify2["new_columns"] == []


def test_run_with_no_events_still_reports(lake: LocalLakeTarget) -> None:
    result = run(lake, [])
    assert result.status == FINISHED
    assert [line["type"] for line in report(lake, result.report_key)] == ["source"]


def test_a_run_the_caller_could_not_complete_reports_failed(lake: LocalLakeTarget) -> None:
    sync = LakeSync(lake, source_id=SRC, run_id="r1", seen=MemorySeenIds(), now=NOW)
    sync.write([message("identify", utc(11, 11))])
    result = sync.finish(OSError("the archive could not be read"))
    assert result.status == FAILED
    source, identify = report(lake, result.report_key)
    assert source["status"] == "failed" and source["error_code"] == INTERNAL
    assert "archive could not be read" in source["error"]
    assert identify["status"] == "finished" and identify["row_count"] == 1
    with pytest.raises(RuntimeError):
        sync.write([])


def test_unwritable_directory_fails_with_a_permissions_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        target = LocalLakeTarget(locked / "lake")
        if _can_write(locked):
            pytest.skip("running as a user that ignores permissions")
        sync = LakeSync(target, source_id=SRC, run_id="r1", seen=MemorySeenIds(), now=NOW)
        sync.write([message("identify", utc(11, 11))])
        assert sync.run.error_code == PERMISSIONS
        with pytest.raises(PermissionError):  # nowhere to write the report either
            sync.finish()
    finally:
        locked.chmod(0o700)


def test_error_codes() -> None:
    """Segment's three classes: permissions, settings, internal."""

    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")

    assert error_code(PermissionError("no")) == PERMISSIONS
    assert error_code(client_error("AccessDenied")) == PERMISSIONS
    assert error_code(client_error("InvalidAccessKeyId")) == PERMISSIONS
    assert error_code(client_error("NoSuchBucket")) == SETTINGS
    assert error_code(client_error("SlowDown")) == INTERNAL
    assert error_code(OSError("disk full")) == INTERNAL


def _can_write(directory: Path) -> bool:
    try:
        (directory / "probe").touch()
    except PermissionError:
        return False
    (directory / "probe").unlink()
    return True


def test_open_target() -> None:
    local = open_target("/srv/lake")
    assert isinstance(local, LocalLakeTarget) and local.bucket == "/srv/lake"
    s3 = open_target(
        "s3://bucket/some/prefix/",
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
    )
    assert isinstance(s3, S3LakeTarget)
    assert (s3.bucket, s3.prefix, s3.location) == (
        "bucket",
        "some/prefix",
        "s3://bucket/some/prefix",
    )
    for bad in ("s3://", "gs://bucket/x"):
        with pytest.raises(ValueError):
            open_target(bad)


# --- S3 through moto_server -------------------------------------------------------------------


class MotoServer:
    """moto's S3 on a free loopback port, in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return True
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_for(answers, 30, "moto_server to answer")
        except AssertionError:
            self.stop()
            raise RuntimeError("moto_server did not answer in 30 s") from None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def target(self, prefix: str = "segment-data") -> S3LakeTarget:
        """A new bucket for each test, so tests do not see each other's objects."""
        bucket = f"lake-{uuid.uuid4().hex[:12]}"
        target = open_target(
            f"s3://{bucket}/{prefix}",
            endpoint_url=self.url,
            region="us-east-1",
            access_key_id="testing",
            secret_access_key="testing",
        )
        assert isinstance(target, S3LakeTarget)
        target.client.create_bucket(Bucket=bucket)
        return target


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


def test_s3_layout_contents_and_report(moto: MotoServer) -> None:
    """AC-145 and AC-147 on S3."""
    target = moto.target()
    events = [
        message("identify", utc(11, 11, 30), userId="u1", traits={"tags": ["a"]}),
        message("track", utc(11, 11, 31), event="Page Viewed", properties={"n": 1.5}),
    ]
    result = run(target, events, run_id="r1")
    assert result.status == FINISHED
    assert target.list_keys("data/") == [
        "data/SRC/segment_type=identify/day=2020-05-11/hr=11/r1-0.parquet",
        "data/SRC/segment_type=page_viewed/day=2020-05-11/hr=11/r1-0.parquet",
    ]
    # The keys really are under the configured prefix in the bucket.
    listed = target.client.list_objects_v2(Bucket=target.bucket, Prefix="segment-data/data/")
    assert len(listed.get("Contents", [])) == 2
    identify = parquet(target, target.list_keys("data/")[0]).to_pylist()[0]
    assert identify["userId"] == "u1" and identify["traits_tags"] == '["a"]'
    page = parquet(target, target.list_keys("data/")[1])
    assert page.schema.field("properties_n").type == pa.decimal128(38, 6)
    lines = report(target, result.report_key)
    assert result.report_key == "reports/day=2020-05-11/source=SRC/run_id=r1/report.json"
    assert [line["table_name"] for line in lines] == ["", "identify", "page_viewed"]
    assert {line["s3_bucket"] for line in lines} == {target.bucket}
    assert target.get("reports/missing.json") is None


def test_long_event_names_on_s3(moto: MotoServer) -> None:
    check_long_event_names(moto.target())


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def refuse_puts(target: S3LakeTarget, fragment: str) -> Callable[..., None]:
    """Make S3 answer 403 AccessDenied to uploads whose key contains ``fragment`` (a
    ``before-send`` handler's response replaces the request's; the stubs type handlers as
    returning None)."""

    def handler(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if request.method == "PUT" and fragment in unquote(request.url or ""):
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message><RequestId>t</RequestId></Error>"
            )
            headers = HTTPHeaders()
            headers["Content-Type"] = "application/xml"
            return AWSResponse(request.url, 403, headers, _Body(body))
        return None

    hook = cast(Callable[..., None], handler)
    target.client.meta.events.register("before-send.s3.PutObject", hook)
    return hook


def test_a_refused_write_fails_the_run_and_the_next_run_completes_it(
    moto: MotoServer, tmp_path: Path
) -> None:
    target = moto.target()
    seen = SqliteSeenIds(tmp_path / "seen.db")
    events = [message("track", utc(11, 10, i), f"a-{i}", event="Clicked") for i in range(3)]
    events += [message("track", utc(11, 11, i), f"b-{i}", event="Clicked") for i in range(2)]
    events += [message("identify", utc(11, 11), "c-0", userId="u1")]
    handler = refuse_puts(target, "segment_type=clicked/day=2020-05-11/hr=11/")

    failed = run(target, events, seen, run_id="r1")
    assert failed.status == FAILED
    source, clicked, identify = report(target, failed.report_key)
    assert source["status"] == "failed" and source["error_code"] == PERMISSIONS
    assert "AccessDenied" in source["error"]
    assert clicked["status"] == "failed" and clicked["row_count"] == 3
    assert clicked["partitions"] == [{"day": "2020-05-11", "hr": "10"}]
    assert identify["status"] == "finished" and identify["row_count"] == 1
    assert len(rows_under(target, "data/")) == 4  # the other partitions are written

    # The refusal is lifted; the caller gives the same events again.
    target.client.meta.events.unregister("before-send.s3.PutObject", handler)
    retried = run(target, events, seen, run_id="r2", now=NOW + timedelta(hours=2))
    assert retried.status == FINISHED
    assert retried.duplicates == 4 and retried.rows == 2
    ids = sorted(r["messageId"] for r in rows_under(target, "data/"))
    assert ids == ["a-0", "a-1", "a-2", "b-0", "b-1", "c-0"]  # all, each once
    assert target.list_keys("data/SRC/segment_type=clicked/day=2020-05-11/hr=11/") == [
        "data/SRC/segment_type=clicked/day=2020-05-11/hr=11/r2-0.parquet"
    ]
    seen.close()


def test_a_missing_bucket_fails_as_invalid_settings(moto: MotoServer) -> None:
    target = open_target(
        "s3://no-such-bucket/x",
        endpoint_url=moto.url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    sync = LakeSync(target, source_id=SRC, run_id="r1", seen=MemorySeenIds(), now=NOW)
    sync.write([message("identify", utc(11, 11))])
    assert sync.run.error_code == SETTINGS
    assert sync.run.rows == 0
