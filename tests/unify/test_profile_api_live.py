"""The Profile API on a real ``headwater serve`` (supervisor, ingest and api processes): served
on the server's port before the Tracking API's ``/v1/`` routes, never with a CORS header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live import BASE_CONFIG, LiveServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

TOKEN = "live-profile-token-0123"
CONFIG = (
    BASE_CONFIG
    + """\
spaces:
  - name: main
    sources: [web]
    access_tokens:
      - {name: site, token: "${PROFILE_TOKEN}"}
"""
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = tmp_path / "headwater.yaml"
    config.write_text(CONFIG)
    server = LiveServer(
        data_dir=tmp_path / "data",
        config=config,
        role="all",
        ingest_processes=1,
        env={"PROFILE_TOKEN": TOKEN},
    )
    server.start()
    try:
        wait_for(lambda: (server.run_dir / "api.sock").exists(), 30, "the api process")
        yield server
    finally:
        server.stop()


def test_served_on_the_server_port_without_cors(live: LiveServer) -> None:
    path = "/v1/spaces/main/collections/users/profiles/user_id:u1/traits"
    origin = {"Origin": "https://shop.example.com"}
    with httpx.Client(base_url=live.url) as http:
        anonymous = http.get(path, headers=origin)
        known = http.get(path, headers=origin, auth=(TOKEN, ""))
        alias = http.get(path.replace("/spaces/", "/namespaces/"), auth=(TOKEN, ""))
        preflight = http.options(path, headers={**origin, "Access-Control-Request-Method": "GET"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "authentication_error"
    assert known.status_code == 404
    assert known.json() == {"error": {"code": "not_found", "message": "Profile was not found."}}
    assert alias.status_code == 404
    assert preflight.status_code == 405
    for response in (anonymous, known, alias, preflight):
        assert response.headers["request-id"]
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
