"""Python side of the Node test oracle (tests/oracle/oracle.mjs); the protocol is described there.

One `node oracle.mjs` process answers many cases per call, so a differential test sends its
whole table of cases at once::

    with NodeOracle() as oracle:
        results = oracle.call("tsub.matches", [{"event": {...}, "matcher": {...}}, ...])
        assert results[0].value is True
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

ORACLE_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TIMEOUT: Final = 60.0
_STDERR_LINES: Final = 50


class OracleError(RuntimeError):
    """The oracle could not be started, or could not answer a request."""


class OracleTimeout(OracleError):
    """The oracle did not answer within the timeout (the process is then stopped)."""


class Undefined:
    """The type of `UNDEFINED`: the library answered JavaScript's `undefined`."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()


@dataclass(frozen=True)
class OracleResult:
    """One case's answer: `value` (`UNDEFINED` for JavaScript's undefined), or `error`."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        """The value; raises `OracleError` with the library's message when the case failed."""
        if self.error is not None:
            raise OracleError(f"the oracle answered an error: {self.error}")
        return self.value


def _result(raw: Any) -> OracleResult:
    if isinstance(raw, dict):
        if "error" in raw:
            return OracleResult(error=str(raw["error"]))
        if raw.get("undefined") is True:
            return OracleResult(value=UNDEFINED)
        if "value" in raw:
            return OracleResult(value=raw["value"])
    raise OracleError(f"malformed result from the oracle: {raw!r}")


class NodeOracle:
    """A long-lived `node oracle.mjs` process; `call` sends one request and waits for its answer.

    Calls are serialised by a lock. A timed-out or crashed process is stopped; the next call
    starts a fresh one.
    """

    def __init__(
        self, directory: Path = ORACLE_DIR, *, node: str = "node", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.directory = directory
        self.node = node
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process (if it is not running) and wait until it answers a ping."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            self._stop()
            if not (self.directory / "node_modules").is_dir():
                raise OracleError(
                    f"the test oracles' npm packages are not installed ({self.directory}/node_modules "
                    "is missing): run `npm ci --prefix tests/oracle` (scripts/test.sh does it for you)"
                )
            node = shutil.which(self.node)
            if node is None:
                raise OracleError(
                    f"`{self.node}` is not on PATH: the test oracles need Node.js 20+"
                )
            self._stdout = queue.Queue()
            self._stderr.clear()
            self._process = subprocess.Popen(
                [node, "oracle.mjs"],
                cwd=self.directory,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert self._process.stdout is not None and self._process.stderr is not None
            threading.Thread(
                target=self._pump_stdout,
                args=(self._process.stdout, self._stdout),
                name="oracle-stdout",
                daemon=True,
            ).start()
            threading.Thread(
                target=self._pump_stderr,
                args=(self._process.stderr,),
                name="oracle-stderr",
                daemon=True,
            ).start()
            try:
                pong = self._request("ping", [{}])
            except OracleError:
                self._stop()
                raise
            if pong != [OracleResult(value="pong")]:
                self._stop()
                raise OracleError(f"the oracle answered a ping with {pong!r}")

    def close(self) -> None:
        """Stop the process: close its stdin, and kill it if it has not exited 5 s later."""
        with self._lock:
            self._stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def call(self, op: str, cases: list[dict[str, Any]]) -> list[OracleResult]:
        """Answer every case of one op, in order (one request, one response)."""
        with self._lock:
            self.start()
            return self._request(op, cases)

    def call_one(self, op: str, case: dict[str, Any]) -> OracleResult:
        """Answer one case."""
        return self.call(op, [case])[0]

    def _request(self, op: str, cases: list[dict[str, Any]]) -> list[OracleResult]:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            line = json.dumps({"op": op, "cases": cases}, allow_nan=False, separators=(",", ":"))
        except ValueError as e:  # NaN or Infinity: JSON has no spelling for them
            raise OracleError(f"cases for {op!r} cannot be sent as JSON: {e}") from e
        try:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
        except OSError as e:
            self._stop()
            raise OracleError(f"the oracle process is gone ({e}){self._stderr_tail()}") from e
        try:
            answer = self._stdout.get(timeout=self.timeout)
        except queue.Empty:
            self._stop(kill=True)
            raise OracleTimeout(
                f"the oracle did not answer {op!r} ({len(cases)} cases) within {self.timeout:g} s; "
                f"the process was stopped{self._stderr_tail()}"
            ) from None
        if answer is None:
            self._stop()
            raise OracleError(
                f"the oracle process exited while answering {op!r}{self._stderr_tail()}"
            )
        try:
            response = json.loads(answer)
        except ValueError:
            response = None
        if not isinstance(response, dict):
            self._stop()
            raise OracleError(f"malformed response from the oracle: {answer[:200]!r}")
        if "error" in response:
            raise OracleError(f"the oracle rejected the {op!r} request: {response['error']}")
        results = response.get("results")
        if not isinstance(results, list) or len(results) != len(cases):
            self._stop()
            raise OracleError(
                f"the oracle answered {op!r} with a malformed response: {answer[:200]!r}"
            )
        return [_result(r) for r in results]

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _pump_stdout(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _pump_stderr(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _stderr_tail(self) -> str:
        time.sleep(0.05)  # let the stderr reader catch the process's last words
        tail = "\n".join(self._stderr)
        return f"; its stderr ends with:\n{tail}" if tail else ""

    def _stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
