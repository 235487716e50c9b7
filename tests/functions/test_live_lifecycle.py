"""Functions through a running server: ``headwater serve --config`` applies the file's functions,
the REST API refuses a 26th function (AC-111) and code that calls Segment's function host or
this server's own function endpoint (AC-113), and the test runner runs a real sandbox in the
server's api process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONFIG = """workspace: test
functions:
  - name: enrich
    kind: insert
    language: javascript
    code: |
      async function onTrack(event, settings) { event.properties.message = 'Enriched'; return event }
      async function onIdentify(event, settings) { throw new DropEvent('no identifies here') }
{more}
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
    insert_function: enrich
"""


def test_functions_through_a_running_server(tmp_path: Path) -> None:
    more = "".join(
        f"  - {{name: f{i}, kind: insert, code: 'async function onTrack(e) {{ return e }}'}}\n"
        for i in range(23)
    )
    path = tmp_path / "headwater.yaml"
    path.write_text(CONFIG.replace("{more}", more.rstrip("\n")))
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="single")
    try:
        live.start(timeout=120)  # two cores shared with others: startup may be slow
        api = httpx.Client(base_url=f"{live.url}/api/v1", headers=ADMIN, timeout=30)
        listed = api.get("/functions").json()["data"]
        assert len(listed["functions"]) == 24 and listed["limit"] == 25
        attached = api.get("/destinations/hook/insert-function").json()["data"]["function"]
        assert attached["function"]["name"] == "enrich"

        # AC-113: code calling Segment's function host, or this server's own endpoint.
        for url in ("https://fn.segmentapis.com/?b=d2s6", f"{live.url}/v1/functions/web"):
            code = f"async function onRequest() {{ await fetch('{url}', {{method: 'POST'}}) }}"
            body = {"name": "loop", "kind": "source", "language": "javascript", "code": code}
            refused = api.post("/functions", json=body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"][0]["field"] == "code"

        # AC-111: the 25th is made, the 26th refused.
        fine = {"name": "f24", "kind": "destination", "language": "python", "code": "x = 1"}
        assert api.post("/functions", json=fine).status_code == 201
        over = api.post("/functions", json={**fine, "name": "f25"})
        assert over.status_code == 409, over.text
        assert "25" in over.json()["errors"][0]["message"]

        event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}}
        ran = api.post("/functions/enrich/test", json={"event": event})
        assert ran.status_code == 200, ran.text
        assert ran.json()["data"]["output"]["properties"] == {"message": "Enriched"}
    finally:
        live.stop()
    assert live.process is None  # it stopped, test runner's sandbox and all, within 30 s
