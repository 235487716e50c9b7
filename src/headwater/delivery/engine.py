"""The delivery engine: workers that take jobs from the queues and call destinations.

Each destination instance is a lane of its own: its own HTTP connection pool, its own
concurrency and rate limit, its own circuit breaker, and at most one claim in flight per
process. A destination that hangs or fails only ever occupies its own lane, so the others keep
their latency (principle 3). A claim is rendered by the destination's module, sent, judged by
the destination's answers, and settled in one transaction: delivered and discarded jobs leave
the queue, retryable failures come back after a randomized exponential backoff (or the
destination's Retry-After) until the retry window has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import importlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import uvloop
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.delivery import functions, retry
from headwater.delivery.queue import DeliveryQueue, Job, Settlement
from headwater.delivery.redaction import Redactor
from headwater.destinations.actions import secret_values
from headwater.destinations.definition import (
    OAUTH_SETTING,
    DestinationDefinition,
    Outgoing,
    Rendered,
    Request,
    Response,
)
from headwater.destinations.engage_limits import engage_rate
from headwater.destinations.functions import has_handler
from headwater.destinations.redirects import Redirects
from headwater.destinations.store import DestinationCache, DestinationInfo
from headwater.errors import Rejection
from headwater.functions.contract import BATCH_HANDLER
from headwater.functions.contract import verdict as verdict_of
from headwater.functions.sandbox import Runtime
from headwater.store.counters import CounterKey

if TYPE_CHECKING:
    from headwater.destinations.runtime.pool import ActionsRuntime

logger = logging.getLogger(__name__)

# Counter steps of Event Delivery (Delivery Overview's last stages).
DELIVERED = "delivered"
FAILED_DELIVERY = "failed_delivery"  # reason: errors.discarded.<code> or errors.expired.<code>
RETRY = "retry"  # an attempt failed and will be retried; reason errors.awaiting-retry.<code>
REPLAYED = "replayed"  # delivered by a replay: not part of Event Delivery's figures

LEASE_SECONDS = 120.0
UNBATCHED_CLAIM = 400  # jobs per claim for destinations that take one message a request
MAX_FUNCTION_BATCH = 400  # §11.3: an onBatch handler's batches, at most
SANDBOX_RUNTIME = "headwater.functions.sandbox.runtime"  # the functions' sandbox, when used
BREAKER_AFTER = 3  # consecutive all-failed claims before the lane pauses
BREAKER_MAX_PAUSE = 60.0

_decode = msgspec.json.Decoder().decode


class FunctionFailed(Exception):
    """A destination function's handler failed outside delivery (its verdict's code, §11.5)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass
class _Lane:
    """Per-destination state inside one process."""

    destination_id: str
    client: aiohttp.ClientSession
    busy: bool = False
    failures: int = 0  # consecutive claims where nothing was delivered
    paused_until: float = 0.0
    tokens: float = 0.0
    tokens_at: float = field(default_factory=time.monotonic)


@dataclass
class _Claim:
    """One claim of a lane's jobs while it is being sent, and what became of each job."""

    destination: DestinationInfo
    definition: DestinationDefinition
    lane: _Lane
    jobs: Sequence[Job]
    messages: list[dict[str, Any]] = field(init=False)
    gate: asyncio.Semaphore = field(init=False)  # the instance's requests in flight
    # verdicts[i]: every request that carried message i, judged; carried[i]: those requests
    verdicts: list[list[retry.Verdict]] = field(init=False)
    carried: list[list[tuple[Request, _Result]]] = field(init=False)
    details: dict[int, str] = field(default_factory=dict)  # why a message was not sent
    filtered: set[int] = field(default_factory=set)  # dropped by the insert function
    # What a function did with a message (Event Delivery's sample): error, console, requests.
    function_samples: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.messages = [_decode(job.message) for job in self.jobs]
        concurrency = self.destination.delivery.concurrency or self.definition.concurrency
        self.gate = asyncio.Semaphore(concurrency)
        self.verdicts = [[] for _ in self.jobs]
        self.carried = [[] for _ in self.jobs]

    def verdict(self, position: int) -> retry.Verdict:
        """The worst of a job's requests; delivered when the renderer sent it nowhere (there
        was nothing to deliver)."""
        if not self.verdicts[position]:
            self.verdicts[position].append(retry.Verdict(True, False, "200"))
        return retry.worst(self.verdicts[position])


@dataclass(frozen=True)
class _Result:
    """The destination's answer to one request: a response, or the connection error's code."""

    response: Response | None
    error: str | None = None

    @property
    def code(self) -> str:
        return str(self.response.status) if self.response is not None else str(self.error)


@dataclass(frozen=True)
class Tried:
    """What the Event Tester's message did through one mapping ("" without Actions): the
    verdict, why it was not sent (if so), and every request made with its answer, redacted."""

    mapping_id: str
    verdict: retry.Verdict
    detail: str | None
    exchanges: list[dict[str, Any]]


class DeliveryEngine:
    def __init__(
        self,
        engine: Engine,
        destinations: DestinationCache,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        tick_seconds: float = 0.05,
        redirects: Redirects | None = None,
        actions_dir: Path | None = None,
        actions_processes: int = 1,
        engage_sources: Callable[[], Collection[str]] = frozenset,
        functions: functions.FunctionSource | None = None,
        sandbox: functions.RuntimeFactory | None = None,
    ) -> None:
        self._queue = DeliveryQueue(engine, clock)
        self._engage_sources = engage_sources
        self._destinations = destinations
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:delivery"
        self._clock = clock
        self._rng = rng or random.Random()
        self._tick = tick_seconds
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[int]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._redirects = redirects or Redirects()
        self._actions_dir = actions_dir
        self._actions_processes = actions_processes
        self._runtime: ActionsRuntime | None = None
        self._functions = functions
        self._sandbox_factory = sandbox
        self._sandbox: Runtime | None = None

    @property
    def queue(self) -> DeliveryQueue:
        return self._queue

    @property
    def actions_runtime(self) -> ActionsRuntime | None:
        """The Node processes of the package destinations, once one has had work."""
        return self._runtime

    # --- running in the background -------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = uvloop.new_event_loop()
            self._loop = loop
            self._stopping = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self._run())
            finally:
                loop.run_until_complete(self.close())
                loop.close()

        self._thread = threading.Thread(target=run, name="delivery", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)
        self._thread = None

    async def _run(self) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                await self.dispatch()
            except Exception:
                logger.exception("delivery: dispatch failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._tick)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        # Claims still sending (to a destination that hangs) are left unsettled: their lease
        # runs out and a worker sends them again, so cancelling loses nothing.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def dispatch(self) -> None:
        """Start a claim on every lane that is free, not paused and has work due."""
        destinations = await asyncio.to_thread(self._destinations.all)
        for destination in destinations:
            lane = self._lane(destination)
            if lane.busy or lane.paused_until > time.monotonic():
                continue
            lane.busy = True
            task = asyncio.create_task(self._claim_and_free(destination, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim_and_free(self, destination: DestinationInfo, lane: _Lane) -> int:
        """Claim after claim while the lane has a backlog; then give the lane back."""
        total = 0
        try:
            while self._stopping is None or not self._stopping.is_set():
                handled = await self.deliver(destination, wait_for_batch=True)
                total += handled
                if (
                    handled < self._claim_size(destination, destination.definition)
                    or lane.paused_until > time.monotonic()
                ):
                    break
        except Exception:
            logger.exception("delivery to %s failed; will try again", destination.name)
        finally:
            lane.busy = False
        return total

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        """Deliver everything due now, lane by lane, concurrently (for tests and replays)."""
        total = 0
        await asyncio.to_thread(self._destinations.refresh, True)
        for _ in range(max_rounds):
            destinations = await asyncio.to_thread(self._destinations.all)
            done = await asyncio.gather(*(self.deliver(d) for d in destinations))
            total += sum(done)
            if not any(done):
                break
        return total

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.client.close()
        self._lanes.clear()
        if self._runtime is not None:
            await self._runtime.close()
            self._runtime = None
        if self._sandbox is not None:
            await self._sandbox.close()
            self._sandbox = None

    # --- the Event Tester ------------------------------------------------------------------------

    async def test(
        self, destination: DestinationInfo, message: dict[str, Any], mapping_ids: Sequence[str]
    ) -> list[Tried]:
        """Send ``message`` once per mapping (``[""]`` for a destination without Actions)
        straight to the destination, as a claim of the queue would be sent, and say what
        happened to each. Nothing is queued, counted or retried, and the destination's lane
        (its pool, rate tokens and circuit breaker) is left alone: Segment's Event Tester."""
        loop = self._loop
        if self._thread is not None and loop is not None and loop is not asyncio.get_running_loop():
            # The actions runtime's Node processes belong to the delivery thread's loop.
            future = asyncio.run_coroutine_threadsafe(
                self._test(destination, message, mapping_ids), loop
            )
            return await asyncio.wrap_future(future)
        return await self._test(destination, message, mapping_ids)

    async def audience_hook(
        self, destination_id: str, hook: str, payload: Mapping[str, Any]
    ) -> Any:
        """Run a list destination's ``createAudience`` or ``getAudience`` with the instance's
        settings as saved (Engage's list destinations); raises ``HookError`` when it fails."""
        loop = self._loop
        if self._thread is not None and loop is not None and loop is not asyncio.get_running_loop():
            # The actions runtime's Node processes belong to the delivery thread's loop.
            future = asyncio.run_coroutine_threadsafe(
                self._audience_hook(destination_id, hook, payload), loop
            )
            return await asyncio.wrap_future(future)
        return await self._audience_hook(destination_id, hook, payload)

    def hook_from_thread(
        self, destination_id: str, hook: str, payload: Mapping[str, Any], timeout: float = 120.0
    ) -> Any:
        """A definition's hook (``onDelete`` of a regulation) from a thread that has no event
        loop; raises ``HookError`` when it fails. While the engine runs, the hook runs on the
        delivery thread's loop, which owns the actions runtime's processes; otherwise on a loop
        of its own, the runtime closed after."""
        loop = self._loop
        if self._thread is not None and loop is not None:
            future = asyncio.run_coroutine_threadsafe(
                self._audience_hook(destination_id, hook, payload), loop
            )
            return future.result(timeout)

        async def alone() -> Any:
            try:
                return await self._audience_hook(destination_id, hook, payload)
            finally:
                await self.close()

        return asyncio.run(alone())

    async def _audience_hook(
        self, destination_id: str, hook: str, payload: Mapping[str, Any]
    ) -> Any:
        from headwater.delivery import package_actions

        await asyncio.to_thread(self._destinations.refresh, True)
        destination = await asyncio.to_thread(self._destinations.get, destination_id)
        if destination is None:
            raise LookupError(f"no destination has the id {destination_id!r}")
        definition = destination.definition
        if definition.function is not None and hook in definition.hooks:
            return await self._function_hook(destination, hook, payload)
        if hook not in definition.hooks or definition.package_directory is None:
            raise LookupError(f"{definition.type} has no {hook} hook")
        saved = definition.parse_settings(destination.settings).model_dump(
            by_alias=True, exclude_none=True
        )
        settings, auth = package_actions.split_settings(saved)
        return await self._actions_runtime().hook(
            definition.package_directory, hook, settings, payload, auth=auth
        )

    async def _function_hook(
        self, destination: DestinationInfo, hook: str, payload: Mapping[str, Any]
    ) -> Any:
        """A destination function's handler outside delivery (``onDelete`` of a regulation):
        its value, or ``FunctionFailed`` (retried by the caller when the verdict says so)."""
        definition = destination.definition
        assert definition.function is not None
        source = self._functions
        deployed = await asyncio.to_thread(source.deployed, definition.function) if source else None
        if deployed is None:
            raise FunctionFailed(f"{definition.function} has no deployed version", retry=False)
        settings = definition.parse_settings(destination.settings).model_dump(exclude_none=True)
        invocation = await self._sandbox_runtime().invoke(deployed.code, hook, payload, settings)
        found = verdict_of(invocation)
        if found is None:
            return invocation.value
        if source is not None:
            code = deployed.code
            await asyncio.to_thread(
                functools.partial(
                    source.record,
                    code.function,
                    code.version,
                    destination.id,
                    invocation,
                    payload,
                    secrets=_secret_values(destination),
                )
            )
        redactor = _redactor(destination)
        raise FunctionFailed(
            f"{found.code}: {invocation.error}: {redactor.text(invocation.message)}",
            retry=found.retry,
        )

    async def _test(
        self, destination: DestinationInfo, message: dict[str, Any], mapping_ids: Sequence[str]
    ) -> list[Tried]:
        definition = destination.definition
        body = msgspec.json.encode(message)
        now = self._queue.now_ms()
        jobs = [
            Job(
                id=position,
                destination_id=destination.id,
                message_id=str(message.get("messageId", "")),
                message=body,
                received_at_ms=now,
                enqueued_at_ms=now,
                attempts=0,
                first_attempt_at_ms=None,
                replay=False,
                mapping_id=mapping_id,
            )
            for position, mapping_id in enumerate(mapping_ids)
        ]
        timeout = aiohttp.ClientTimeout(total=definition.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            # A lane of its own: the test neither waits for the destination's backlog nor
            # spends its rate tokens.
            claim = _Claim(destination, definition, _Lane(destination.id, client, tokens=1), jobs)
            # Segment's Event Tester does not apply insert functions (§11.4).
            await self._send_claim(claim, insert=False)
        redactor = _redactor(destination)
        return [
            Tried(
                job.mapping_id,
                claim.verdict(position),
                claim.details.get(position),
                [
                    _exchange(request, result, redactor)
                    for request, result in claim.carried[position]
                ],
            )
            for position, job in enumerate(jobs)
        ]

    # --- one claim -----------------------------------------------------------------------------

    async def deliver(self, destination: DestinationInfo, *, wait_for_batch: bool = False) -> int:
        """Claim due jobs of one destination, send them, settle them; the number handled."""
        definition = destination.definition
        lane = self._lane(destination)
        limit = self._claim_size(destination, definition)
        replay_only = not destination.enabled  # a disabled destination only gets replays
        if wait_for_batch and definition.batching is not None:
            count, oldest = await asyncio.to_thread(
                self._queue.due, destination.id, replay_only=replay_only
            )
            if count == 0:
                return 0
            waited = self._queue.now_ms() - (oldest or 0)
            if count < limit and waited < definition.batching.max_wait_seconds * 1000:
                return 0  # let the batch fill up a little longer
        claimed = await asyncio.to_thread(
            self._queue.claim,
            destination.id,
            limit,
            self.owner,
            LEASE_SECONDS,
            replay_only=replay_only,
        )
        if not claimed:
            return 0
        settlement = await self._attempt(destination, definition, lane, claimed)
        await asyncio.to_thread(self._queue.settle, self.owner, settlement)
        return len(claimed)

    def _claim_size(self, destination: DestinationInfo, definition: DestinationDefinition) -> int:
        if definition.function is not None and definition.batching is not None:
            # onBatch: 20 events by default, raisable to 400 with delivery.batch_size (§11.3).
            return min(
                MAX_FUNCTION_BATCH,
                destination.delivery.batch_size or definition.batching.max_events,
            )
        if definition.actions:  # a batching action's batch_size can be larger
            return max(UNBATCHED_CLAIM, destination.compiled_mappings.largest_batch)
        if definition.batching is None:
            return UNBATCHED_CLAIM
        size = definition.batching.max_events
        if destination.delivery.batch_size:
            size = min(size, destination.delivery.batch_size)
        return size

    async def _attempt(
        self,
        destination: DestinationInfo,
        definition: DestinationDefinition,
        lane: _Lane,
        claimed: Sequence[Job],
    ) -> Settlement:
        started = self._queue.now_ms()
        claim = _Claim(destination, definition, lane, claimed)
        messages = claim.messages
        carried, details = claim.carried, claim.details
        sent_any = await self._send_claim(claim)
        redactor = _redactor(destination)

        finished = self._queue.now_ms()
        settlement = Settlement(destination_id=destination.id, started_at_ms=started)
        window_ms = int(destination.delivery.retry_window_hours * 3600 * 1000)
        any_delivered = False
        for position, job in enumerate(claimed):
            key = CounterKey(destination.source_id, destination.id, "", "")
            if position in claim.filtered:
                settlement.done.append(job.id)
                settlement.count(
                    key._replace(
                        step=reasons.FILTERED_AT_DESTINATION,
                        reason=reasons.FILTERED_AT_INSERT_FUNCTION,
                    )
                )
                continue
            verdict = claim.verdict(position)
            sample = None
            if not verdict.delivered:
                sample = _sample(
                    messages[position], carried[position], verdict, redactor, details.get(position)
                )
                if position in claim.function_samples:
                    sample["function"] = claim.function_samples[position]
            if verdict.delivered:
                any_delivered = True
                settlement.done.append(job.id)
                settlement.count(key._replace(step=REPLAYED if job.replay else DELIVERED))
                if not job.replay:
                    settlement.latencies_ms.append(max(0, finished - job.received_at_ms))
            elif not verdict.retry:
                settlement.done.append(job.id)
                settlement.count(
                    key._replace(step=FAILED_DELIVERY, reason=verdict.reason), 1, sample
                )
            else:
                first = job.first_attempt_at_ms or started
                delay = _retry_after(carried[position], self._clock())
                if delay is None:
                    delay = retry.next_delay(job.attempts + 1, self._rng)
                next_at = finished + int(delay * 1000)
                if next_at - first > window_ms:
                    settlement.done.append(job.id)
                    settlement.count(
                        key._replace(step=FAILED_DELIVERY, reason=f"errors.expired.{verdict.code}"),
                        1,
                        sample,
                    )
                else:
                    settlement.retry.append((job, next_at, verdict.code))
                    settlement.count(key._replace(step=RETRY, reason=verdict.reason), 1, sample)
        self._update_breaker(lane, any_delivered or not sent_any)
        return settlement

    async def _send_claim(self, claim: _Claim, *, insert: bool = True) -> bool:
        """Render (or execute) and send a claim's jobs, judging every request into the claim;
        True if any request went out. ``insert``: the instance's insert function runs first."""
        definition = claim.definition
        try:
            settings = definition.parse_settings(claim.destination.settings)
        except ValidationError:
            for position in range(len(claim.jobs)):
                claim.verdicts[position].append(retry.judge(reasons.INVALID_SETTINGS))
                claim.details[position] = "the settings are not valid"
            return False
        insert_function = claim.destination.insert_function_id
        if insert and insert_function:
            return await self._insert_then_send(claim, settings, insert_function)
        return await self._send_rendered(claim, settings)

    async def _send_rendered(self, claim: _Claim, settings: Any) -> bool:
        definition = claim.definition
        if definition.function is not None:
            return await self._run_function(claim, settings)
        if definition.package_directory is not None:
            saved = settings.model_dump(by_alias=True, exclude_none=True)
            return await self._execute(claim, saved)
        return await self._render_and_send(claim, settings)

    async def _render_and_send(self, claim: _Claim, settings: Any) -> bool:
        """A native destination: its module renders the requests, the lane's client sends them;
        True if any request went out."""
        destination, definition = claim.destination, claim.definition
        if definition.actions:
            rendered = destination.compiled_mappings.render(
                [job.mapping_id for job in claim.jobs], claim.messages, settings
            )
        else:
            rendered = _render(definition, settings, claim.messages)
        for position, (code, detail) in rendered.rejected.items():
            claim.verdicts[position].append(retry.judge(code))
            claim.details[position] = detail

        async def send(outgoing: Outgoing) -> None:
            async with claim.gate:
                await self._throttle(claim)
                result = await _send(claim.lane.client, outgoing.request, self._redirects)
            per_message = _interpret(definition, result, len(outgoing.messages))
            for position, code in zip(outgoing.messages, per_message, strict=True):
                claim.verdicts[position].append(retry.judge(code))
                claim.carried[position].append((outgoing.request, result))

        await asyncio.gather(*(send(o) for o in rendered.outgoing))
        return bool(rendered.outgoing)

    async def _execute(self, claim: _Claim, saved: Mapping[str, Any]) -> bool:
        """A destination of Segment's package: the actions runtime runs its own code, which
        makes the requests; True if any call reached the runtime."""
        from headwater.delivery import package_actions  # Node's side only when it is used

        destination, definition = claim.destination, claim.definition
        runtime = self._actions_runtime()
        refresh = None
        if "refreshAccessToken" in definition.hooks:

            async def refresh(old: Mapping[str, Any]) -> Mapping[str, Any]:
                settings, _ = package_actions.split_settings(saved)
                found = await runtime.hook(
                    definition.package_directory or "", "refreshAccessToken", settings, auth=old
                )
                tokens = found if isinstance(found, Mapping) else {}
                if not tokens.get("accessToken"):
                    raise RuntimeError("refreshAccessToken gave no access token")
                fresh = {
                    **old,
                    **{k: tokens[k] for k in ("accessToken", "refreshToken") if tokens.get(k)},
                }
                stored = dict(destination.settings.get(OAUTH_SETTING) or {})
                stored["access_token"] = fresh["accessToken"]
                if tokens.get("refreshToken"):
                    stored["refresh_token"] = tokens["refreshToken"]
                await asyncio.to_thread(self._destinations.save_oauth, destination.id, stored)
                return fresh

        async def throttle() -> None:
            await self._throttle(claim)

        done = await package_actions.execute(
            runtime.execute,
            destination,
            definition,
            saved,
            claim.jobs,
            claim.messages,
            claim.gate,
            refresh,
            throttle,
        )
        for position, codes in enumerate(done.codes):
            claim.verdicts[position].extend(retry.judge(code) for code in codes)
            claim.carried[position].extend(
                (exchange.request, _Result(exchange.response, exchange.error))
                for exchange in done.exchanges[position]
            )
        claim.details.update(done.details)
        return done.called

    # --- functions --------------------------------------------------------------------------------

    async def _run_function(self, claim: _Claim, settings: Any) -> bool:
        """A destination function: its deployed code delivers the claim (§11.3); True if the
        sandbox was called."""
        definition = claim.definition
        assert definition.function is not None
        deployed = await self._deployed(claim, definition.function, "destination function")
        if deployed is None:
            return False
        outcomes = await functions.run_destination(
            self._sandbox_runtime(),
            deployed.code,
            settings.model_dump(exclude_none=True),
            claim.messages,
            batch=definition.batching is not None,
        )
        await self._apply_outcomes(
            claim,
            deployed,
            outcomes,
            _redactor(claim.destination),
            _secret_values(claim.destination),
        )
        return True

    async def _insert_then_send(self, claim: _Claim, settings: Any, insert_function: str) -> bool:
        """The instance's insert function (§11.4), after its filters and the integrations
        object (routing) and before its mappings render: each message is replaced by the
        event it returns, dropped (``DropEvent``) or failed; the rest is sent as usual."""
        deployed = await self._deployed(claim, insert_function, "insert function")
        if deployed is None:
            return False
        destination = claim.destination
        insert_settings = dict(destination.insert_function_settings or {})
        code = deployed.code
        outcomes = await functions.run_insert(
            self._sandbox_runtime(),
            code,
            insert_settings,
            claim.messages,
            batch=has_handler(code.language, code.source, BATCH_HANDLER),
        )
        secrets = [
            v for k, v in insert_settings.items() if k in deployed.secrets and isinstance(v, str)
        ]
        redactor = Redactor(insert_settings, deployed.secrets, _secret_values(destination))
        await self._apply_outcomes(claim, deployed, outcomes, redactor, secrets)
        keep = [position for position, o in enumerate(outcomes) if o.event is not None]
        if not keep:
            return False
        passed = _Claim(destination, claim.definition, claim.lane, [claim.jobs[p] for p in keep])
        passed.messages = [outcomes[p].event or {} for p in keep]
        sent = await self._send_rendered(passed, settings)
        for inner, position in enumerate(keep):
            claim.verdicts[position] = passed.verdicts[inner]
            claim.carried[position] = passed.carried[inner]
            if inner in passed.details:
                claim.details[position] = passed.details[inner]
            if inner in passed.function_samples:  # a destination function's, after it
                claim.function_samples[position] = passed.function_samples[inner]
            if inner in passed.filtered:
                claim.filtered.add(position)
        return sent

    async def _deployed(self, claim: _Claim, function: str, kind: str) -> functions.Deployed | None:
        """The function's deployed version; without one, the claim fails with
        INVALID_SETTINGS (not retried: nothing would change until a deploy)."""
        source = self._functions
        deployed = await asyncio.to_thread(source.deployed, function) if source else None
        if deployed is None:
            for position in range(len(claim.jobs)):
                claim.verdicts[position].append(retry.judge(reasons.INVALID_SETTINGS))
                claim.details[position] = f"the {kind} {function!r} has no deployed version"
        return deployed

    async def _apply_outcomes(
        self,
        claim: _Claim,
        deployed: functions.Deployed,
        outcomes: Sequence[functions.Outcome],
        redactor: Redactor,
        secrets: Sequence[str],
    ) -> None:
        """Put what the function did into the claim, and its failures into its log."""
        failures = []
        for position, outcome in enumerate(outcomes):
            if outcome.filtered:
                claim.filtered.add(position)
                continue
            if outcome.verdict is not None:
                claim.verdicts[position].append(outcome.verdict)
                if outcome.detail:
                    claim.details[position] = redactor.text(outcome.detail)
            invocation = outcome.invocation
            if invocation is not None and outcome.verdict is not None:
                if not outcome.verdict.delivered:
                    claim.function_samples[position] = functions.sample(invocation, redactor)
                if not invocation.ok:
                    failures.append((invocation, claim.messages[position]))
        source = self._functions
        if source is None or not failures:
            return
        code = deployed.code
        seen: set[int] = set()  # a batch's one invocation is logged once

        def record() -> None:
            for invocation, message in failures:
                if id(invocation) in seen:
                    continue
                seen.add(id(invocation))
                source.record(
                    code.function,
                    code.version,
                    claim.destination.id,
                    invocation,
                    message,
                    secrets=secrets,
                )

        try:
            await asyncio.to_thread(record)
        except Exception:  # the log is for people; delivery goes on without it
            logger.exception("delivery: could not record %s's errors", code.function)

    def _sandbox_runtime(self) -> Runtime:
        """The functions' sandbox, started when a function first has work (one per process)."""
        if self._sandbox is None:
            factory = self._sandbox_factory
            if factory is None:
                factory = importlib.import_module(SANDBOX_RUNTIME).SandboxRuntime
            self._sandbox = factory()
        return self._sandbox

    async def _throttle(self, claim: _Claim) -> None:
        """The instance's rate limit, if it has one (its own, its type's, or on a space's Engage
        source Segment's limit for its tool): a token per request (or runtime call)."""
        destination, definition = claim.destination, claim.definition
        rate = destination.delivery.rate_limit_per_second or definition.rate_limit_per_second
        if not rate and destination.source_id in self._engage_sources():
            rate = engage_rate(definition.name)  # §14.4: Engage's destinations
        if rate:
            await self._take_token(claim.lane, rate)

    def _actions_runtime(self) -> ActionsRuntime:
        """The pool of Node processes, made when a package destination first needs it (its
        processes start with the first call; lanes racing here get the one pool)."""
        if self._runtime is None:
            from headwater.destinations.runtime.pool import ActionsRuntime

            if self._actions_dir is None:
                raise RuntimeError("the delivery engine was given no actions directory")
            runtime = ActionsRuntime(
                self._actions_dir,
                processes=self._actions_processes,
                redirects=self._redirects.prefixes,
            )
            self._runtime = runtime
        return self._runtime

    def _update_breaker(self, lane: _Lane, healthy: bool) -> None:
        """Pause a lane whose claims keep failing whole, so a dead destination costs little."""
        if healthy:
            lane.failures = 0
            lane.paused_until = 0.0
            return
        lane.failures += 1
        if lane.failures >= BREAKER_AFTER:
            pause = min(BREAKER_MAX_PAUSE, 2.0 ** (lane.failures - BREAKER_AFTER))
            lane.paused_until = time.monotonic() + pause

    async def _take_token(self, lane: _Lane, rate: float) -> None:
        while True:
            now = time.monotonic()
            lane.tokens = min(rate, lane.tokens + (now - lane.tokens_at) * rate)
            lane.tokens_at = now
            if lane.tokens >= 1:
                lane.tokens -= 1
                return
            await asyncio.sleep((1 - lane.tokens) / rate)

    def _lane(self, destination: DestinationInfo) -> _Lane:
        lane = self._lanes.get(destination.id)
        if lane is None:
            definition = destination.definition
            concurrency = destination.delivery.concurrency or definition.concurrency
            # A pool per destination: a hanging destination cannot take others' connections.
            # (aiohttp rather than httpx here: it sends ten times as many requests per second.)
            client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
                timeout=aiohttp.ClientTimeout(total=definition.timeout_seconds),
            )
            lane = self._lanes[destination.id] = _Lane(destination.id, client)
        return lane


def _render(
    definition: DestinationDefinition, settings: Any, messages: list[dict[str, Any]]
) -> Rendered:
    """Render a batch at once, or message by message so one bad message fails alone."""
    assert definition.render is not None  # only Actions destinations have none
    if definition.batching is not None:
        return definition.render(messages, settings)
    combined = Rendered()
    for position, message in enumerate(messages):
        try:
            one = definition.render([message], settings)
        except Rejection as exc:
            combined.reject(position, exc)
            continue
        if one.rejected:
            combined.rejected[position] = next(iter(one.rejected.values()))
        combined.outgoing.extend(
            Outgoing(o.request, tuple(position for _ in o.messages)) for o in one.outgoing
        )
    return combined


async def _send(client: aiohttp.ClientSession, request: Request, redirects: Redirects) -> _Result:
    """Send one request; connection problems come back as Segment's error codes."""
    try:
        # Redirects are followed (Segment follows a 307 to the new URL).
        async with client.request(
            request.method,
            redirects.rewrite(request.url),
            headers=dict(request.headers),
            data=request.body,
        ) as response:
            body = await response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return _Result(Response(response.status, headers, body))
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return _Result(None, reasons.ETIMEDOUT)
    except aiohttp.ClientConnectorDNSError:
        return _Result(None, reasons.ENOTFOUND)
    except aiohttp.ClientConnectorError as exc:
        return _Result(None, _errno_code(exc.os_error.errno, reasons.ECONNREFUSED))
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        return _Result(None, reasons.ECONNRESET)
    except aiohttp.ClientOSError as exc:
        return _Result(None, _errno_code(exc.errno, reasons.ECONNRESET))
    except aiohttp.ClientError:
        return _Result(None, reasons.ECONNABORTED)


def _errno_code(number: int | None, default: str) -> str:
    name = errno.errorcode.get(number or 0, "")
    if name == "ENETUNREACH":
        return reasons.EHOSTUNREACH
    return name if name in reasons.CONNECTION_ERRORS else default


def _interpret(definition: DestinationDefinition, result: _Result, count: int) -> list[str]:
    if result.response is not None and definition.interpret is not None:
        per_message = definition.interpret(result.response, count)
        if per_message is not None:
            return [code or "200" for code in per_message]
    return [result.code] * count


def _retry_after(carried: list[tuple[Request, _Result]], now: float) -> float | None:
    delays = [
        retry.retry_after(r.response.headers.get("retry-after"), now)
        for _, r in carried
        if r.response is not None
    ]
    found = [d for d in delays if d is not None]
    return max(found) if found else None


def _sample(
    message: dict[str, Any],
    carried: list[tuple[Request, _Result]],
    verdict: retry.Verdict,
    redactor: Redactor,
    detail: str | None,
) -> dict[str, Any]:
    """Event Delivery's three payloads: You Sent, Request to Destination, Response."""
    sample: dict[str, Any] = {"you_sent": message, "code": verdict.code}
    if detail is not None:
        sample["detail"] = detail
    failed = [(req, res) for req, res in carried if res.code == verdict.code] or carried
    if failed:
        sample.update(_exchange(*failed[0], redactor))
    return sample


def _exchange(request: Request, result: _Result, redactor: Redactor) -> dict[str, Any]:
    """One request and the destination's answer (or the connection error), secrets out."""
    redactor = redactor.for_request(request)  # a mapping's header values are secrets too
    return {
        "request": redactor.request(request),
        "response": redactor.response(result.response)
        if result.response is not None
        else {"error": result.error},
    }


def _secret_values(destination: DestinationInfo) -> list[str]:
    """The instance's own secret values, hidden in what its insert function shows too."""
    secrets = destination.definition.secrets
    return [v for k, v in destination.settings.items() if k in secrets and isinstance(v, str)]


def _redactor(destination: DestinationInfo) -> Redactor:
    """What hides the instance's secrets in what it sent: its secret settings and, for a
    package destination, the values its mappings give secret fields."""
    definition = destination.definition
    return Redactor(
        destination.settings,
        definition.secrets,
        secret_values(definition.actions, destination.mappings)
        if definition.package_directory is not None
        else (),
    )
