"""The actions runtime's pool: long-lived Node.js processes running ``runtime.js``.

The delivery engine hands a ``Call`` (one action, its events) to ``ActionsRuntime.execute`` and
gets one ``Outcome`` per event. Segment's code makes the HTTP requests; Python only frames
requests to the processes and looks after them. Every call gets exactly one answer: a process
that dies or stops answering pings is killed and replaced, and its calls are sent once to the
replacement before they are answered ``RuntimeUnavailable`` (the engine retries those later).

Calls go to the process with the fewest calls in flight, passing over a process whose last
ping is unanswered for a while (its event loop is blocked: a destination spinning the CPU), so
one destination's slow or stuck code does not hold up calls another process can take.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from headwater.destinations.definition import Request, Response
from headwater.destinations.runtime.node import Node, find_node
from headwater.destinations.runtime.protocol import FrameReader, encode_frame

RUNTIME_JS = Path(__file__).with_name("runtime.js")
HOOKS = frozenset(
    {
        "createAudience",
        "getAudience",
        "onDelete",
        "refreshAccessToken",
        "testAuthentication",
        "validateSettings",
    }
)

# extra node flags for every process started from now on (bench/actions_runtime.py: --cpu-prof)
NODE_OPTIONS: list[str] = []

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    destination: str  # the package's directory: customerio, braze, webhook …
    action: str
    settings: Mapping[str, Any]
    mapping: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]
    batch: bool = False
    auth: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Exchange:
    """One HTTP request the destination's code made; ``request.url`` is the URL it asked for,
    ``called_url`` the one a redirect sent it to."""

    request: Request
    response: Response | None
    error: str | None  # ECONNREFUSED, ETIMEDOUT, ENOTFOUND, ECONNRESET …
    called_url: str | None = None


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error_type: (
        str | None
    )  # IntegrationError, RetryableError, HTTPError … Timeout, RuntimeUnavailable
    error_code: str | None  # Segment's error code
    message: str
    exchanges: tuple[Exchange, ...]

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.status is not None and self.status < 400


@dataclass(frozen=True)
class ProcessInfo:
    pid: int | None
    rss: int  # bytes, from the last ping
    heap_used: int
    in_flight: int
    draining: bool
    stalled: bool  # a ping unanswered for longer than the ping interval


class HookError(Exception):
    """A hook failed in the destination's code (or the runtime): ``outcome`` says how."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"{outcome.error_type}: {outcome.message}")
        self.outcome = outcome


class _Unavailable(Exception):
    pass


def _runtime_failure(
    error_type: str, message: str, count: int, exchanges: tuple[Exchange, ...] = ()
) -> list[Outcome]:
    one = Outcome(None, error_type, None, message, exchanges)
    return [one] * count


def _text_bytes(text: Any) -> bytes | None:
    return None if text is None else str(text).encode()


def _exchange(raw: Mapping[str, Any]) -> Exchange:
    request = raw["request"]
    response = raw.get("response")
    return Exchange(
        request=Request(
            method=request["method"],
            url=request["url"],
            headers=request.get("headers") or {},
            body=_text_bytes(request.get("body")),
        ),
        response=None
        if response is None
        else Response(
            status=response["status"],
            headers=response.get("headers") or {},
            body=_text_bytes(response.get("body")) or b"",
        ),
        error=raw.get("error"),
        called_url=raw.get("calledUrl"),
    )


def _exchanges(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Exchange, ...]:
    return tuple(_exchange(item) for item in raw or ())


def _outcome(raw: Mapping[str, Any], shared: tuple[Exchange, ...]) -> Outcome:
    own = raw.get("exchanges")
    return Outcome(
        status=raw.get("status"),
        error_type=raw.get("errorType"),
        error_code=raw.get("errorCode"),
        message=raw.get("message") or "",
        exchanges=shared if own is None else _exchanges(own),
    )


def _plain(value: Any) -> Any:
    """msgspec's hook for Mappings and Sequences that are not dicts and lists."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} to the actions runtime")


_encoder = msgspec.json.Encoder(enc_hook=_plain)
_decode = msgspec.json.decode


class _Pending:
    """A call (or hook) waiting for its answer; kept to send it again to a replacement."""

    __slots__ = ("attempts", "events", "future", "id", "message", "timer", "worker")

    def __init__(
        self, id: int, message: dict[str, Any], events: int, future: asyncio.Future[Any]
    ) -> None:
        self.id = id
        self.message = message
        self.events = events
        self.future = future
        self.attempts = 0
        self.worker: _Worker | None = None
        self.timer: asyncio.TimerHandle | None = None


class _Worker:
    """One Node.js process in a slot of the pool."""

    def __init__(self, runtime: ActionsRuntime, slot: int, delay: float) -> None:
        self.runtime = runtime
        self.slot = slot
        self.process: asyncio.subprocess.Process | None = None
        self.pending: dict[int, _Pending] = {}
        self.waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}  # pings, cancels, test ops
        self.backlog: list[bytes] = []  # frames written before the process exists
        self.draining = False
        self.dead = False
        self.rss = 0
        self.heap_used = 0
        self.ping_sent: float | None = None  # when the unanswered ping went out
        self.started = time.monotonic()
        self.tasks: list[asyncio.Task[None]] = []
        self.stderr_task: asyncio.Task[None] | None = None
        self.spawned = asyncio.get_running_loop().create_future()
        self.tasks.append(asyncio.create_task(self._run(delay)))

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def _run(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        runtime = self.runtime
        try:
            self.process = await asyncio.create_subprocess_exec(
                str(runtime.node.executable),
                f"--max-old-space-size={runtime.max_memory_mb}",
                *runtime.node_flags(),
                *NODE_OPTIONS,
                str(RUNTIME_JS),
                str(runtime.directory),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=runtime.environment,
                start_new_session=True,  # a ^C to the server is the server's to pass on
                limit=1 << 20,
            )
        except OSError as error:
            log.error("actions runtime: cannot start %s: %s", runtime.node.executable, error)
            self.spawned.set_result(None)
            self._died(f"cannot start: {error}")
            return
        self.spawned.set_result(None)
        self.started = time.monotonic()
        for frame in self.backlog:
            self._write(frame)
        self.backlog.clear()
        self.stderr_task = asyncio.create_task(self._stderr())
        self.tasks.append(self.stderr_task)
        self.tasks.append(asyncio.create_task(self._heartbeat()))
        await self._read()

    def _write(self, frame: bytes) -> None:
        if self.process is None:
            self.backlog.append(frame)
            return
        assert self.process.stdin is not None
        if not self.process.stdin.is_closing():
            self.process.stdin.write(frame)

    def send(self, pending: _Pending) -> None:
        pending.worker = self
        self.pending[pending.id] = pending
        self._write(encode_frame(_encoder.encode({"id": pending.id, **pending.message})))

    def request(self, message: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """An internal request (ping, cancel, test op): not sent again if the process dies."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # nobody may be waiting when the process dies (a test op): that is not worth a log line
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        if self.dead:
            future.set_exception(_Unavailable("process gone"))
            return future
        id = next(self.runtime._ids)
        self.waiters[id] = future
        self._write(encode_frame(_encoder.encode({"id": id, **message})))
        return future

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        reader = FrameReader(self.process.stdout)
        reason = "exited"
        try:
            while True:
                frame = await reader.read()
                if frame is None:
                    break
                self._answer(_decode(frame))
        except Exception as error:  # a broken frame is as bad as a dead process
            reason = f"unreadable answer: {error!r}"
        code = (
            await self.process.wait()
            if self.process.returncode is None
            else self.process.returncode
        )
        self._died(f"{reason} (exit {code})")

    def _answer(self, answer: dict[str, Any]) -> None:
        id = answer.get("id")
        if not isinstance(id, int) or id == 0:
            return  # the ready frame
        pending = self.pending.pop(id, None)
        if pending is not None:
            self.runtime._settle(pending, answer)
            self._maybe_finish_draining()
            return
        waiter = self.waiters.pop(id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    async def _stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            log.warning(
                "actions runtime [%s]: %s", self.pid, line.decode(errors="replace").rstrip()
            )

    async def _heartbeat(self) -> None:
        runtime = self.runtime
        while not self.dead:
            await asyncio.sleep(runtime.ping_interval_seconds)
            self.ping_sent = time.monotonic()
            try:
                answer = await asyncio.wait_for(
                    self.request({"op": "ping"}), runtime.ping_timeout_seconds
                )
            except TimeoutError:
                log.warning(
                    "actions runtime [%s]: no answer to a ping in %ss: killing it",
                    self.pid,
                    runtime.ping_timeout_seconds,
                )
                self.kill()
                return
            except _Unavailable:
                return
            self.ping_sent = None
            self.rss = int(answer.get("rss", 0))
            self.heap_used = int(answer.get("heapUsed", 0))
            if not self.draining and self.rss > runtime.max_memory_mb * 1024 * 1024:
                log.warning(
                    "actions runtime [%s]: RSS %d MB over its cap of %d MB: replacing it",
                    self.pid,
                    self.rss >> 20,
                    runtime.max_memory_mb,
                )
                self.drain()

    def stalled(self, now: float) -> bool:
        sent = self.ping_sent
        return sent is not None and now - sent > self.runtime.ping_interval_seconds

    def drain(self) -> None:
        """No new calls: a replacement takes the slot; exit once the calls in flight are done."""
        self.draining = True
        self.runtime._replace(self)
        self._maybe_finish_draining()

    def _maybe_finish_draining(self) -> None:
        if self.draining and not self.pending and self.process is not None:
            assert self.process.stdin is not None
            if not self.process.stdin.is_closing():
                self.process.stdin.close()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)

    def _died(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.kill()
        for task in self.tasks:
            # the stderr task ends by itself at EOF: it carries a crash's last words
            if task is not asyncio.current_task() and task is not self.stderr_task:
                task.cancel()
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(_Unavailable(reason))
        self.waiters.clear()
        runtime = self.runtime
        if self.pending and not runtime._closing:
            log.warning(
                "actions runtime [%s] %s with %d calls in flight",
                self.pid,
                reason,
                len(self.pending),
            )
        elif not self.draining and not runtime._closing:
            log.warning("actions runtime [%s] %s", self.pid, reason)
        runtime._workers.discard(self)
        replacement = runtime._replace(self)
        calls, self.pending = list(self.pending.values()), {}
        for pending in calls:
            if pending.attempts == 0 and replacement is not None:
                pending.attempts = 1
                replacement.send(pending)
            else:
                runtime._fail(
                    pending, "RuntimeUnavailable", f"the actions runtime process {reason}"
                )


class ActionsRuntime:
    """A pool of Node.js processes running Segment's Actions destinations."""

    def __init__(
        self,
        directory: Path,
        *,
        processes: int = 1,
        max_memory_mb: int = 256,
        call_timeout_seconds: float = 30.0,
        redirects: Mapping[str, str] | None = None,
        node: Node | None = None,
        ping_interval_seconds: float = 1.0,
        ping_timeout_seconds: float = 10.0,
        cancel_grace_seconds: float = 1.0,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("an actions runtime needs at least one process")
        self.directory = Path(directory)
        self.processes = processes
        self.max_memory_mb = max_memory_mb
        self.call_timeout_seconds = call_timeout_seconds
        self.redirects = dict(redirects or {})
        self.ping_interval_seconds = ping_interval_seconds
        self.ping_timeout_seconds = ping_timeout_seconds
        self.cancel_grace_seconds = cancel_grace_seconds
        self._node = node
        self._extra_environment = dict(environment or {})
        self._ids = itertools.count(1)
        self._slots: list[_Worker | None] = [None] * processes
        self._workers: set[_Worker] = set()  # every live process, draining ones too
        self._deaths: list[float] = [0.0] * processes  # restart delay per slot
        self._closing = False
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = find_node()
        return self._node

    def node_flags(self) -> list[str]:
        """AsyncLocalStorage (which call an HTTP request belongs to) on V8's context frames
        rather than promise hooks: about 10% less CPU a call (bench/actions_runtime.py); the
        flag exists from Node.js 22.7 and is the default from 24."""
        if (22, 7, 0) <= self.node.version < (24, 0, 0):
            return ["--experimental-async-context-frame", "--disable-warning=ExperimentalWarning"]
        return []

    @property
    def environment(self) -> dict[str, str]:
        return {
            **self.node.environment(),
            "HEADWATER_REQUEST_REDIRECTS": json.dumps(self.redirects),
            **self._extra_environment,
        }

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._closing = False
        for slot in range(self.processes):
            self._slots[slot] = self._new_worker(slot, 0.0)
        await asyncio.gather(*(w.spawned for w in self._slots if w is not None))

    def _new_worker(self, slot: int, delay: float) -> _Worker:
        worker = _Worker(self, slot, delay)
        self._workers.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker | None:
        """The worker now in ``worker``'s slot, a new one if ``worker`` held it."""
        if self._closing:
            return None
        current = self._slots[worker.slot]
        if current is not worker:
            return current
        # a process that dies young is restarted after a growing pause, not in a tight loop
        young = time.monotonic() - worker.started < 5.0 and not worker.draining
        delay = min(5.0, max(0.1, self._deaths[worker.slot] * 2)) if young else 0.0
        self._deaths[worker.slot] = delay
        replacement = self._new_worker(worker.slot, delay)
        self._slots[worker.slot] = replacement
        return replacement

    def _choose(self) -> _Worker:
        if self.processes == 1:
            worker = self._slots[0]
            assert worker is not None
            return worker
        now = time.monotonic()
        return min(
            (w for w in self._slots if w is not None),
            key=lambda w: (w.stalled(now), len(w.pending)),
        )

    def _submit(self, message: dict[str, Any], events: int) -> _Pending:
        pending = _Pending(
            next(self._ids), message, events, asyncio.get_running_loop().create_future()
        )
        self._choose().send(pending)
        return pending

    def _settle(self, pending: _Pending, answer: dict[str, Any]) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        if not pending.future.done():
            pending.future.set_result(answer)

    def _fail(
        self, pending: _Pending, error_type: str, message: str, exchanges: Any = None
    ) -> None:
        self._settle(
            pending,
            {"failure": error_type, "message": message, "exchanges": exchanges},
        )

    def _timed_out(self, pending: _Pending) -> None:
        worker = pending.worker
        if worker is not None and worker.pending.pop(pending.id, None) is not None:
            # ask the process for the exchanges made so far, before a draining one is let go
            answer = worker.request({"op": "cancel", "target": pending.id})
            worker._maybe_finish_draining()
            task = asyncio.create_task(self._cancelled(pending, answer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._fail(pending, "Timeout", self._timeout_message())

    def _timeout_message(self) -> str:
        return f"no answer from the destination's code in {self.call_timeout_seconds}s"

    async def _cancelled(self, pending: _Pending, answer: asyncio.Future[dict[str, Any]]) -> None:
        """Answer Timeout with what the process says it sent, if it says so soon enough."""
        exchanges = None
        with contextlib.suppress(TimeoutError, _Unavailable):
            exchanges = (await asyncio.wait_for(answer, self.cancel_grace_seconds)).get("exchanges")
        self._fail(pending, "Timeout", self._timeout_message(), exchanges)

    async def _call(self, message: dict[str, Any], events: int) -> dict[str, Any]:
        if self._closing:
            raise _Unavailable("the actions runtime is closed")
        await self.start()
        pending = self._submit(message, events)
        pending.timer = asyncio.get_running_loop().call_later(
            self.call_timeout_seconds, self._timed_out, pending
        )
        answer: dict[str, Any] = await pending.future
        return answer

    async def execute(self, call: Call) -> list[Outcome]:
        """One outcome per event, in order; destination and runtime failures are outcomes."""
        count = len(call.events)
        if count == 0:
            return []
        message = {
            "op": "execute",
            "destination": call.destination,
            "action": call.action,
            "settings": call.settings,
            "mapping": call.mapping,
            "events": call.events,
            "batch": call.batch,
            "auth": call.auth,
        }
        try:
            answer = await self._call(message, count)
        except _Unavailable as error:
            return _runtime_failure("RuntimeUnavailable", str(error), count)
        failure = answer.get("failure")
        if failure is not None:
            return _runtime_failure(
                failure, answer["message"], count, _exchanges(answer.get("exchanges"))
            )
        if "error" in answer:  # the runtime could not run the call at all
            return [_outcome(answer["error"], ())] * count
        shared = _exchanges(answer.get("exchanges"))
        results = answer.get("results") or []
        outcomes = [_outcome(raw, shared) for raw in results[:count]]
        if len(outcomes) < count:
            outcomes += _runtime_failure(
                "RuntimeUnavailable", "no result for this event", count - len(outcomes)
            )
        return outcomes

    async def hook(
        self,
        destination: str,
        hook: str,
        settings: Mapping[str, Any],
        payload: Mapping[str, Any] | None = None,
        auth: Mapping[str, Any] | None = None,
    ) -> Any:
        """The hook's result; raises ``HookError`` when it fails."""
        if hook not in HOOKS:
            raise ValueError(f"no hook {hook!r}; hooks are {sorted(HOOKS)}")
        message = {
            "op": "hook",
            "destination": destination,
            "hook": hook,
            "settings": settings,
            "payload": payload,
            "auth": auth,
        }
        try:
            answer = await self._call(message, 1)
        except _Unavailable as error:
            raise HookError(_runtime_failure("RuntimeUnavailable", str(error), 1)[0]) from None
        failure = answer.get("failure")
        if failure is not None:
            raise HookError(
                _runtime_failure(
                    failure, answer["message"], 1, _exchanges(answer.get("exchanges"))
                )[0]
            )
        if "error" in answer:
            raise HookError(_outcome(answer["error"], ()))
        return answer.get("result")

    def processes_info(self) -> list[ProcessInfo]:
        now = time.monotonic()
        return [
            ProcessInfo(w.pid, w.rss, w.heap_used, len(w.pending), w.draining, w.stalled(now))
            for w in sorted(self._workers, key=lambda w: (w.draining, w.slot))
        ]

    async def close(self, timeout: float = 10.0) -> None:
        """Let the calls in flight finish (up to ``timeout``), then stop every process."""
        if not self._started:
            return
        self._closing = True
        self._started = False
        workers = list(self._workers)
        for worker in workers:
            await worker.spawned
            worker.draining = True
            worker._maybe_finish_draining()
            if worker.process is not None and worker.process.stdin is not None:
                worker.process.stdin.close()

        async def finish(worker: _Worker) -> None:
            if worker.process is not None:
                try:
                    await asyncio.wait_for(worker.process.wait(), timeout)
                except TimeoutError:
                    worker.kill()
                    await worker.process.wait()
            for task in worker.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        await asyncio.gather(*(finish(w) for w in workers))
        for worker in workers:
            worker._died("closed")
            for pending in list(worker.pending.values()):
                self._fail(pending, "RuntimeUnavailable", "the actions runtime closed")
        self._slots = [None] * self.processes
        self._workers.clear()

    # test-only: ops runtime.js accepts with HEADWATER_RUNTIME_TEST_OPS=1 (spin, allocate, exit)
    def _test_op(self, slot: int, op: str, **fields: Any) -> asyncio.Future[dict[str, Any]]:
        worker = self._slots[slot]
        assert worker is not None
        return worker.request({"op": op, **fields})
