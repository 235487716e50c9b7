"""Running a function's code in isolated processes.

``Runtime`` is all the rest of Headwater calls: ``invoke`` runs one handler of one saved
version on one payload, ``invoke_many`` runs several calls of one version in one round trip
(insert functions' throughput). A runtime starts its sandbox processes on first use, keeps them
warm per version, and enforces the deadline and memory cap itself: the code cannot outlive
them. The processes speak JSON lines over stdin/stdout (``docs/functions.md``, "The sandbox
protocol"); their only way out is the host's ``fetch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from headwater.functions.contract import Code, Invocation

DEFAULT_TIMEOUT_SECONDS = 5.0  # §11.1: per invocation


class Runtime(Protocol):
    async def invoke(
        self,
        code: Code,
        handler: str,
        payload: Any,
        settings: Mapping[str, Any],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        fresh_cache: bool = False,
    ) -> Invocation:
        """Run ``handler`` (Segment's name: ``onTrack``) of ``code`` on ``payload`` (an event,
        a list of events for ``onBatch``, an ``IncomingRequest`` for ``onRequest``).
        ``fresh_cache``: the test runner's empty ``cache``."""
        ...

    async def invoke_many(
        self,
        code: Code,
        calls: Sequence[tuple[str, Any]],
        settings: Mapping[str, Any],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> list[Invocation]:
        """``invoke`` for each (handler, payload), in one round trip; each has its own
        deadline and its own answer, in order."""
        ...

    async def forget(self, function: str) -> None:
        """Stop the processes of every version of ``function`` (deleted or redeployed)."""
        ...

    async def close(self) -> None: ...
