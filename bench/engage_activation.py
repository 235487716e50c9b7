"""Activation latency: from the qualifying event to ``Audience Entered`` at the destination.

    python bench/engage_activation.py [--users 300] [--rate 20] [--database URL]

Starts ``headwater serve`` (every role, default settings, SQLite unless ``--database``) with
the issue's configuration: a space, an audience ``event('Order Completed').within(30 days)
.count() >= 1`` connected to a webhook on the space's Engage source, and a loopback receiver
behind the webhook. Sends one ``Order Completed`` per new user at ``--rate`` a second through
the Tracking API and times each user's ``Audience Entered`` from the moment its event was
acknowledged (HTTP 200) to the moment the receiver read the request. The path is the whole
pipeline twice: ingest, stage chain, identity resolution with Engage, the outbox, ingest again
(Engage's source), stage chain, router, delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Arrivals:
    """A loopback webhook receiver: when each user's ``Audience Entered`` arrived."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                self.send_response(200)
                self.end_headers()
                try:
                    message: dict[str, Any] = json.loads(body)
                except ValueError:
                    return
                if message.get("event") == "Audience Entered":
                    with arrivals.lock:
                        arrivals.at.setdefault(str(message.get("userId")), now)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


CONFIG = """\
workspace: bench
sources:
  - name: web
    write_key: WK_web
spaces:
  - name: main
    sources: [web]
audiences:
  - space: main
    name: Order Completed Last 30days
    definition: "event('Order Completed').within(30 days).count() >= 1"
    destinations:
      - {{name: engage-hook, send_track: true, send_identify: false}}
destinations:
  - name: engage-hook
    type: webhook
    source: main-engage
    settings: {{url: "{url}/engage"}}
"""


def actions_dir() -> dict[str, str]:
    """The Actions package the tests install (``scripts/test.sh``), so serving does not
    install it again into the bench's throw-away data directory."""
    cached = ROOT / ".cache" / "actions"
    if "HEADWATER_ACTIONS_DIR" in os.environ or not cached.is_dir():
        return {}
    return {"HEADWATER_ACTIONS_DIR": str(cached)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="qualifying events a second")
    parser.add_argument("--database", default=None, help="postgresql://… (default: SQLite)")
    args = parser.parse_args()

    arrivals = Arrivals()
    with tempfile.TemporaryDirectory(prefix="headwater-bench-activation-") as tmp:
        config = Path(tmp) / "headwater.yaml"
        config.write_text(CONFIG.format(url=arrivals.url))
        port = free_port()
        command = [
            sys.executable, "-m", "headwater", "serve", "--config", str(config),
            "--data-dir", str(Path(tmp) / "data"), "--port", str(port),
        ]  # fmt: skip
        if args.database:
            command += ["--database", args.database]
        log = (Path(tmp) / "server.log").open("wb")
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HEADWATER_ADMIN_TOKEN": TOKEN, **actions_dir()},
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            print("starting headwater serve …", file=sys.stderr)
            deadline = time.monotonic() + 300  # a first start may install the Actions package
            while True:
                try:
                    if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    log.flush()
                    tail = (Path(tmp) / "server.log").read_text()[-3000:]
                    raise SystemExit(f"the server did not start:\n{tail}")
                time.sleep(0.1)
            time.sleep(2)  # the worker's consumers and Engage's drain are running
            sent: dict[str, float] = {}
            with httpx.Client(base_url=base, auth=("WK_web", "")) as client:
                start = time.monotonic()
                for n in range(args.users):
                    wake = start + n / args.rate
                    time.sleep(max(0.0, wake - time.monotonic()))
                    user = f"bench-{n}"
                    answer = client.post(
                        "/v1/track",
                        json={"userId": user, "event": "Order Completed"},
                    )
                    answer.raise_for_status()
                    sent[user] = time.monotonic()
                    if n and n % 100 == 0:
                        print(f"  sent {n:,} of {args.users:,}", file=sys.stderr)
            deadline = time.monotonic() + 60
            while len(arrivals.at) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    latencies = sorted(arrivals.at[u] - t for u, t in sent.items() if u in arrivals.at)
    missing = len(sent) - len(latencies)
    if not latencies:
        raise SystemExit("no Audience Entered arrived")

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    store = "PostgreSQL" if args.database else "SQLite"
    print(
        f"activation ({store}, {args.rate:g} qualifying events/s, {len(sent)} users): "
        f"p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, p99 {pct(0.99):.2f} s, "
        f"max {latencies[-1]:.2f} s, mean {statistics.mean(latencies):.2f} s"
        + (f"; {missing} never arrived" if missing else "")
    )


if __name__ == "__main__":
    main()
