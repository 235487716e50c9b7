"""Screenshots of the web app's main pages, for the README: `docs/screenshots/*.png`.

Starts a Headwater server on a private data directory with a small demo workspace, sends it a
few events, signs in with the admin token in headless Chromium (Debian's, as the tests use) and
saves each page at a laptop's size. Not a test: run it after changing a page.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

TOKEN = "screenshots-admin-token"
WRITE_KEY = "WK_screenshots_website"
CONFIG = f"""workspace: Acme
sources:
  - name: Website
    write_key: {WRITE_KEY}
    tracking_plan: Website plan
  - name: iOS app
destinations:
  - name: Order webhook
    type: webhook
    source: Website
    settings: {{url: "http://127.0.0.1:9/orders"}}
tracking_plans:
  - name: Website plan
    rules:
      - type: TRACK
        key: Order Completed
        version: 1
        json_schema:
          type: object
          properties:
            properties:
              type: object
              required: [order_id]
              properties: {{order_id: {{type: string}}, revenue: {{type: number}}}}
spaces:
  - name: Customers
    sources: [Website]
"""
# (file name, path: {source} is the Website source's id)
PAGES = [
    ("home", "/"),
    ("sources", "/sources"),
    ("source", "/sources/{source}"),
    ("debugger", "/sources/{source}/debugger"),
    ("destinations", "/destinations"),
    ("catalog", "/destinations/catalog"),
    ("warehouses", "/warehouses"),
    ("protocols", "/protocols"),
    ("unify", "/unify"),
    ("engage", "/engage"),
    ("privacy", "/privacy"),
    ("functions", "/functions"),
    ("settings", "/settings"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit(
            "screenshots: no chromium on PATH; install Debian's (apt-get install chromium)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="headwater-screenshots-") as root:
        config = Path(root) / "headwater.yaml"
        config.write_text(CONFIG)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        print(f"==> starting headwater on {url}", flush=True)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "headwater",
                "serve",
                "--config",
                str(config),
                "--data-dir",
                str(Path(root) / "data"),
                "--port",
                str(port),
                "--role",
                "single",
            ],
            env={**os.environ, "HEADWATER_ADMIN_TOKEN": TOKEN},
        )
        try:
            _wait_ready(url, server)
            _send_events(url)
            source = _source_id(url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                _sign_in(page, url)
                for name, path in PAGES:
                    answer = page.goto(url + path.format(source=source))
                    if answer is None or answer.status != 200:
                        print(f"    skipped {path}: {answer.status if answer else 'no answer'}")
                        continue
                    page.screenshot(path=args.out / f"{name}.png", full_page=False)
                    print(f"    {args.out / (name + '.png')}", flush=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 900  # a first start may install the actions (minutes)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                "screenshots: the server stopped; run `headwater serve` by hand to see why"
            )
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("screenshots: the server was not ready in 15 minutes")


def _send_events(url: str) -> None:
    batch = (
        [
            {"type": "identify", "userId": f"user-{n}", "traits": {"email": f"user{n}@example.com"}}
            for n in range(5)
        ]
        + [
            {
                "type": "track",
                "userId": f"user-{n % 5}",
                "event": event,
                "properties": {"order_id": f"o-{n}", "revenue": 20 + n} if n % 3 else {},
            }
            for n, event in enumerate(["Product Viewed", "Order Completed"] * 10)
        ]
        + [{"type": "page", "anonymousId": "anon-1", "name": "Pricing"}]
    )
    answer = httpx.post(url + "/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=10)
    answer.raise_for_status()
    time.sleep(3)  # the pipeline and the counters catch up


def _source_id(url: str) -> str:
    answer = httpx.get(
        url + "/api/v1/sources/Website", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    source_id: str = answer.json()["data"]["source"]["id"]
    return source_id


def _sign_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_text("Sign in with a token").click()
    page.get_by_label("Admin or API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in with the token").click()
    page.wait_for_url(url + "/")


if __name__ == "__main__":
    raise SystemExit(main())
