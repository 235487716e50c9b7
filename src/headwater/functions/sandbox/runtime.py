"""``SandboxRuntime``: warm sandbox processes per function version, deadlines kept by the host.

Each saved version (``Code.key``) has a pool: one worker process started on first use, more
(up to ``max_processes``) while every process has many calls in flight, idle ones stopped after
``idle_seconds``. A process takes many calls at once (handlers are async: one waiting on
``fetch`` does not hold up the next).

The host keeps every call's deadline: when one passes, the process is SIGKILLed (nothing the
code does can outlive it), the late call answers ``Timeout``, and the other calls that were in
flight there are run again once, each alone on a fresh process, so an infinite loop or an
allocation bomb fails only its own invocation. A process that dies under its calls (V8 out of
heap, RLIMIT_DATA) has them run again alone the same way; the call that kills a process while
alone answers ``MemoryLimit`` (out of memory) or ``Crashed``.

Thread-safety: none. A runtime belongs to one asyncio loop (the delivery engine's thread, the
api process's loop) and is called only from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import itertools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from headwater.functions.contract import (
    CRASHED,
    MEMORY_LIMIT,
    REQUEST_HANDLER,
    TIMEOUT,
    Code,
    IncomingRequest,
    Invocation,
    LogLine,
    OutgoingRequest,
)
from headwater.functions.sandbox import DEFAULT_TIMEOUT_SECONDS, javascript
from headwater.functions.sandbox.fetch import Fetcher
from headwater.functions.sandbox.libraries import ENVIRONMENT, installed
from headwater.functions.sandbox.policy import Confined
from headwater.functions.sandbox.protocol import decode, encode, encode_many

log = logging.getLogger(__name__)

GROW_AT = 32  # calls in flight on every process before the pool starts another
IDLE_SECONDS = 300.0
# After a deadline, how long a process has to answer a ping before it counts as stuck. Generous:
# a busy machine delays a healthy worker's answer; a stuck one never answers.
PING_GRACE_SECONDS = 0.5
# What a process's last words say when it ran out of memory: V8's heap, V8's size limits for
# one array or string (a fatal "invalid size error"), or malloc under RLIMIT_DATA/RLIMIT_AS
# (Python's MemoryError).
_OUT_OF_MEMORY = (
    b"heap out of memory",
    b"Allocation failed",
    b"invalid size error",
    b"MemoryError",
    b"out of memory",
)


class _Call:
    """One invocation waiting for its answer."""

    __slots__ = (
        "alone",
        "future",
        "group",
        "id",
        "message",
        "requests",
        "started",
        "timeout",
        "worker",
    )

    def __init__(self, id: int, message: dict[str, Any], timeout: float) -> None:
        self.id = id
        self.message = message
        self.timeout = timeout
        self.future: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        self.requests: list[OutgoingRequest] = []
        self.started = time.monotonic()
        self.group: _Deadline | None = None
        self.worker: _Worker | None = None
        self.alone = False  # run again alone after its process died under other calls

    @property
    def deadline(self) -> float:
        return self.started + self.timeout

    def settle(self, invocation: Invocation) -> None:
        if self.group is not None:
            self.group.answered(self)
            self.group = None
        if not self.future.done():
            invocation.requests = self.requests
            invocation.duration_ms = (time.monotonic() - self.started) * 1000
            self.future.set_result(invocation)


class _Deadline:
    """One timer for the calls sent together (``invoke_many``'s batch): they share a deadline."""

    __slots__ = ("calls", "timer")

    def __init__(self, calls: Sequence[_Call], timeout: float) -> None:
        self.calls = {call.id: call for call in calls}
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(loop.time() + timeout, self._passed)
        for call in calls:
            call.group = self

    def answered(self, call: _Call) -> None:
        self.calls.pop(call.id, None)
        if not self.calls:
            self.timer.cancel()

    def _passed(self) -> None:
        late = list(self.calls.values())
        self.calls.clear()
        by_worker: dict[_Worker, list[_Call]] = {}
        for call in late:
            call.group = None
            if call.worker is not None:
                by_worker.setdefault(call.worker, []).append(call)
        for worker, calls in by_worker.items():
            worker.deadline_passed(calls)


class _Worker:
    """One sandbox process serving one ``Code.key``."""

    def __init__(self, pool: _Pool, *, solo: bool = False) -> None:
        self.pool = pool
        self.solo = solo
        self.calls: dict[int, _Call] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.backlog: list[bytes] = []
        self.dead = False
        self.closing = False
        self.idle_since = time.monotonic()
        self.stderr_tail: deque[bytes] = deque(maxlen=20)
        self.ping: asyncio.TimerHandle | None = None  # the unanswered ping's grace timer
        self.suspended: list[list[_Call]] = []  # groups gone late, waiting for the ping's verdict
        pool.runtime.workers.add(self)
        self.task = asyncio.create_task(self._run())
        pool.runtime.tasks.add(self.task)
        self.task.add_done_callback(pool.runtime.tasks.discard)
        self.stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def _run(self) -> None:
        runtime = self.pool.runtime
        try:
            command = runtime.command_for(self.pool.code)
            self.process = await asyncio.create_subprocess_exec(
                *command.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=command.env,
                cwd=command.cwd,
                preexec_fn=command.preexec_fn,
                start_new_session=True,
                limit=64 << 20,
            )
        except Exception as error:  # no Node.js, no such language, exec failed…
            log.error("functions sandbox %s: cannot start: %s", self.pool.code.key, error)
            self._died(f"cannot start: {error}")
            return
        code = self.pool.code
        self._write(encode({"op": "load", "key": code.key, "code": code.source}))
        for data in self.backlog:
            self._write(data)
        self.backlog.clear()
        if self.dead:  # killed while starting
            self.kill()
        self.stderr_task = asyncio.create_task(self._stderr())
        await self._read()

    def _write(self, data: bytes) -> None:
        if self.process is None:
            self.backlog.append(data)
            return
        stdin = self.process.stdin
        assert stdin is not None
        if not stdin.is_closing():
            stdin.write(data)

    def send(self, calls: Sequence[_Call]) -> None:
        for call in calls:
            call.worker = self
            self.calls[call.id] = call
        self._write(encode_many([call.message for call in calls]))

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        reason = "exited"
        try:
            while line := await stdout.readline():
                if line.strip():
                    self._answer(decode(line))
        except Exception as error:  # a broken line is as bad as a dead process
            reason = f"unreadable answer: {error!r}"
            self.kill()
        returncode = await self.process.wait()
        if self.stderr_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.stderr_task), 1.0)
        self._died(f"{reason} (exit {returncode})")

    def _answer(self, answer: dict[str, Any]) -> None:
        op = answer.get("op")
        if op == "done":
            call = self.calls.pop(answer.get("id"), None)  # type: ignore[arg-type]
            if call is not None:
                call.settle(_invocation(answer))
                self._call_ended()
        elif op == "fetch":
            call = self.calls.get(answer.get("call"))  # type: ignore[arg-type]
            if call is None:
                self._write(encode({"op": "fetched", "id": answer.get("id"), "error": "no call"}))
                return
            self.pool.runtime.start_fetch(self, call, answer)
        elif op == "pong":
            self._pong()
        elif op == "loaded":
            if answer.get("error"):
                log.info("functions sandbox %s: %s", self.pool.code.key, answer.get("message"))
        else:
            log.warning("functions sandbox [%s]: unknown message %r", self.pid, op)

    def answer_fetch(self, message: dict[str, Any]) -> None:
        if not self.dead:
            self._write(encode(message))

    def _call_ended(self) -> None:
        if not self.calls and self.ping is None:
            self.idle_since = time.monotonic()
            if self.solo or self.closing:
                self.close()

    async def _stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr_tail.append(line)
            log.warning(
                "functions sandbox %s [%s]: %s",
                self.pool.code.key,
                self.pid,
                line.decode(errors="replace").rstrip(),
            )

    def close(self) -> None:
        """Stop taking calls; the process exits once its calls are done."""
        self.closing = True
        self.pool.workers.discard(self)
        if not self.calls and self.process is not None:
            stdin = self.process.stdin
            assert stdin is not None
            if not stdin.is_closing():
                stdin.close()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)

    def deadline_passed(self, late: list[_Call]) -> None:
        """``late`` (calls sent together) ran past their deadline here. A ping asks whether the
        process's event loop still turns. If it answers, they were only waiting (a slow fetch, a
        long ``setTimeout``): they answer ``Timeout``, the worker drops them, and the process
        lives on with its warm cache and its other calls. If not, the loop is stuck (an infinite
        loop): the process is killed. The culprit is then the first call to go late when it
        went late alone: it answers ``Timeout``; every other call runs again alone (a batch
        that went late together runs again call by call: any of them may be the one)."""
        late = [call for call in late if call.id in self.calls]
        if not late:
            return
        self.suspended.append(late)
        if self.ping is not None:
            return  # the verdict of the ping already out covers these too
        if self.process is None:
            self._stuck()
            return
        self.ping = asyncio.get_running_loop().call_later(
            self.pool.runtime.ping_grace_seconds, self._stuck
        )
        self._write(encode({"op": "ping"}))

    def _time_out(self, late: _Call) -> None:
        self.calls.pop(late.id, None)
        late.settle(
            Invocation(error=TIMEOUT, message=f"the function ran longer than {late.timeout:g} s")
        )
        self._write(encode({"op": "cancel", "id": late.id}))

    def _pong(self) -> None:
        if self.ping is None:
            return
        self.ping.cancel()
        self.ping = None
        suspended, self.suspended = self.suspended, []
        for group in suspended:
            for call in group:
                if call.id in self.calls:
                    self._time_out(call)
        self._call_ended()

    def _stuck(self) -> None:
        """No pong within the grace: the event loop is blocked."""
        self.ping = None
        first = self.suspended[0] if self.suspended else []
        self.suspended = []
        if len(first) == 1 and first[0].id in self.calls:
            self.calls.pop(first[0].id)
            first[0].settle(
                Invocation(
                    error=TIMEOUT,
                    message=f"the function ran longer than {first[0].timeout:g} s",
                )
            )
        self.kill()
        self._died("killed: its event loop stayed blocked past a call's deadline", killed=True)

    def _died(self, reason: str, *, killed: bool = False) -> None:
        """The process is gone: its calls run again alone, unless one is surely what killed it
        (it ran alone, or was the only call in flight when the process died by itself)."""
        if self.dead:
            return
        self.dead = True
        if self.ping is not None:
            self.ping.cancel()
            self.ping = None
        self.kill()
        runtime = self.pool.runtime
        self.pool.workers.discard(self)
        runtime.workers.discard(self)
        if self.solo:
            runtime.solo_ended()
        calls, self.calls = list(self.calls.values()), {}
        if not calls:
            return
        if runtime.closed:
            for call in calls:
                call.settle(Invocation(error=CRASHED, message="the functions runtime closed"))
            return
        last_words = b"".join(self.stderr_tail)
        out_of_memory = any(words in last_words for words in _OUT_OF_MEMORY)
        log.warning(
            "functions sandbox %s [%s] %s with %d calls in flight%s",
            self.pool.code.key,
            self.pid,
            reason,
            len(calls),
            " (out of memory)" if out_of_memory else "",
        )
        for call in calls:
            if (call.alone and self.solo) or (len(calls) == 1 and not killed):
                if out_of_memory:
                    call.settle(
                        Invocation(error=MEMORY_LIMIT, message="the function ran out of memory")
                    )
                else:
                    call.settle(Invocation(error=CRASHED, message=f"the sandbox process {reason}"))
            else:
                call.alone = True
                runtime.run_alone(self.pool, call)


class _Pool:
    """The warm processes of one function version."""

    def __init__(self, runtime: SandboxRuntime, code: Code) -> None:
        self.runtime = runtime
        self.code = code
        self.workers: set[_Worker] = set()

    def pick(self) -> _Worker:
        live = [worker for worker in self.workers if not worker.closing and not worker.dead]
        if live:
            best = min(live, key=lambda worker: len(worker.calls))
            if len(best.calls) < GROW_AT or len(live) >= self.runtime.max_processes:
                return best
        worker = _Worker(self)
        self.workers.add(worker)
        return worker

    def run(self, calls: Sequence[_Call]) -> None:
        worker = self.pick()
        _Deadline(calls, calls[0].timeout)
        worker.send(calls)

    def run_alone(self, call: _Call) -> None:
        """A fresh process for this call only, with its full time again: the deadline it
        shared with its first process's calls no longer applies to it."""
        if call.group is not None:
            call.group.answered(call)
            call.group = None
        call.started = time.monotonic()
        _Deadline([call], call.timeout)
        _Worker(self, solo=True).send([call])


def _shared_libraries() -> Path | None:
    """``HEADWATER_FUNCTIONS_LIBRARIES_DIR`` when the libraries are installed there."""
    shared = os.environ.get(ENVIRONMENT)
    return Path(shared) if shared and installed(Path(shared)) else None


def _invocation(answer: Mapping[str, Any]) -> Invocation:
    logs = [LogLine(str(level), str(text)) for level, text in answer.get("logs") or ()]
    emitted = list(answer.get("emitted") or ())
    error = answer.get("error")
    if error is not None:
        return Invocation(
            error=str(error), message=str(answer.get("message") or ""), logs=logs, emitted=emitted
        )
    return Invocation(value=answer.get("value"), logs=logs, emitted=emitted)


def _payload(handler: str, payload: Any) -> Any:
    if handler == REQUEST_HANDLER and isinstance(payload, IncomingRequest):
        return {
            "method": payload.method,
            "url": payload.url,
            "headers": [list(pair) for pair in payload.headers],
            "body_base64": base64.b64encode(payload.body).decode(),
        }
    return payload


class SandboxRuntime:
    """The ``Runtime`` of ``headwater.functions.sandbox``: see the module's docstring."""

    def __init__(
        self,
        *,
        fetch_allow: Sequence[str] = ("*",),
        redirects: Mapping[str, str] | None = None,
        max_processes: int = 2,
        idle_seconds: float = IDLE_SECONDS,
        heap_mb: int = javascript.HEAP_MB,
        libraries: Path | None = None,
        bwrap: bool | None = None,
        ping_grace_seconds: float = PING_GRACE_SECONDS,
        commands: Mapping[str, Callable[[], Confined]] | None = None,
    ) -> None:
        """``fetch_allow``: ``server.functions_fetch_allow``; ``redirects``:
        ``server.request_redirects``; ``libraries``: the installed JavaScript libraries
        (``libraries.libraries_dir``; None: ``HEADWATER_FUNCTIONS_LIBRARIES_DIR`` when they are
        installed there, else none); ``bwrap``: None uses bubblewrap when it works here;
        ``commands``: a worker command per language instead of the built-in ones."""
        self.max_processes = max(1, max_processes)
        self.ping_grace_seconds = ping_grace_seconds
        self.idle_seconds = idle_seconds
        self.heap_mb = heap_mb
        self.libraries = libraries if libraries is not None else _shared_libraries()
        self.bwrap = bwrap
        self.fetcher = Fetcher(allow=fetch_allow, redirects=redirects or {})
        self._commands = dict(commands or {})
        self._pools: dict[str, _Pool] = {}
        self._ids = itertools.count(1)
        self._fetches: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.workers: set[_Worker] = set()  # every live process, pooled, alone or closing
        # calls to run again alone, and how many such processes run now (at most max_solo)
        self._alone: deque[tuple[_Pool, _Call]] = deque()
        self._solo_running = 0
        self.max_solo = max(2, self.max_processes)
        self.tasks: set[asyncio.Task[None]] = set()  # the workers' readers, until they exit
        self.closed = False

    def command_for(self, code: Code) -> Confined:
        """How to start a worker for ``code``'s language."""
        made = self._commands.get(code.language)
        if made is not None:
            return made()
        if code.language == "javascript":
            return javascript.command(
                heap_mb=self.heap_mb, libraries=self.libraries, bwrap=self.bwrap
            )
        module = importlib.import_module(f"headwater.functions.sandbox.{code.language}")
        command: Confined = module.command()
        return command

    def _pool(self, code: Code) -> _Pool:
        if self.closed:
            raise RuntimeError("the functions runtime is closed")
        pool = self._pools.get(code.key)
        if pool is None:
            pool = self._pools[code.key] = _Pool(self, code)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return pool

    def _call(
        self,
        code: Code,
        handler: str,
        payload: Any,
        settings: Mapping[str, Any],
        timeout: float,
        fresh_cache: bool,
    ) -> _Call:
        id = next(self._ids)
        message = {
            "op": "invoke",
            "id": id,
            "key": code.key,
            "handler": handler,
            "payload": _payload(handler, payload),
            "settings": settings,
            "fresh_cache": fresh_cache,
        }
        return _Call(id, message, timeout)

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
        pool = self._pool(code)
        call = self._call(code, handler, payload, settings, timeout, fresh_cache)
        pool.run([call])
        return await call.future

    async def invoke_many(
        self,
        code: Code,
        calls: Sequence[tuple[str, Any]],
        settings: Mapping[str, Any],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> list[Invocation]:
        if not calls:
            return []
        pool = self._pool(code)
        made = [
            self._call(code, handler, payload, settings, timeout, False)
            for handler, payload in calls
        ]
        pool.run(made)
        return list(await asyncio.gather(*(call.future for call in made)))

    def run_alone(self, pool: _Pool, call: _Call) -> None:
        """Run ``call`` again on a fresh process of its own: a few such processes at a time,
        so a batch that must be re-run call by call does not start hundreds at once."""
        self._alone.append((pool, call))
        self._start_alone()

    def solo_ended(self) -> None:
        self._solo_running -= 1
        self._start_alone()

    def _start_alone(self) -> None:
        while self._alone and self._solo_running < self.max_solo and not self.closed:
            pool, call = self._alone.popleft()
            if call.future.done():  # the caller gave up
                continue
            self._solo_running += 1
            pool.run_alone(call)

    def start_fetch(self, worker: _Worker, call: _Call, message: dict[str, Any]) -> None:
        """The code's ``fetch``: made by the host, within the call's remaining time."""
        task = asyncio.create_task(self._fetch(worker, call, message))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, worker: _Worker, call: _Call, message: dict[str, Any]) -> None:
        remaining = max(0.05, call.deadline - time.monotonic())
        try:
            answer, request = await self.fetcher.fetch(message, timeout=remaining)
            call.requests.append(request)
        except Exception as error:  # the code gets a FetchError, never a hung promise
            log.exception("functions fetch failed")
            answer = {"error": f"the host could not make the request: {error}"}
        worker.answer_fetch({"op": "fetched", "id": message.get("id"), **answer})

    async def forget(self, function: str) -> None:
        for key, pool in list(self._pools.items()):
            if pool.code.function == function:
                del self._pools[key]
                for worker in list(pool.workers):
                    worker.close()

    def processes(self, code: Code) -> list[int]:
        """The pids of ``code``'s warm processes (tests, bench)."""
        pool = self._pools.get(code.key)
        if pool is None:
            return []
        return [w.pid for w in pool.workers if w.pid is not None and not w.dead]

    async def _reap(self) -> None:
        """Stop processes that have had nothing to do for ``idle_seconds``."""
        while not self.closed:
            await asyncio.sleep(min(30.0, max(0.05, self.idle_seconds / 4)))
            now = time.monotonic()
            for key, pool in list(self._pools.items()):
                for worker in list(pool.workers):
                    if not worker.calls and now - worker.idle_since > self.idle_seconds:
                        worker.close()
                if not pool.workers:
                    self._pools.pop(key, None)

    async def close(self) -> None:
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        while self._alone:
            _, call = self._alone.popleft()
            call.settle(Invocation(error=CRASHED, message="the functions runtime closed"))
        self._pools.clear()
        for worker in list(self.workers):
            worker.kill()
            worker._died("closed")
        for task in self._fetches:
            task.cancel()
        pending = [*self._fetches, *self.tasks]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        await self.fetcher.close()
