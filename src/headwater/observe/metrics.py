"""Prometheus metrics (served at ``/metrics``).

Label children are bound once, because ``.labels()`` on the hot path costs about a microsecond
per call; only discard codes, which are rare, are looked up per use.

Under ``headwater serve``'s supervisor each role process counts into files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the variable
is set before the first import), and ``render`` adds up every process's files, those of dead
processes included, so counters never go back when a child is restarted.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "headwater_requests",
            "Tracking API requests by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.received = Counter(
            "headwater_events_received",
            "Messages received by the Tracking API.",
            registry=self.registry,
        )
        self.accepted = Counter(
            "headwater_events_accepted",
            "Messages through the stage chain into the processed stream (duplicates excluded).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "headwater_events_rejected",
            "Messages acknowledged but dropped, by Segment discard code.",
            ["code"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "headwater_events_duplicate",
            "Messages the dedup stage dropped as duplicates of an earlier messageId.",
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "headwater_log_commit_seconds",
            "Duration of one group commit to the event log.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "headwater_log_consumer_lag",
            "Processed stream records (one or more requests' events each) not yet committed "
            "by a consumer group.",
            ["group"],
            registry=self.registry,
            # Set by whichever ingest process serves /metrics, just before it renders, from
            # the database: the most recent reading is the true one, while another process's
            # older reading is stale ("max" would keep a drained lag high); "live" drops the
            # reading of a process that died.
            multiprocess_mode="livemostrecent",
        )
        self.stage_lag_seconds = Gauge(
            "headwater_stage_lag_seconds",
            "Age of the oldest ingest log record the stage chain has not yet processed.",
            registry=self.registry,
            multiprocess_mode="livemostrecent",  # as the consumer lag: read just before render
        )
        self._status = {s: self.requests.labels(str(s)) for s in (200, 400, 401, 429, 503)}

    def request(self, status: int) -> None:
        child = self._status.get(status)
        if child is None:
            child = self._status[status] = self.requests.labels(str(status))
        child.inc()

    def render(self) -> bytes:
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return generate_latest(self.registry)
        every_process = CollectorRegistry()
        MultiProcessCollector(every_process, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(every_process)
