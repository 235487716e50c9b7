"""The web app through a running server: ``/`` sends a browser to sign in, the admin token
signs in, and Home shows the file's sources and destinations; the REST API keeps its paths."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
"""


def test_signing_in_and_home_through_a_running_server(tmp_path: Path) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text(CONFIG)
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="single")
    try:
        live.start(timeout=120)
        browser = httpx.Client(base_url=live.url, timeout=30)
        assert browser.get("/").status_code == 303
        signed = browser.post("/login", data={"token": ADMIN_TOKEN, "next": "/"})
        assert signed.status_code == 303
        home = browser.get("/")
        assert home.status_code == 200, home.text
        assert ">web</text>" in home.text and ">hook</text>" in home.text
        # The REST API still answers JSON at its own paths, with its own errors.
        api = browser.get("/api/v1/sources")
        assert api.status_code == 401 and api.json()["errors"][0]["type"] == "unauthorized"
    finally:
        live.stop()
