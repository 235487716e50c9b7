"""The search harness finds a marker wherever it lies (gzip, Parquet, SQLite and its WAL,
DuckDB, plain files), and finds nothing of a subject once the archive, data lake and log
erasers ran over a real data directory, while everyone else's events are all still there."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from headwater.config.settings import ServerSettings
from headwater.privacy.erasure import Erasure, Subjects
from headwater.server import Server
from headwater.store.archive import ArchiveWriter
from headwater.store.archive_erasure import ArchiveEraser
from headwater.store.database import database_url, forget_deleted, open_engine
from headwater.store.log_erasure import LogEraser
from headwater.store.migrations import migrate
from headwater.store.segments import SegmentLog
from headwater.warehouse.lake.erasure import LakeEraser
from headwater.warehouse.lake.seen_ids import SqliteSeenIds
from headwater.warehouse.lake.targets import LocalLakeTarget
from headwater.warehouse.lake.writer import write_lake
from headwater.warehouse.store import WarehouseStore
from tests.support.chain import dedup_chain
from tests.support.clock import Clock
from tests.support.records import log_record, stored_event
from tests.support.search import find_marker

MARKER = "MARKER-7d2e95"  # only in the subject's events
OTHERS = "OTHERS-41c0aa"  # only in everyone else's
RECEIVED = "2024-03-05T10:00:00.000Z"


def test_it_finds_a_marker_in_every_kind_of_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(f"x {MARKER} y")
    event = stored_event("m1", RECEIVED, properties={"note": MARKER})
    ArchiveWriter(tmp_path / "archive")([(0, 1, log_record("src", RECEIVED, [event]))])
    write_lake(
        [event],
        source_id="src",
        target=LocalLakeTarget(tmp_path / "lake"),
        run_id="r1",
        now=datetime(2024, 3, 5, 11, tzinfo=UTC),
        seen=SqliteSeenIds(tmp_path / "seen.db"),
    )
    sqlite = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    sqlite.execute("PRAGMA journal_mode=WAL")
    sqlite.execute("PRAGMA wal_autocheckpoint=0")
    sqlite.execute("CREATE TABLE t (v TEXT)")
    sqlite.execute("INSERT INTO t VALUES (?)", (MARKER,))  # in the WAL only, while open
    duck = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    duck.execute("CREATE TABLE t AS SELECT ? AS v", [MARKER])
    duck.execute("CHECKPOINT")
    duck.close()

    found = find_marker(tmp_path, MARKER)
    sqlite.close()
    kinds = {line.split("/")[0].split(" ")[0]: line for line in found}
    assert "notes.txt" in kinds
    assert any(f.startswith("archive/") and f.endswith("(gzip)") for f in found)
    assert any(f.startswith("lake/data/") and f.endswith("(parquet)") for f in found)
    assert "state.db-wal (raw)" in found
    assert "warehouse.duckdb (raw)" in found
    assert find_marker(tmp_path, "NOT-THERE-0") == []


def test_nothing_of_the_subject_is_left_after_the_erasers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = Clock(datetime(2024, 3, 5, 10, tzinfo=UTC).timestamp())
    engine = open_engine(database_url(data, None))
    migrate(engine)
    ingest = SegmentLog(data / "log", clock=clock)
    processed, chain = dedup_chain(engine, ingest, clock, "archive")
    writer = ArchiveWriter(data / "archive")
    lake = LocalLakeTarget(data / "lake")

    def send(*events: dict[str, object]) -> None:
        ingest.append([("ws_1", log_record("src", RECEIVED, list(events)))])
        chain.run_once()
        for partition in processed.partitions:
            polled = processed.poll("archive", partition, 10_000)
            writer([(partition, offset, payload) for offset, payload in polled])
            if polled:
                processed.commit_many("archive", {partition: polled[-1][0]})
        processed.truncate()
        chain.trim()

    subject = [
        stored_event(f"s{i}", RECEIVED, userId="u2", properties={"note": MARKER}) for i in range(3)
    ]
    others = [
        stored_event(f"o{i}", RECEIVED, userId=f"u{i + 10}", properties={"note": OTHERS})
        for i in range(3)
    ]
    send(others[0], subject[0])
    send(subject[1], others[1])
    send(others[2], subject[2])
    write_lake(
        [*subject, *others],
        source_id="src",
        target=lake,
        run_id="r1",
        now=datetime(2024, 3, 5, 11, tzinfo=UTC),
        seen=SqliteSeenIds(data / "lake-wh_1-seen.db"),
    )
    before = find_marker(data, MARKER)
    assert any(f.startswith("log/") for f in before)
    assert any(f.startswith("archive/") for f in before)
    assert any(f.startswith("lake/") for f in before)

    deletion = Erasure("reg_1", "ws_1", Subjects(user_ids=frozenset({"u2"})), clock() + 1)
    assert ArchiveEraser(data / "archive").erase(deletion) is None
    assert LakeEraser(lake, "wh_1").erase(deletion) is None
    log = LogEraser(ingest, processed)
    assert log.erase(deletion) is not None  # the newest segment holds it: sealed, then …
    clock.advance(60)
    send(stored_event("later", "2024-03-05T10:01:00.000Z", userId="u30"))
    assert log.erase(deletion) is None  # … dropped once the chain and the archive passed it
    assert forget_deleted(engine)

    assert find_marker(data, MARKER) == []
    kept = find_marker(data, OTHERS)
    assert any(f.startswith("archive/") for f in kept)
    assert any(f.startswith("lake/") for f in kept)
    chain.stop()
    ingest.close()
    engine.dispose()


def test_the_server_runs_the_archive_lake_and_log_erasers(tmp_path: Path) -> None:
    server = Server(settings=ServerSettings(data_dir=tmp_path / "data"), admin_token_hash="x")
    try:
        lake = WarehouseStore(server.store).create(
            "lake", "data-lake", settings={"location": "lake"}
        )
        targets = [(e.target.kind, e.target.id) for e in server.current_erasers()]
        assert ("internal", "log") in targets
        assert ("warehouse", lake.id) in targets
        # The archive after every internal store, before the warehouses and lakes.
        archive = targets.index(("archive", "archive"))
        assert all(kind == "internal" for kind, _ in targets[:archive])
        assert all(kind != "internal" for kind, _ in targets[archive + 1 :])
    finally:
        server.engine.dispose()
