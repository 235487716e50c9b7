"""``headwater serve`` as a supervisor of its role processes.

The Tracking API's event loop must not share a GIL with the log consumers and delivery workers,
so ``serve`` starts them as child processes (``serve --role ingest|api|worker --supervised``;
the api process serves what the ingest processes pass it, ``headwater.handoff``): one
command, one Ctrl-C, the children's output on its own stdout with a role prefix, and a child
that dies restarted after a back-off. Children die with the supervisor, even when it is
SIGKILLed, so a killed server leaves nothing holding the port or the database.

The supervisor is one thread: a ``select`` over the children's pipes and a wake-up pipe for
signals, so forking (with a ``preexec_fn``) never races another thread's locks.

Both sides live here: the parent (``Supervisor``, ``RunDirectory``) and what a child needs
(``reuseport_socket``, ``run_headless``, ``ArchiveHealthRelay``). The run directory,
``<data dir>/run``, holds the children's pid files, the metrics of every process
(``PROMETHEUS_MULTIPROC_DIR``), the worker's archive health for ``/ready`` and the api
process's socket (``api.sock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from prometheus_client import multiprocess

from headwater.observe.metrics import MULTIPROCESS_ENV

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RUN_DIR = "run"
METRICS_DIR = "metrics"
LOCK_FILE = "serve.pid"
ARCHIVE_HEALTH_FILE = "archive-failing"

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STEADY_SECONDS = 60.0  # a child that ran this long starts its back-off afresh
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 1.0  # the loop looks at its children at least this often
MAX_LINE = 64 * 1024  # a longer line without a newline is passed on in pieces
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


def next_delay(previous: float | None, ran_seconds: float) -> float:
    """Seconds before restarting a child that ran ``ran_seconds``: 1 s, doubling up to 30 s
    while it keeps dying young; ``previous`` is the wait before its last start (None: none)."""
    if previous is None or ran_seconds >= STEADY_SECONDS:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


# --- the parent ------------------------------------------------------------------------------


@dataclass
class RunDirectory:
    """``<data dir>/run``, locked by one supervisor at a time: a second ``serve`` on the same
    data directory would empty the first one's metrics and overwrite its pid files."""

    path: Path
    lock_fd: int

    @classmethod
    def claim(cls, data_dir: Path) -> RunDirectory:
        """Lock the run directory and clear what a previous supervisor left in it."""
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = data_dir / RUN_DIR
        path.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SystemExit(
                f"headwater serve: another `headwater serve` (pid {holder}) is running with "
                f"the data directory {data_dir}; stop it first."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for stale in path.iterdir():
            if stale.name == LOCK_FILE:
                continue
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        (path / METRICS_DIR).mkdir(mode=0o700)
        return cls(path, fd)

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_DIR

    def pid_file(self, name: str) -> Path:
        return self.path / f"{name}.pid"

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / LOCK_FILE).unlink()
        os.close(self.lock_fd)


def check_port(host: str, port: int) -> int:
    """Bind ``host:port`` once without SO_REUSEPORT and return the port (the one chosen, for
    port 0): the ingest children bind with SO_REUSEPORT, which would otherwise let a second
    server share the port with a running one instead of failing."""
    family, kind, proto, _, address = _address(host, port)
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float | None = None  # the back-off before the current start
    restart_at: float | None = None
    pending: bytes = b""  # output after the last newline


@dataclass
class Supervisor:
    run: RunDirectory
    children: list[Child]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    out: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    grace: float = STOP_GRACE_SECONDS

    def __post_init__(self) -> None:
        self.env = {**self.env, MULTIPROCESS_ENV: str(self.run.metrics), "PYTHONUNBUFFERED": "1"}
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._kill_at = 0.0
        self._killed = False
        self._quiet = False  # our stdout is gone
        self._preexec = _dying_with(os.getpid())

    def run_until_stopped(self) -> int:
        """Start every child, keep them running until a stop signal, then stop them: 0 when
        they all stopped within the grace period, 1 when some had to be killed."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, _note) for sig in (*STOP_SIGNALS, signal.SIGCHLD)}
        self._selector.register(wake_read, selectors.EVENT_READ, None)
        try:
            for child in self.children:
                self._start(child)
            while not (self._stopping and not self._running()):
                for key, _ in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._signals(os.read(wake_read, 256))
                    else:
                        self._pump(key.data)
                self._reap()
                self._restart_due()
                self._kill_overdue()
        finally:
            for child in self._running():
                assert child.process is not None
                child.process.kill()
                child.process.wait()
                self._exited(child)
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self._killed else 0

    # --- children -------------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.started = time.monotonic()
        try:
            process = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=self._preexec,
                # Out of the terminal's process group: a Ctrl-C reaches the supervisor alone,
                # which passes it on once, rather than every child getting it twice.
                process_group=0,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._schedule_restart(child, f"{child.name} could not start ({exc})")
            return
        child.process = process
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self._selector.register(process.stdout, selectors.EVENT_READ, child)
        scratch = self.run.path / f"{child.name}.pid.tmp"
        scratch.write_text(f"{process.pid}\n")
        scratch.replace(self.run.pid_file(child.name))  # readers never see half a file
        self._say(f"started {child.name} (pid {process.pid})")

    def _running(self) -> list[Child]:
        return [c for c in self.children if c.process is not None]

    def _reap(self) -> None:
        for child in self._running():
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                continue
            ran = time.monotonic() - child.started
            self._exited(child)
            if self._stopping:
                self._say(f"{child.name} stopped (code {code})")
            else:
                self._schedule_restart(child, f"{child.name} exited with code {code}", ran)

    def _exited(self, child: Child) -> None:
        """Pass on the dead child's last output and forget its pid."""
        assert child.process is not None
        pid = child.process.pid
        stdout = child.process.stdout
        if stdout is not None and not stdout.closed:
            self._drain(child, stdout.fileno())
            self._selector.unregister(stdout)
            stdout.close()
        self._flush_partial(child)
        child.process = None
        multiprocess.mark_process_dead(pid, str(self.run.metrics))  # type: ignore[no-untyped-call]
        with contextlib.suppress(FileNotFoundError):
            self.run.pid_file(child.name).unlink()

    def _schedule_restart(self, child: Child, what: str, ran: float = 0.0) -> None:
        child.delay = next_delay(child.delay, ran)
        child.restart_at = time.monotonic() + child.delay
        self._say(f"{what}; restarting in {child.delay:g} s")

    def _restart_due(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.process is None and child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    # --- stopping -------------------------------------------------------------------------

    def _signals(self, received: bytes) -> None:
        for number in received:
            if number in STOP_SIGNALS:
                self._stop(signal.Signals(number))

    def _stop(self, sig: signal.Signals) -> None:
        if not self._stopping:
            self._stopping = True
            self._kill_at = time.monotonic() + self.grace
            names = ", ".join(c.name for c in self._running()) or "nothing"
            self._say(f"stopping on {sig.name}: waiting up to {self.grace:g} s for {names}")
        forwarded = signal.SIGTERM if sig == signal.SIGHUP else sig
        for child in self._running():
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(forwarded)

    def _kill_overdue(self) -> None:
        if not self._stopping or time.monotonic() < self._kill_at:
            return
        for child in self._running():
            assert child.process is not None
            if child.process.poll() is None:
                self._say(f"{child.name} did not stop within {self.grace:g} s; killing it")
                child.process.kill()
                self._killed = True
        self._kill_at = float("inf")

    def _timeout(self) -> float:
        deadlines = [c.restart_at for c in self.children if c.restart_at is not None]
        if self._stopping:
            deadlines = [self._kill_at]
        wait = min([POLL_SECONDS, *(d - time.monotonic() for d in deadlines)])
        return max(wait, 0.0)

    # --- output ---------------------------------------------------------------------------

    def _pump(self, child: Child) -> None:
        stdout = child.process.stdout if child.process is not None else None
        if stdout is not None and not self._drain(child, stdout.fileno()):
            # The child closed its output (it is exiting): stop watching the pipe, or every
            # select would return at once until the child is reaped.
            self._selector.unregister(stdout)
            stdout.close()

    def _drain(self, child: Child, fd: int) -> bool:
        """Pass on what the pipe holds; False at its end."""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return False
            if not chunk:
                return False
            lines = (child.pending + chunk).split(b"\n")
            child.pending = lines.pop()
            if len(child.pending) > MAX_LINE:
                lines.append(child.pending)
                child.pending = b""
            self._write(child.name, lines)

    def _flush_partial(self, child: Child) -> None:
        if child.pending:
            self._write(child.name, [child.pending])
            child.pending = b""

    def _say(self, message: str) -> None:
        self._write("serve", [message.encode()])

    def _write(self, name: str, lines: list[bytes]) -> None:
        if self._quiet or not lines:
            return
        prefix = f"[{name}] ".encode()
        try:
            self.out.write(b"".join(prefix + line + b"\n" for line in lines))
            self.out.flush()
        except (BrokenPipeError, ValueError):
            self._quiet = True  # nobody reads our output any more; keep supervising


def _note(_signum: int, _frame: object) -> None:
    """Signals are read from the wake-up pipe; the handler only has to exist."""


def _dying_with(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the supervisor dies.

    ``prctl`` is looked up here, in the parent: the child between fork and exec should only
    call it. The parent may have died before the child asked, hence the check afterwards.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: children outlive a killed supervisor
    arguments = (
        ctypes.c_int(PR_SET_PDEATHSIG),
        *(ctypes.c_ulong(n) for n in (signal.SIGKILL, 0, 0, 0)),
    )

    def preexec() -> None:
        prctl(*arguments)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


# --- the children ----------------------------------------------------------------------------


def _address(host: str, port: int) -> tuple[Any, ...]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket of this ingest process on the port its siblings share: with
    SO_REUSEPORT each has its own accept queue and the kernel spreads connections over them."""
    family, kind, proto, _, address = _address(host, port)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def run_headless(app: ASGIApp, tick: Callable[[], None], interval: float = 1.0) -> int:
    """Run an ASGI application's lifespan without serving HTTP (the worker: its consumers
    start at startup and stop at shutdown), calling ``tick`` every ``interval`` seconds, until
    SIGINT or SIGTERM. Returns the exit code: 3 when the startup failed, as uvicorn does."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        running = asyncio.ensure_future(app(scope, inbox.get, outbox.put))

        async def answer() -> MutableMapping[str, Any]:
            reply = asyncio.create_task(outbox.get())
            await asyncio.wait({reply, running}, return_when=asyncio.FIRST_COMPLETED)
            if not reply.done():
                reply.cancel()
                running.result()  # raises what the application raised
                raise RuntimeError("the application returned during its lifespan")
            return reply.result()

        await inbox.put({"type": "lifespan.startup"})
        started = await answer()
        if started["type"] != "lifespan.startup.complete":
            print(f"startup failed: {started.get('message', '')}", file=sys.stderr, flush=True)
            return 3
        while not stop.is_set():
            tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        await inbox.put({"type": "lifespan.shutdown"})
        await answer()
        await running
        return 0

    return asyncio.run(main())


def publish_archive_health(path: Path, failing: str | None) -> None:
    """The worker's half of ``/ready``: why its archive cannot write, or no file at all."""
    if failing is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    reason = f"the archive cannot write its files: {failing}"
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == reason:
            return
    scratch = path.with_suffix(".tmp")
    scratch.write_text(reason)
    scratch.replace(path)


class ArchiveHealthRelay:
    """The ingest's ``/ready`` answers 503 while the worker's archive cannot write, as a
    single process does: the disk behind it is full or gone, and traffic belongs elsewhere."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/ready":
            try:
                reason = self.path.read_bytes()
            except FileNotFoundError:
                reason = b""
            if reason:
                body = b'{"status":"unavailable","reason":' + _json_string(reason) + b"}"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"retry-after", b"5"),
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _json_string(text: bytes) -> bytes:
    return msgspec.json.encode(text.decode(errors="replace"))
