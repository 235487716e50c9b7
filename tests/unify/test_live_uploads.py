"""A real ``headwater serve`` takes a profiles CSV from ``headwater profiles upload`` (a separate
process) and appends its rows to the ingest log as Identify calls from the space's upload
source (A-UE-61); ``headwater insights`` answers from the same server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live import ADMIN_TOKEN, BASE_CONFIG, LiveServer, serving

pytestmark = pytest.mark.live

CONFIG = BASE_CONFIG + "spaces:\n  - name: main\n    sources: [web]\n"


def headwater(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args, "--url", live.url],
        capture_output=True,
        text=True,
        env={**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN},
        timeout=60,
    )


def test_a_ue_61_upload_through_a_live_server(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("user_id,email,plan\nu1,a@x.com,pro\nu2,,free\n")
    with serving(tmp_path, CONFIG) as live:
        template = headwater(live, "profiles", "template", "main")
        assert template.returncode == 0, template.stderr
        assert template.stdout.startswith("user_id,email,")
        done = headwater(live, "profiles", "upload", "main", str(people))
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1] == "  2/2 rows sent: done"
        refused = headwater(live, "profiles", "upload", "main", str(tmp_path / "headwater.yaml"))
        assert refused.returncode == 1
        assert "415: You can upload only .csv files." in refused.stderr
        insights = headwater(live, "insights", "main")
        assert insights.returncode == 0, insights.stderr
        assert insights.stdout == "main: 0 records\n"  # nothing resolves them in this server yet
        identifies = [e for e in live.events() if e["type"] == "identify"]
        records = live.records()
    assert [(e["userId"], e["traits"]) for e in identifies] == [
        ("u1", {"email": "a@x.com", "plan": "pro"}),
        ("u2", {"plan": "free"}),
    ]
    sources = {r["source_id"] for r in records if r["events"]}
    assert len(sources) == 1
