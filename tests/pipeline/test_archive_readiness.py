"""``/ready`` answers 503 while the archive cannot write, and 200 again once it can (issue 10).

The archive directory is replaced by a plain file: unlike a chmod, that stops writes even for
root, which the tests may run as. Events sent meanwhile wait in the log and are archived
after the recovery: nothing is lost.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from headwater.store.archive import Archive
from tests.support.live import BASE_CONFIG, LiveServer

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic " + base64.b64encode(b"WK_web:").decode()}


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def archived(archive_dir: Path, user: str) -> bool:
    archive = Archive(archive_dir)
    now = datetime.now(UTC)
    return any(
        e.get("userId") == user
        for source in archive.sources()
        for e in archive.read(source, now - timedelta(hours=1), now + timedelta(hours=1))
    )


# single: one process archives and answers /ready; all: the worker archives and the api
# process answers (the ingest process while the api process starts) (issue 11).
@pytest.mark.parametrize("role", ["single", "all"])
def test_ready_follows_the_archive(tmp_path: Path, role: str) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG)
    live = LiveServer(data_dir=tmp_path / "data", config=config, role=role)
    live.start()
    archive_dir = live.data_dir / "archive"
    try:
        with httpx.Client(base_url=live.url, timeout=10) as http:
            first = uuid.uuid4().hex
            assert (
                http.post(
                    "/v1/track", json={"userId": first, "event": "E"}, headers=AUTH
                ).status_code
                == 200
            )
            wait_for(lambda: archived(archive_dir, first), 30, "the first event's archive")
            assert http.get("/ready").status_code == 200

            archive_dir.rename(tmp_path / "archive-aside")
            archive_dir.write_text("not a directory")
            during = uuid.uuid4().hex
            # Ingest still acknowledges: the event is safe in the log.
            assert (
                http.post(
                    "/v1/track", json={"userId": during, "event": "E"}, headers=AUTH
                ).status_code
                == 200
            )
            wait_for(lambda: http.get("/ready").status_code == 503, 30, "/ready to say 503")
            answer = http.get("/ready")
            assert answer.headers["retry-after"] == "5"
            assert answer.json()["status"] == "unavailable"
            assert "archive cannot write" in answer.json()["reason"]
            assert http.get("/health").status_code == 200  # alive, just not ready

            archive_dir.unlink()
            (tmp_path / "archive-aside").rename(archive_dir)
            wait_for(lambda: http.get("/ready").status_code == 200, 30, "/ready to recover")
            assert archived(archive_dir, during)  # waited in the log, archived on recovery
    finally:
        live.stop()
