"""Deletion in the event log: not a rewrite but a wait for retention (``Target("internal",
"log")``).

The ingest log (segment files, or ``ingest_*`` tables) and the processed stream (``log_*``
tables) keep a record only until every reader has passed it (spec §10.3: stores that expire
on their own are not scanned), so a deletion waits until nothing appended before the
regulation is left in either: it reports ``Progress`` until then. The newest segment file is
never dropped by retention, so while it holds older records the eraser asks for a seal, and
the next append starts a new segment. The dedup stage's runs hold only 63-bit hashes of
``(workspace, messageId)``, nothing of the subject, and are left to their own window.
"""

from __future__ import annotations

import math

from headwater.privacy.erasure import Erasure, Progress, Target
from headwater.store.ingest_log import IngestLog
from headwater.store.log import EventLog

RETRY_SECONDS = 60.0


class LogEraser:
    def __init__(self, ingest_log: IngestLog, processed: EventLog) -> None:
        self._ingest = ingest_log
        self._processed = processed

    @property
    def target(self) -> Target:
        return Target("internal", "log", "Event log")

    def erase(self, erasure: Erasure) -> Progress | None:
        # Times are whole seconds: a record of the regulation's own second may predate it.
        before = math.floor(erasure.created_at)
        waiting = []
        oldest = self._ingest.oldest_appended_at()
        if oldest is not None and oldest <= before:
            self._ingest.request_seal(before)
            waiting.append("the ingest log")
        oldest = self._processed.oldest_appended_at()
        if oldest is not None and oldest <= before:
            waiting.append("the processed stream")
        if waiting:
            return Progress(
                f"waiting for {' and '.join(waiting)} to expire what arrived before the deletion",
                RETRY_SECONDS,
            )
        return None
