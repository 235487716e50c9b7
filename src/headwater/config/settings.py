"""Server settings: where data lives and how the roles behave.

These come from the command line and the ``server:`` part of ``headwater.yaml``; they are not
part of the workspace model (sources, destinations), which lives in the state database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headwater.store.database import Durability


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path = Path("data")
    database: str | None = None  # None: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8088
    # The URL browsers and SDKs use to reach this server; the analytics.js settings document
    # points apiHost at it. None: http://{host}:{port}.
    public_url: str | None = None
    durability: Durability = "normal"
    archive_retention_days: int = 90
    dedup_window_hours: int = 48
    # AC-021: a per-workspace ingest rate limit in events/second; None means off.
    rate_limit_events_per_second: int | None = None
    # The Profile API's rate limit per space (Segment: 100 requests/s, then 429).
    profile_api_requests_per_second: int = 100
    # Slow clients: a request's headers, then its body, must arrive within these; None for
    # max_connections derives the cap from the open-file limit (headwater.connections).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    max_connections: int | None = None
    # Outgoing destination requests: URL prefix -> URL prefix (headwater.destinations.redirects)
    request_redirects: dict[str, str] = field(default_factory=dict)
    # Hosts a function's fetch may call: "api.example.com", "*.stripe.com", "*". Loopback,
    # private and link-local addresses only when listed by exact name
    # (headwater.functions.sandbox.fetch)
    functions_fetch_allow: list[str] = field(default_factory=lambda: ["*"])
    # Node.js processes of the actions runtime (Segment's Actions destinations); None: one per
    # CPU, at most two (headwater.destinations.runtime.pool)
    actions_processes: int | None = None
    # Functions a workspace may have (§11.1: Segment's default is 25; AC-111).
    functions_limit: int = 25
    # Roles this process runs; `serve` runs them all.
    run_ingest: bool = True
    run_consumers: bool = True

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"
