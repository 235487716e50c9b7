"""The audit trail through a running server (A-AUD-1): ``serve --config`` and ``headwater
apply`` record their changes, a change through the REST API is recorded with its actor,
``headwater audit`` prints the trail, and audit forwarding sends each audit event into a source
as Segment's ``Audit`` Track call, through that source's destination filters to a webhook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer, run_headwater
from tests.support.receiver import Receiver

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def config(receiver: Receiver) -> str:
    return f"""workspace: test
sources:
  - name: web
    write_key: WK_web
  - name: audit
    write_key: WK_audit
destinations:
  - name: audit-hook
    type: webhook
    source: audit
    settings: {{url: "{receiver.url}/audit"}}
    filters:
      - title: Not deletions
        if: "properties.type = 'Source Deleted'"
        actions: [{{type: DROP}}]
"""


def test_changes_are_recorded_printed_and_forwarded(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text(config(receiver))
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="single")
    try:
        live.start(timeout=120)
        api = httpx.Client(base_url=f"{live.url}/api/v1", headers=ADMIN, timeout=30)
        started = api.get("/audit-events", params={"actor": "headwater serve --config"})
        created = {e["resourceName"] for e in started.json()["data"]["auditEvents"]}
        assert {"web", "audit", "audit-hook"} <= created

        on = api.put("/audit-forwarding", json={"enabled": True, "sourceId": "audit"})
        assert on.status_code == 200, on.text
        assert api.post("/sources", json={"name": "ios"}).status_code == 201
        assert api.delete("/sources/ios").status_code in (200, 204)

        # Turning forwarding on and the creation arrive in Segment's forwarded shape; the
        # deletion is dropped by the audit source's filter, as any event of that source would be.
        arrived = {r.json()["properties"]["type"]: r.json() for r in receiver.wait_for(2, 60)}
        assert set(arrived) == {"Audit Forwarding Modified", "Source Created"}
        sent = arrived["Source Created"]
        assert sent["type"] == "track" and sent["event"] == "Audit"
        assert sent["userId"] == "__system__"  # the admin token, as Segment's system actor
        assert sent["properties"]["type"] == "Source Created"
        assert sent["properties"]["details"]["target"] == "ios"
        assert sent["properties"]["details"]["resource_type"] == "source"
        trail = api.get("/audit-events").json()["data"]["auditEvents"]
        assert [e["type"] for e in trail[:3]] == [
            "Source Deleted",
            "Source Created",
            "Audit Forwarding Modified",
        ]

        printed = subprocess.run(
            [sys.executable, "-m", "headwater", "audit", "--url", live.url, "--limit", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN},
        )
        assert printed.returncode == 0, printed.stderr
        lines = printed.stdout.splitlines()
        assert len(lines) == 3 and "Source Deleted" in lines[0] and "ios" in lines[0]
    finally:
        live.stop()
    assert len(receiver.requests) == 2, [r.json()["properties"] for r in receiver.requests]


def test_apply_records_its_changes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = tmp_path / "headwater.yaml"
    path.write_text("workspace: test\nsources:\n  - name: web\n    write_key: WK_web\n")
    assert run_headwater("apply", str(path), data_dir=data).returncode == 0
    path.write_text(
        "workspace: test\nsources:\n  - name: web\n    write_key: WK_web\n    enabled: false\n"
    )
    applied = run_headwater("apply", str(path), data_dir=data)
    assert applied.returncode == 0, applied.stderr

    from headwater.audit.trail import AuditTrail, Query
    from headwater.store.database import database_url, open_engine

    engine = open_engine(database_url(data, None))
    try:
        found = AuditTrail(engine).page(Query(), count=10).items
    finally:
        engine.dispose()
    assert [(r.event.type, r.actor.id) for r in found] == [
        ("Source Disabled", "headwater apply"),
        ("Source Created", "headwater apply"),
        ("Workspace Created", "headwater apply"),
    ]
