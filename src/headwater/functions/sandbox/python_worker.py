"""The Python functions' sandbox worker: a standalone script (standard library only, no
Headwater imports), started by ``headwater.functions.sandbox.python`` under the confinement
policy. It serves one function version and speaks the sandbox protocol (JSON lines) on the
pipes it was started with.

Startup, in order: keep the protocol's pipes on private descriptors (fd 1 then points at
stderr, so a stray ``os.write(1, …)`` cannot corrupt the protocol), pre-import the standard
library a function may use, then install the tighter seccomp filter given in argv (the policy's
plus: no ``open``/``openat``, no ``execve``), after which nothing new can be read from disk, so
an ``import`` of a module that was not pre-imported fails. User code sees builtins whose
``__import__`` allows only the pre-imported modules (a language layer; the process layers
below it hold whatever it reaches).

Usage: ``python -I -S python_worker.py BPF_HEX`` (an empty BPF_HEX skips the filter: tests).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import contextlib
import contextvars
import ctypes
import datetime
import decimal
import functools
import importlib
import inspect
import io
import json
import logging
import os
import sys
import time
import urllib.parse
from typing import Any

# The standard library a function may import (``import hashlib`` …), loaded at startup: once
# the worker's filter is on, nothing more can be read from disk.
ALLOWED_MODULES = (
    "asyncio", "base64", "binascii", "bisect", "calendar", "collections", "collections.abc",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "email.utils",
    "enum", "fractions", "functools", "gzip", "hashlib", "heapq", "hmac", "html", "io",
    "itertools", "json", "logging", "math", "operator", "random", "re", "secrets",
    "statistics", "string", "struct", "textwrap", "time", "typing", "unicodedata", "urllib",
    "urllib.parse", "uuid", "zlib",
)  # fmt: skip
# What those load lazily, on first use of a function (datetime.strptime, str.encode(…)).
LAZY_MODULES = (
    "_strptime", "encodings.ascii", "encodings.idna", "encodings.latin_1", "encodings.utf_16",
    "encodings.utf_32", "encodings.cp1252", "encodings.base64_codec", "encodings.hex_codec",
    "encodings.punycode", "encodings.utf_8_sig",
    "unicodedata", "stringprep",
)  # fmt: skip
for _name in (*ALLOWED_MODULES, *LAZY_MODULES):
    importlib.import_module(_name)
ERROR_CLASSES = (
    "EventNotSupported",
    "InvalidEventPayload",
    "ValidationError",
    "RetryError",
    "DropEvent",
)
# Segment's handler name (the protocol's) → the Python function's name.
PYTHON_NAMES = {
    "onRequest": "on_request",
    "onTrack": "on_track",
    "onIdentify": "on_identify",
    "onPage": "on_page",
    "onScreen": "on_screen",
    "onGroup": "on_group",
    "onAlias": "on_alias",
    "onDelete": "on_delete",
    "onBatch": "on_batch",
}
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


class EventNotSupported(Exception):
    """The function does not handle this kind of event."""


class InvalidEventPayload(Exception):
    """The event is not what the function expects."""


class ValidationError(Exception):
    """The event fails the function's validation."""


class RetryError(Exception):
    """A passing failure: Segment retries the event."""


class DropEvent(Exception):
    """Insert functions: drop the event, silently (not a failure)."""


class Channel:
    """The protocol's pipes: lines in, lines out (collected, written in one go)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self._write_fd = write_fd
        self._buffer = b""
        self._out: list[bytes] = []

    def send(self, message: dict[str, Any]) -> None:
        self._out.append(
            json.dumps(message, separators=(",", ":"), default=_plain).encode() + b"\n"
        )

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]

    def read(self) -> list[dict[str, Any]] | None:
        """The messages one read brings (it blocks when nothing is there); None at the end."""
        chunk = os.read(self.read_fd, 1 << 20)
        if not chunk:
            return None
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        messages = []
        for line in complete:
            if line.strip():
                message = json.loads(line)
                messages.append(message if isinstance(message, dict) else {})
        return messages


def _plain(value: Any) -> Any:
    """JSON for what a function may return beyond JSON's types."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


Store = dict[str, tuple[float | None, Any]]


class Call:
    """One invocation: what it logs and emits, its cache."""

    __slots__ = ("cache", "emitted", "id", "logs")

    def __init__(self, call_id: Any, cache: Store) -> None:
        self.id = call_id
        self.logs: list[list[str]] = []
        self.emitted: list[dict[str, Any]] = []
        self.cache = cache


# The invocation the running code belongs to (async handlers run concurrently: one each).
_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def _log(level: str, text: str) -> None:
    call = _current.get()
    if call is not None:
        call.logs.append([level, text])
    else:
        os.write(2, f"[{level}] {text}\n".encode(errors="replace"))


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """``print``: a log line of the invocation (a file= other than stdout/stderr is honoured)."""
    if file is not None and file not in (sys.stdout, sys.stderr):
        builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(str(arg) for arg in args)
    _log("error" if file is sys.stderr else "log", text)


class Console:
    """``console.log`` and friends, as in JavaScript functions."""

    @staticmethod
    def _text(args: tuple[Any, ...]) -> str:
        return " ".join(
            arg if isinstance(arg, str) else json.dumps(arg, default=str) for arg in args
        )

    def log(self, *args: Any) -> None:
        _log("log", self._text(args))

    def info(self, *args: Any) -> None:
        _log("info", self._text(args))

    def warn(self, *args: Any) -> None:
        _log("warn", self._text(args))

    warning = warn

    def error(self, *args: Any) -> None:
        _log("error", self._text(args))

    def debug(self, *args: Any) -> None:
        _log("debug", self._text(args))


class _LogHandler(logging.Handler):
    """``logging`` from a function: the invocation's log lines."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log line must never fail the call
            _log(_LEVELS.get(record.levelno, "error"), self.format(record))


class _Writer(io.TextIOBase):
    """sys.stdout/sys.stderr for user code: lines into the invocation's logs."""

    def __init__(self, level: str) -> None:
        self._level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            _log(self._level, line)
        return len(text)


class Headers:
    """Case-insensitive headers (``get``, ``[]``, ``in``, ``items``), order kept."""

    def __init__(self, pairs: Any = None) -> None:
        self._pairs: list[tuple[str, str]] = []
        if isinstance(pairs, dict):
            pairs = pairs.items()
        for name, value in pairs or ():
            self._pairs.append((str(name), str(value)))

    def get(self, name: str, default: Any = None) -> Any:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self._pairs if key.lower() == lowered]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> list[str]:
        return [key for key, _ in self._pairs]

    def __iter__(self) -> Any:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class Response:
    """What ``fetch`` answers (node-fetch's fields in Python's spelling). Awaitable, so both
    ``fetch(url)`` and ``await fetch(url)`` work."""

    def __init__(
        self, status: int, status_text: str, url: str, headers: Headers, content: bytes
    ) -> None:
        self.status = status
        self.status_code = status
        self.status_text = status_text
        self.ok = 200 <= status < 300
        self.url = url
        self.headers = headers
        self.content = content

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover  (makes this a generator: ``await`` gets self at once)

    def __repr__(self) -> str:
        return f"<Response [{self.status}] {self.url}>"


class FetchError(Exception):
    """A fetch that got no answer (not allowed, refused, timed out…)."""


def fetch(url: str, *, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
    """An HTTP request, made by the host (the sandbox has no network). In an ``async def``
    handler it is awaitable (``await fetch(…)``) and other calls run while it waits; anywhere
    else it is a blocking round trip."""
    call = _current.get()
    if call is None:
        raise FetchError("fetch is only available while a handler runs")
    pairs = Headers(headers)
    if isinstance(body, str):
        body = body.encode()
    elif isinstance(body, dict | list):
        body = json.dumps(body).encode()
        if "content-type" not in pairs:
            pairs = Headers([*pairs.items(), ("Content-Type", "application/json")])
    if body is not None and not isinstance(body, bytes | bytearray):
        raise TypeError("fetch(body=…) takes bytes, str, a dict or a list")
    fetch_id = WORKER.next_fetch(
        {
            "op": "fetch",
            "call": call.id,
            "url": str(url),
            "method": str(method).upper(),
            "headers": [list(pair) for pair in pairs.items()],
            "body_base64": None if body is None else base64.b64encode(body).decode(),
        }
    )
    if _in_task():
        return PendingResponse(fetch_id, str(url), WORKER.expect(fetch_id))
    return _response(WORKER.wait_for(fetch_id), str(url))


def _in_task() -> bool:
    try:
        return asyncio.current_task() is not None
    except RuntimeError:
        return False


def _response(answer: dict[str, Any], url: str) -> Response:
    if answer.get("error") is not None:
        raise FetchError(str(answer["error"]))
    return Response(
        int(answer.get("status", 0)),
        str(answer.get("statusText", "")),
        str(answer.get("url", url)),
        Headers(answer.get("headers") or []),
        base64.b64decode(answer.get("body_base64") or ""),
    )


class PendingResponse:
    """``fetch`` in an async handler: ``await`` it for the ``Response``. Used without
    ``await``, it waits for the answer there and then (blocking) and acts as the response."""

    def __init__(self, fetch_id: int, url: str, future: asyncio.Future[dict[str, Any]]) -> None:
        self._id = fetch_id
        self._url = url
        self._future = future
        self._response: Response | None = None

    def __await__(self) -> Any:
        answer = yield from self._future.__await__()
        return _response(answer, self._url)

    def _resolved(self) -> Response:
        if self._response is None:
            if self._future.done():
                answer = self._future.result()
            else:
                answer = WORKER.wait_for(self._id)
                self._future.cancel()
            self._response = _response(answer, self._url)
        return self._response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolved(), name)


class Request:
    """The HTTP request a source function's ``on_request`` receives."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.method = str(payload.get("method", "POST"))
        self.url = str(payload.get("url", ""))
        self.headers = Headers(payload.get("headers") or [])
        self.body = base64.b64decode(payload.get("body_base64") or "")
        parsed = urllib.parse.urlsplit(self.url)
        self.path = parsed.path
        self.query = {key: values[0] for key, values in urllib.parse.parse_qs(parsed.query).items()}
        self.args = self.query

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """An urlencoded body, first value of each field."""
        return {key: values[0] for key, values in urllib.parse.parse_qs(self.text()).items()}

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Segment:
    """Source functions' calls into Segment, collected into the invocation's ``emitted``."""

    def _emit(self, kind: str, payload: Any, extra: dict[str, Any]) -> None:
        call = _current.get()
        if call is None:
            raise RuntimeError("Segment calls are only available while a handler runs")
        body = {**(payload if isinstance(payload, dict) else {}), **extra}
        call.emitted.append({"type": kind, **body})

    def identify(self, payload: Any = None, **fields: Any) -> None:
        self._emit("identify", payload, fields)

    def track(self, payload: Any = None, **fields: Any) -> None:
        self._emit("track", payload, fields)

    def group(self, payload: Any = None, **fields: Any) -> None:
        self._emit("group", payload, fields)

    def page(self, payload: Any = None, **fields: Any) -> None:
        self._emit("page", payload, fields)

    def screen(self, payload: Any = None, **fields: Any) -> None:
        self._emit("screen", payload, fields)

    def alias(self, payload: Any = None, **fields: Any) -> None:
        self._emit("alias", payload, fields)

    def set(self, payload: Any = None, **fields: Any) -> None:
        """``segment.set({"collection": …, "id": …, "properties": {…}})``: an object row."""
        self._emit("set", payload, fields)


class Cache:
    """``cache.load(key, ttl_ms, fn)``: fn's value, computed once per ``ttl_ms`` (None or -1:
    forever) per process; ``cache.delete(key)``. With an ``async def`` fn, ``load`` is
    awaitable (as in JavaScript); with a plain fn it is the value."""

    @staticmethod
    def _store() -> Store:
        call = _current.get()
        return call.cache if call is not None else WORKER.shared_cache

    def load(self, key: str, ttl_ms: float | None, fn: Any) -> Any:
        store = self._store()
        now = time.monotonic()
        hit = store.get(key)
        fresh = hit is not None and (hit[0] is None or hit[0] > now)
        expires = None if ttl_ms is None or ttl_ms < 0 else now + ttl_ms / 1000
        if inspect.iscoroutinefunction(fn):
            if fresh:
                return _ready(hit[1])  # type: ignore[index]
            if not _in_task():  # a plain handler: only an fn that never waits can run
                value = _drive(fn())
                store[key] = (expires, value)
                return _ready(value)
            return self._load_async(store, key, expires, fn)
        if fresh:
            return hit[1]  # type: ignore[index]
        value = fn()
        store[key] = (expires, value)
        return value

    @staticmethod
    async def _load_async(store: Store, key: str, expires: float | None, fn: Any) -> Any:
        value = await fn()
        store[key] = (expires, value)
        return value

    def delete(self, key: str) -> None:
        self._store().pop(key, None)


async def _ready(value: Any) -> Any:
    return value


def _drive(coroutine: Any) -> Any:
    """Run a coroutine outside the event loop: fine as long as it never waits on it."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("this waits on the event loop: make the handler an async def")


_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)


_ONLY = "only the pre-imported standard library is"
_ALLOWED = frozenset((*ALLOWED_MODULES, *LAZY_MODULES))  # C code imports with the caller's builtins


def _safe_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """``import`` for user code: the pre-imported standard library only."""
    if level != 0 or name not in _ALLOWED:
        raise ImportError(f"module {name!r} is not available in functions ({_ONLY})")
    return __import__(name, globals, locals, fromlist, level)


class Function:
    """One loaded function version: its namespace and the handlers it defines."""

    def __init__(self, source: str) -> None:
        user_builtins = dict(builtins.__dict__)
        user_builtins["__import__"] = _safe_import
        user_builtins["print"] = _print
        user_builtins["open"] = _no_open
        for name in (
            "exit",
            "quit",
            "help",
            "breakpoint",
            "input",
            "copyright",
            "credits",
            "license",
        ):
            user_builtins.pop(name, None)
        console = Console()
        segment = Segment()
        self.namespace: dict[str, Any] = {
            "__name__": "function",
            "__builtins__": user_builtins,
            "fetch": fetch,
            "FetchError": FetchError,
            "Headers": Headers,
            "console": console,
            "segment": segment,
            "Segment": segment,
            "cache": Cache(),
            "EventNotSupported": EventNotSupported,
            "InvalidEventPayload": InvalidEventPayload,
            "ValidationError": ValidationError,
            "RetryError": RetryError,
            "DropEvent": DropEvent,
        }
        code = compile(source, "function.py", "exec")
        exec(code, self.namespace)
        self._arity: dict[Any, int] = {}

    def handler(self, name: str) -> Any:
        found = self.namespace.get(PYTHON_NAMES.get(name, name))
        return found if callable(found) else None

    def call(self, handler: Any, payload: Any, settings: Any) -> Any:
        """``handler(payload, settings)`` (or ``handler(payload)`` when it takes one): its
        value, or a coroutine for an ``async def`` handler."""
        arity = self._arity.get(handler)
        if arity is None:
            try:
                arity = len(inspect.signature(handler).parameters)
            except (TypeError, ValueError):
                arity = 2
            self._arity[handler] = arity
        return handler(payload, settings) if arity >= 2 else handler(payload)


def _no_open(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError("functions cannot open files")


def _error(exc: BaseException) -> tuple[str, str]:
    """The protocol's error class and message for what the code threw."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "MemoryLimit", "the function ran out of memory"
    if name in ERROR_CLASSES and type(exc).__module__ == __name__:
        return name, str(exc)
    text = str(exc)
    return "Error", f"{name}: {text}" if text else name


class Worker:
    """The protocol's loop: messages are handled as they arrive; a plain handler runs at once,
    an ``async def`` one as a task, so calls waiting on ``fetch`` overlap."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.function: Function | None = None
        self._load_error = "the function is not loaded"
        self.shared_cache: Store = {}
        self._fetches = 0
        self._expected: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._later: collections.deque[dict[str, Any]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: dict[Any, asyncio.Task[None]] = {}  # async calls in flight, by id
        self._flush_soon = False
        self._ended = False

    def start(self) -> None:
        _loop.add_reader(self.channel.read_fd, self._readable)
        _loop.run_forever()
        self.channel.flush()

    # input
    def _readable(self) -> None:
        messages = self.channel.read()
        if messages is None:
            self._ended = True
            _loop.remove_reader(self.channel.read_fd)
            self._stop_when_done()
            return
        self._later.extend(messages)
        self._drain()

    def _drain(self) -> None:
        while self._later:
            self._handle(self._later.popleft())
        self.channel.flush()

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "invoke":
            self._invoke(message)
        elif op == "fetched":
            future = self._expected.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif op == "load":
            self._load(message)
        elif op == "reset_cache":
            self.shared_cache = {}
        elif op == "ping":  # the host asks whether the loop still turns (a late call)
            self.channel.send({"op": "pong"})
        elif op == "cancel":  # a call past its deadline: the host answered it already
            task = self._calls.pop(message.get("id"), None)
            if task is not None:
                task.cancel()

    def _load(self, message: dict[str, Any]) -> None:
        key = message.get("key")
        answer: dict[str, Any] = {"op": "loaded", "key": key}
        try:
            self.function = Function(str(message.get("code", "")))
        except SyntaxError as exc:
            where = f" (line {exc.lineno})" if exc.lineno else ""
            self._load_error = f"SyntaxError: {exc.msg}{where}"
            answer.update(error="LoadError", message=self._load_error)
        except BaseException as exc:  # top-level code that raises
            self._load_error = f"{type(exc).__name__}: {exc}"
            answer.update(error="LoadError", message=self._load_error)
        self.channel.send(answer)

    # fetch
    def next_fetch(self, message: dict[str, Any]) -> int:
        self._fetches += 1
        self.channel.send({**message, "id": self._fetches})
        self._schedule_flush()
        return self._fetches

    def expect(self, fetch_id: int) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = _loop.create_future()
        self._expected[fetch_id] = future
        return future

    def wait_for(self, fetch_id: int) -> dict[str, Any]:
        """Block until ``fetched`` number ``fetch_id`` arrives; what else arrives meanwhile
        is handled afterwards, on the loop."""
        self._expected.pop(fetch_id, None)
        self.channel.flush()
        while True:
            messages = self.channel.read()
            if messages is None:
                raise SystemExit("the host went away")
            found = None
            for message in messages:
                if message.get("op") == "fetched" and message.get("id") == fetch_id:
                    found = message
                else:
                    self._later.append(message)
            if self._later:
                _loop.call_soon(self._drain)
            if found is not None:
                return found

    # calls
    def _invoke(self, message: dict[str, Any]) -> None:
        name = str(message.get("handler", ""))
        call = Call(message.get("id"), {} if message.get("fresh_cache") else self.shared_cache)
        function = self.function
        if function is None:  # every call of code that did not load says why
            self._answer(call, error=("LoadError", self._load_error))
            return
        handler = function.handler(name)
        if handler is None:
            self._answer(call, error=("EventNotSupported", f"{name} is not implemented"))
            return
        payload = message.get("payload")
        if name == "onRequest" and isinstance(payload, dict):
            payload = Request(payload)
        token = _current.set(call)
        try:
            result = function.call(handler, payload, message.get("settings") or {})
        except BaseException as exc:  # anything the code throws is its answer
            self._answer(call, error=_error(exc))
            return
        finally:
            _current.reset(token)
        if not inspect.isawaitable(result):
            self._answer(call, value=result)
            return
        context = contextvars.copy_context()
        context.run(_current.set, call)
        task = _loop.create_task(self._finish(call, result), context=context)
        self._tasks.add(task)
        self._calls[call.id] = task
        task.add_done_callback(functools.partial(self._forget_call, call.id))
        task.add_done_callback(self._task_done)

    async def _finish(self, call: Call, awaitable: Any) -> None:
        try:
            value = await awaitable
        except asyncio.CancelledError:
            return  # cancelled by the host: no answer
        except BaseException as exc:  # anything the code throws is its answer
            self._answer(call, error=_error(exc))
        else:
            self._answer(call, value=value)

    def _forget_call(self, call_id: Any, _: asyncio.Task[None]) -> None:
        self._calls.pop(call_id, None)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._schedule_flush()
        self._stop_when_done()

    def _answer(
        self, call: Call, *, value: Any = None, error: tuple[str, str] | None = None
    ) -> None:
        answer: dict[str, Any] = {"op": "done", "id": call.id}
        if error is None:
            answer["value"] = value
        else:
            answer["error"], answer["message"] = error
        answer["logs"] = call.logs
        answer["emitted"] = call.emitted
        try:
            self.channel.send(answer)
        except (TypeError, ValueError) as exc:  # a value (or emitted call) JSON cannot carry
            why = f"TypeError: the function's answer cannot be sent: {exc}"
            self.channel.send(
                {
                    "op": "done",
                    "id": call.id,
                    "error": "Error",
                    "message": why,
                    "logs": call.logs,
                    "emitted": [],
                }
            )

    def _schedule_flush(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            _loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        self.channel.flush()

    def _stop_when_done(self) -> None:
        if self._ended and not self._tasks:
            _loop.call_soon(_loop.stop)


WORKER: Worker  # the one worker of this process, made by main()


class _Prctl:
    """seccomp, loaded from the BPF the host compiled (no libseccomp in here)."""

    def __init__(self, bpf: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))

        class Program(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._program = Program(len(bpf) // 8, ctypes.addressof(self._buffer))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]

    def install(self) -> None:
        if self._prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if self._prctl(22, 2, ctypes.addressof(self._program), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def main() -> None:
    # The protocol's pipes move to private descriptors; fd 1 becomes stderr, fd 0 empty.
    read_fd, write_fd = os.dup(0), os.dup(1)
    os.set_inheritable(read_fd, False)
    os.set_inheritable(write_fd, False)
    os.dup2(2, 1)
    empty_read, empty_write = os.pipe()
    os.close(empty_write)
    os.dup2(empty_read, 0)
    os.close(empty_read)
    sys.stdout = _Writer("log")
    sys.stderr = _Writer("error")
    root = logging.getLogger()
    root.handlers[:] = [_LogHandler()]
    root.setLevel(logging.INFO)
    global WORKER
    WORKER = Worker(Channel(read_fd, write_fd))
    bpf = bytes.fromhex(sys.argv[1]) if len(sys.argv) > 1 else b""
    if bpf:
        _Prctl(bpf).install()
    # The language layer: what is not pre-imported cannot be imported (nor found: no opens).
    for name in (
        "ctypes",
        "_ctypes",
        "ctypes._endian",
        "ctypes.util",
        "subprocess",
        "socket",
        "_socket",
    ):
        sys.modules.pop(name, None)
    sys.path.clear()
    sys.path_importer_cache.clear()
    WORKER.start()


if __name__ == "__main__":
    main()
