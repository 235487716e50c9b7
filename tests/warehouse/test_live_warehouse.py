"""The default DuckDB warehouse through a live server and the ``headwater warehouse`` commands:
events sent to the Tracking API are queryable after ``headwater warehouse sync default``, with
the server running and without it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.store.archive import Archive
from tests.support.live import ADMIN_TOKEN, LiveServer, run_headwater
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

CONFIG = "workspace: test\nsources:\n  - name: web\n    write_key: WK_web\n"


def archived(tmp_path: Path) -> list[dict[str, Any]]:
    archive = Archive(tmp_path / "data" / "archive")
    return [
        e
        for source in archive.sources()
        for e in archive.read(
            source, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
    ]


def _synced_once(http: httpx.Client) -> bool:
    syncs = http.get(
        "/api/v1/warehouses/default/syncs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()["data"]["syncs"]
    return any(sync["status"] in ("success", "partial", "failure") for sync in syncs)


def test_sync_and_query_with_and_without_the_server(tmp_path: Path) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(CONFIG)
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=10) as http:
            # A warehouse that never synced is due at once: let that first scheduled sync end
            # before sending, so the sync asked for below is the one that loads the events.
            wait_for(lambda: _synced_once(http), 60, "the first scheduled sync")
            for n in range(3):
                assert (
                    http.post(
                        "/v1/track",
                        json={
                            "writeKey": "WK_web",
                            "userId": f"u{n}",
                            "event": "Order Completed",
                            "properties": {"total": n, "coupon": {"code": "X"}},
                        },
                    ).status_code
                    == 200
                )
            # All three in the archive, not just its file: a sync reads what is written.
            wait_for(lambda: len(archived(tmp_path)) == 3, 10, "the archive")
        synced = run_headwater(
            "warehouse", "sync", "default", "--url", live.url, data_dir=tmp_path / "data"
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "default: success" in synced.stdout
        assert "web.order_completed: 3" in synced.stdout
        queried = run_headwater(
            "warehouse",
            "query",
            "default",
            "SELECT user_id, total, coupon_code FROM web.order_completed ORDER BY user_id",
            data_dir=tmp_path / "data",
        )
        assert queried.returncode == 0, queried.stderr
        assert queried.stdout.splitlines() == [
            "user_id\ttotal\tcoupon_code",
            "u0\t0\tX",
            "u1\t1\tX",
            "u2\t2\tX",
        ]
        with httpx.Client(base_url=live.url, timeout=10) as http:
            history = http.get(
                "/api/v1/warehouses/default/syncs",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ).json()
            assert history["data"]["syncs"][0]["status"] == "success"
            assert (
                http.post(
                    "/v1/track",
                    json={"writeKey": "WK_web", "userId": "u9", "event": "Order Completed"},
                ).status_code
                == 200
            )
        wait_for(
            lambda: any(e.get("userId") == "u9" for e in archived(tmp_path)),
            10,
            "the last event in the archive",
        )
    finally:
        live.stop()
    # No server: the command syncs the data directory itself.
    direct = run_headwater(
        "warehouse", "sync", "--all", "--url", "http://127.0.0.1:9", data_dir=tmp_path / "data"
    )
    assert direct.returncode == 0, direct.stdout + direct.stderr
    assert "no server answered" in direct.stdout
    counted = run_headwater(
        "warehouse",
        "query",
        "default",
        "SELECT count(*) FROM web.order_completed",
        data_dir=tmp_path / "data",
    )
    assert counted.stdout.splitlines()[1] == "4"
    missing = run_headwater(
        "warehouse", "sync", "nope", "--url", "http://127.0.0.1:9", data_dir=tmp_path / "data"
    )
    assert missing.returncode != 0 and "no warehouse" in missing.stderr
