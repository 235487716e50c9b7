"""The lake eraser: Parquet files holding the subject rewritten, locally and on S3 (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.privacy.erasure import Erasure, Subjects, Target
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.lake.erasure import LakeEraser, lake_erasers
from headwater.warehouse.lake.targets import LakeTarget, LocalLakeTarget
from headwater.warehouse.store import WarehouseStore
from tests.support.search import find_marker
from tests.warehouse.test_lake import MotoServer, message, parquet, rows_under, run, utc
from tests.warehouse.test_lake import moto as moto


def erasure(source_ids: frozenset[str] | None = None) -> Erasure:
    subjects = Subjects(user_ids=frozenset({"u2"}))
    return Erasure("reg_1", "ws_1", subjects, 2e9, source_ids=source_ids)


def fill(target: LakeTarget) -> None:
    run(
        target,
        [
            message(
                "track", utc(11, 11, 1), "m1", userId="u1", event="Bought", properties={"k": "a"}
            ),
            message(
                "track",
                utc(11, 11, 2),
                "m2",
                userId="u2",
                event="Bought",
                properties={"k": "SECRET-u2"},
            ),
            message("identify", utc(11, 11, 3), "m3", userId="u2", traits={"email": "SECRET-u2"}),
            message("track", utc(11, 12, 4), "m4", userId="u3", event="Bought"),
            message("alias", utc(11, 12, 5), "m5", userId="u9", previousId="u2"),
        ],
    )


def check(target: LakeTarget) -> None:
    fill(target)
    keys = target.list_keys("data/")
    untouched = {k: target.get(k) for k in keys if "hr=12" in k and "alias" not in k}
    eraser = LakeEraser(target, "lake_1", "Lake")
    assert eraser.target.kind == "warehouse" and eraser.target.id == "lake_1"

    assert eraser.erase(erasure()) is None

    rows = rows_under(target, "data/")
    assert sorted(r["messageId"] for r in rows) == ["m1", "m4"]
    assert all("SECRET-u2" not in str(r) for r in rows)
    assert target.list_keys("data/") == keys  # an emptied file stays, with its columns
    identify = next(k for k in keys if "identify" in k)
    assert parquet(target, identify).num_rows == 0
    assert "traits_email" in parquet(target, identify).column_names
    assert {k: target.get(k) for k in untouched} == untouched  # files without u2 not rewritten
    assert eraser.erase(erasure()) is None  # idempotent


def test_a_local_lake(tmp_path: Path) -> None:
    target = LocalLakeTarget(tmp_path / "lake")
    check(target)
    assert find_marker(tmp_path, "SECRET-u2") == []
    assert not [p for p in (tmp_path / "lake").rglob(".*")]  # no temp file left


def test_an_s3_lake(moto: MotoServer) -> None:
    """A-DS-6's S3 part: objects containing u2 rewritten without u2."""
    check(moto.target())


def test_only_the_regulations_sources(tmp_path: Path) -> None:
    target = LocalLakeTarget(tmp_path / "lake")
    fill(target)
    LakeEraser(target, "lake_1").erase(erasure(source_ids=frozenset({"OTHER"})))
    assert len(rows_under(target, "data/")) == 5
    LakeEraser(target, "lake_1").erase(erasure(source_ids=frozenset({"SRC"})))
    assert len(rows_under(target, "data/")) == 2


@pytest.mark.parametrize("anonymous", ["anon-1"])
def test_anonymous_ids(tmp_path: Path, anonymous: str) -> None:
    target = LocalLakeTarget(tmp_path / "lake")
    fill(target)  # every message() carries anonymousId anon-1
    subjects = Subjects(anonymous_ids=frozenset({anonymous}))
    LakeEraser(target, "lake_1").erase(Erasure("r", "ws_1", subjects, 2e9))
    assert rows_under(target, "data/") == []


def test_an_eraser_per_lake_of_the_workspace(engine: Engine, tmp_path: Path) -> None:
    warehouses = WarehouseStore(WorkspaceStore(engine))
    lake = warehouses.create("lake", "data-lake", settings={"location": "lakes/main"})
    warehouses.create("dw", "duckdb", settings={})
    [eraser] = lake_erasers(warehouses, tmp_path)
    assert eraser.target == Target("warehouse", lake.id, "lake")
    fill(LocalLakeTarget(tmp_path / "lakes" / "main"))
    eraser.erase(erasure())
    assert len(rows_under(LocalLakeTarget(tmp_path / "lakes" / "main"), "data/")) == 2
