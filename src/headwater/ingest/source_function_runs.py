"""The worker's side of source functions: run each stored webhook request through its
source's deployed function and keep what the code emitted (§11.2).

``Segment.identify/track/group/page/screen/alias`` become the source's events through the
internal append path (``ingest/internal.py``: the Spec's normalisation, the 32 KB limit,
dedup), so they reach the debugger, destinations and warehouses like any event the source
sent; ``Segment.set`` objects go to the warehouses only (``functions/objects.py``). What a
failed invocation emitted is not kept: a retry runs the whole request again, so keeping the
first attempt's calls would send them twice.

``RetryError`` and timeouts come back per ``functions/requests.py`` (six attempts, then
dropped and shown in the function's Errors tab); any other error is recorded at once. A
successful run is recorded only when it wrote console lines (the 100 entries a function keeps
are for what someone needs to read).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from headwater.clock import Clock
from headwater.errors import InputError
from headwater.functions.contract import (
    CRASHED,
    OTHER_ERROR,
    REQUEST_HANDLER,
    TIMEOUT,
    IncomingRequest,
    Invocation,
    verdict,
)
from headwater.functions.logs import FunctionLogs
from headwater.functions.objects import FunctionObjects, check_set
from headwater.functions.requests import (
    MAX_ATTEMPTS,
    FunctionRequests,
    StoredRequest,
    first_gap,
    retry_gap,
)
from headwater.functions.sandbox import Runtime
from headwater.functions.store import Attached, FunctionStore
from headwater.functions.usage import FunctionUsage, Tally
from headwater.ingest.internal import InternalAppend
from headwater.ingest.normalize import MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

TOO_LARGE: Final = (
    "failed calling Tracking API: the message is too large and over the maximum 32KB limit"
)
EVENT_TYPES: Final = frozenset({"identify", "track", "group", "page", "screen", "alias"})
CONCURRENCY: Final = 4  # requests run at once by one worker
BATCH: Final = 20  # claimed at once: run within the claim (20 / 4 × 5 s < CLAIM_SECONDS)
_encode = msgspec.json.Encoder(order="sorted")
_decode = msgspec.json.Decoder()


class SourceFunctionRuns:
    def __init__(
        self,
        requests: FunctionRequests,
        functions: FunctionStore,
        logs: FunctionLogs,
        runtime: Runtime,
        appender: InternalAppend,
        objects: FunctionObjects,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        usage: FunctionUsage | None = None,
    ) -> None:
        self._requests = requests
        self._functions = functions
        self._logs = logs
        self._runtime = runtime
        self._appender = appender
        self._objects = objects
        self._clock = clock
        self._rng = rng or random.Random()
        self._usage = usage

    async def run_due(self) -> int:
        """Run every request due now; return how many ran. Their invocations (retries
        included) are added to the functions' usage in one write."""
        due = await asyncio.to_thread(self._requests.claim, self._clock(), BATCH)
        gate = asyncio.Semaphore(CONCURRENCY)
        spent: dict[str, Tally] = {}

        async def one(stored: StoredRequest) -> None:
            async with gate:
                try:
                    await self._run(stored, spent)
                except Exception as exc:
                    # Headwater's failure, not the code's: an attempt like a crashed process's,
                    # so a request that always breaks something is dropped in the end.
                    logger.exception("source function request %d failed to run", stored.id)
                    await asyncio.to_thread(self._broken, stored, exc)

        await asyncio.gather(*(one(stored) for stored in due))
        if spent and self._usage is not None:
            try:
                await asyncio.to_thread(self._usage.add, spent)
            except Exception:  # usage is for people; the requests ran
                logger.exception("source functions: could not count their usage")
        return len(due)

    async def _run(self, stored: StoredRequest, spent: dict[str, Tally]) -> None:
        try:
            attached = await asyncio.to_thread(self._functions.source_function, stored.source_id)
        except InputError:
            attached = None  # the source was deleted since
        if attached is None:
            logger.warning(
                "source %s no longer runs a source function; request %d dropped",
                stored.source_id,
                stored.id,
            )
            await asyncio.to_thread(self._requests.done, stored.id)
            return
        function = attached.function
        code = await asyncio.to_thread(self._functions.deployed, function.id)
        request = incoming(stored.request)
        if code is None:
            failed = Invocation(error=OTHER_ERROR, message="The function has no deployed version.")
            await self._record(attached, 0, stored, failed, request)
            await asyncio.to_thread(self._requests.done, stored.id)
            return
        try:
            invocation = await self._runtime.invoke(
                code, REQUEST_HANDLER, request, attached.settings
            )
            spent.setdefault(function.id, Tally()).count(invocation)  # not the runtime's failure
        except Exception as exc:  # the runtime itself failed: not the code's fault
            logger.warning("source function %s: the runtime failed: %s", function.name, exc)
            invocation = Invocation(error=CRASHED, message=f"{type(exc).__name__}: {exc}")
        if invocation.ok:
            await asyncio.to_thread(self._keep, stored, invocation)
            if invocation.error is not None or invocation.logs:
                await self._record(attached, code.version, stored, invocation, request)
            await asyncio.to_thread(self._requests.done, stored.id)
            return
        found = verdict(invocation)
        attempts = stored.attempts + 1
        if found is not None and found.retry and attempts < MAX_ATTEMPTS:
            first = stored.first_gap if stored.first_gap is not None else first_gap(self._rng)
            at = self._clock() + retry_gap(first, attempts)
            error = f"{invocation.error}: {invocation.message}"
            await asyncio.to_thread(
                self._requests.retry_at,
                stored.id,
                attempts=attempts,
                at=at,
                first_gap=first,
                error=error,
            )
            return
        if found is not None and found.retry:
            invocation.message = (
                f"{invocation.message} (dropped after {attempts} attempts)"
                if invocation.error != TIMEOUT
                else f"The function timed out (dropped after {attempts} attempts)"
            )
        await self._record(attached, code.version, stored, invocation, request)
        await asyncio.to_thread(self._requests.done, stored.id)

    def _broken(self, stored: StoredRequest, exc: Exception) -> None:
        attempts = stored.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            self._requests.done(stored.id)
            return
        first = stored.first_gap if stored.first_gap is not None else first_gap(self._rng)
        self._requests.retry_at(
            stored.id,
            attempts=attempts,
            at=self._clock() + retry_gap(first, attempts),
            first_gap=first,
            error=f"{CRASHED}: {type(exc).__name__}: {exc}",
        )

    def _keep(self, stored: StoredRequest, invocation: Invocation) -> None:
        """Append the emitted events, keep the objects; a call Segment would refuse becomes
        the invocation's error (the other calls are kept)."""
        problems: list[str] = []
        objects: list[Mapping[str, Any]] = []
        for call in invocation.emitted:
            kind = call.get("type")
            if kind == "set":
                why = check_set(call)
                if why is None:
                    objects.append(call)
                else:
                    problems.append(why)
                continue
            if kind not in EVENT_TYPES:
                problems.append(f"Segment.{kind} is not a Segment call")
                continue
            message = {k: v for k, v in call.items() if k not in ("writeKey",)}
            if len(_encode.encode(message)) > MAX_MESSAGE_BYTES:
                problems.append(TOO_LARGE)
                continue
            try:
                self._appender.append(stored.workspace_id, stored.source_id, [message])
            except InputError as exc:
                problems.append(f"failed calling Tracking API: {exc}")
        self._objects.add(stored.source_id, objects, self._clock())
        if problems:
            invocation.error = OTHER_ERROR
            invocation.message = "; ".join(problems)

    async def _record(
        self,
        attached: Attached,
        version: int,
        stored: StoredRequest,
        invocation: Invocation,
        request: IncomingRequest,
    ) -> None:
        secrets = [
            value
            for name, value in attached.settings.items()
            if name in attached.function.secrets and isinstance(value, str)
        ]
        with contextlib.suppress(InputError):  # a function deleted meanwhile: nowhere to show
            await asyncio.to_thread(
                self._logs.record,
                attached.function.id,
                version,
                stored.source_id,
                invocation,
                request,
                secrets=secrets,
            )


def incoming(request: Mapping[str, Any]) -> IncomingRequest:
    """A stored request as ``onRequest`` gets it: a JSON body with its fields alphabetized, as
    Segment gives deployed functions; a form body as sent."""
    if "body_base64" in request:
        body = base64.b64decode(request["body_base64"])
    else:
        body = str(request.get("body", "")).encode("utf-8")
    headers: Sequence[Sequence[str]] = request.get("headers", [])
    media = ""
    for name, value in headers:
        if name.lower() == "content-type":
            media = value.split(";")[0].strip().lower()
    if media == "application/json":
        # A body that is not JSON (or no JSON encoder takes back: a lone surrogate, nesting
        # past the decoder's depth) goes as sent: the code's request.json() says what is wrong.
        with contextlib.suppress(msgspec.MsgspecError, RecursionError, ValueError):
            body = _encode.encode(_decode.decode(body))
    return IncomingRequest(
        method=str(request.get("method", "POST")),
        url=str(request.get("url", "")),
        headers=tuple((str(k), str(v)) for k, v in headers),
        body=body,
    )
