"""The functions' JavaScript libraries through a running server: ``serve`` hands the install in
its data directory (``functions-libraries``) to its sandboxes, so the test runner's function
sees ``_`` and ``moment``."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from headwater.functions.sandbox import libraries
from tests.support.live import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
functions:
  - name: dated
    kind: insert
    language: javascript
    code: |
      async function onTrack(event) {
        event.properties.day = moment.tz(event.timestamp, 'Europe/Paris').format('YYYY-MM-DD HH:mm')
        event.properties.keys = _.sortBy(Object.keys(event.properties))
        return event
      }
"""


def test_the_servers_sandboxes_get_the_installed_libraries(tmp_path: Path) -> None:
    shared = Path(os.environ[libraries.ENVIRONMENT])
    if not libraries.installed(shared):
        pytest.fail(f"the functions' libraries are not installed in {shared}: run scripts/test.sh")
    path = tmp_path / "headwater.yaml"
    path.write_text(CONFIG)
    data = tmp_path / "data"
    data.mkdir()
    # the data directory's own install (the shared one linked, so nothing is downloaded)
    (data / "functions-libraries").symlink_to(shared)
    live = LiveServer(data_dir=data, config=path, role="single", env={libraries.ENVIRONMENT: ""})
    try:
        live.start(timeout=120)
        api = httpx.Client(
            base_url=f"{live.url}/api/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        event = {
            "type": "track",
            "event": "Signed Up",
            "userId": "u1",
            "timestamp": "2026-12-07T23:30:00Z",
            "properties": {"b": 1, "a": 2},
        }
        ran = api.post("/functions/dated/test", json={"event": event})
        assert ran.status_code == 200, ran.text
        assert ran.json()["data"]["output"]["properties"] == {
            "b": 1,
            "a": 2,
            "day": "2026-12-08 00:30",
            "keys": ["a", "b", "day"],
        }
    finally:
        live.stop()
