"""Through a running server: after a deletion of u2 finishes, no byte of u2's events is left
anywhere in the data directory (the log, the archive, the state database and its WAL), and
everyone else's events are all still archived."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.search import find_marker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MARKER = "MARKER-5e0c7b"
OTHERS = "OTHERS-93d1f4"
CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
"""


def track(live: LiveServer, user_id: str, marker: str) -> None:
    body = {
        "userId": user_id,
        "event": "Order Completed",
        "properties": {"marker": marker},
        "messageId": f"{marker}-{uuid.uuid4().hex[:8]}",
        "writeKey": "WK_web",
    }
    answer = httpx.post(f"{live.url}/v1/track", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def regulation(live: LiveServer, regulate_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{live.url}/api/v1/regulations/{regulate_id}", headers=ADMIN, timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["data"]["regulation"]
    return found


def test_nothing_of_a_deleted_subject_is_left_in_the_data_directory(tmp_path: Path) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text(CONFIG)
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="all")
    try:
        live.start(timeout=120)
        for _ in range(3):
            track(live, "u2", MARKER)
            track(live, "u9", OTHERS)
        wait_for(lambda: MARKER in str(live.archived()), 30, "the archive")
        live.wait_processed()

        body = {"regulationType": "DELETE_INTERNAL", "subjectType": "USER_ID", "subjectIds": ["u2"]}
        answer = httpx.post(f"{live.url}/api/v1/regulations", json=body, headers=ADMIN, timeout=10)
        assert answer.status_code == 200, answer.text
        regulate_id = answer.json()["data"]["regulateId"]
        wait_for(
            lambda: regulation(live, regulate_id)["overallStatus"] == "FINISHED",
            120,
            "the deletion to finish",
        )
        archived = live.archived()
        assert MARKER not in str(archived)
        assert [e["properties"]["marker"] for e in archived] == [OTHERS] * 3
    finally:
        live.stop()
    assert find_marker(tmp_path / "data", MARKER) == []
    assert find_marker(tmp_path / "data", OTHERS)  # the search is honest: others are there
