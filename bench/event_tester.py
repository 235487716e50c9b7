"""The Event Tester's round trip: ``POST /api/v1/destinations/{name}/tester`` on a live server.

    python bench/event_tester.py [--calls 200]

``headwater serve`` (its api process answers the tester) with a Webhooks destination and a
Customer.io (``actions:customerio``, Segment's code in the actions runtime) whose URL
``server.request_redirects`` sends to bench/noop_app.py. Each call sends one event and waits
for the answer; the figures are the milliseconds of the calls, sequential, after the first
(which for Customer.io includes starting the Node process, reported apart).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from processes import free_port, start_noop, wait_ready  # noqa: E402

TOKEN = "bench-admin-token"
SERVE = [sys.executable, "-m", "headwater", "serve"]
CONFIG = """workspace: bench
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{url}/hook"}}
  - name: cio
    type: actions:customerio
    source: web
    settings: {{siteId: site, apiKey: key}}
    mappings:
      - name: Track Event
        enabled: true
        trigger: type = "track"
        action: trackEvent
        fields:
          id: {{"@path": "$.userId"}}
          name: {{"@path": "$.event"}}
          enable_batching: false
server:
  request_redirects: {{"https://track.customer.io": "{url}"}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    noop, noop_url = start_noop(None)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "headwater.yaml"
        config.write_text(CONFIG.format(url=noop_url))
        port = free_port()
        env = {
            # the Actions package as the tests share it (scripts/test.sh installs it there)
            "HEADWATER_ACTIONS_DIR": str(ROOT / ".cache" / "actions"),
            **os.environ,
            "HEADWATER_ADMIN_TOKEN": TOKEN,
        }
        server = subprocess.Popen(
            [*SERVE, "--config", str(config), "--data-dir", f"{tmp}/data", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/ready", "headwater serve", timeout=60)
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as http:
                for name in ("hook", "cio"):
                    times = []
                    for n in range(args.calls + 1):
                        event = {"type": "track", "event": "Bench", "userId": f"u{n}"}
                        started = time.perf_counter()
                        answer = http.post(
                            f"/api/v1/destinations/{name}/tester", json={"event": event}
                        )
                        times.append((time.perf_counter() - started) * 1000)
                        assert answer.json()["data"]["delivered"], answer.text
                    rest = sorted(times[1:])
                    p95 = rest[int(len(rest) * 0.95) - 1]
                    print(
                        f"{name}: first call {times[0]:.1f} ms; next {args.calls}: median "
                        f"{statistics.median(rest):.1f} ms, p95 {p95:.1f} ms"
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)
            noop.terminate()
            noop.wait(timeout=10)


if __name__ == "__main__":
    main()
