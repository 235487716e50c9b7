"""How a JavaScript function's sandbox process starts: Node.js running ``worker.js``, confined.

Node runs with its permission model: the file system is readable only at the worker's own file
and the pre-installed libraries; child processes, worker threads, addons and WASI are not
granted. Code generation from strings (``eval``, ``new Function``) is off, so reaching a host
``Function`` leads nowhere. ``--max-old-space-size`` caps V8's heap (out of it, V8 aborts the
process: the host answers ``MemoryLimit``) and RLIMIT_DATA caps the rest (Buffers). Around it
``policy.confine`` adds the clean environment, rlimits, seccomp and bubblewrap when present.
"""

from __future__ import annotations

import os
from pathlib import Path

from headwater.destinations.runtime.node import find_node
from headwater.functions.sandbox.policy import Confined, confine

WORKER_JS = Path(__file__).with_name("worker.js")
HEAP_MB = 128  # V8's old space
# RLIMIT_DATA: V8's heap, Buffers and Node's own (startup needs ~300 MiB of writable mappings,
# measured: 256 MiB aborts at startup)
DATA_MB = 512
# RLIMIT_CPU over a warm process's life: past it the process is killed and replaced (its calls
# in flight run again alone); the per-call deadline is the host's timer.
CPU_SECONDS = 3600


def command(
    *,
    heap_mb: int = HEAP_MB,
    data_mb: int = DATA_MB,
    libraries: Path | None = None,
    bwrap: bool | None = None,
    script: Path = WORKER_JS,
) -> Confined:
    """The worker's confined command; ``libraries``: the pre-installed libraries' directory.
    ``script``: another script in the worker's place, under the same layers (tests of what
    code that escaped the vm context could do)."""
    node = find_node()
    readable = [script, *([libraries] if libraries is not None else [])]
    argv = [
        str(node.executable),
        "--permission",
        *(f"--allow-fs-read={os.path.realpath(path)}" for path in readable),
        f"--max-old-space-size={heap_mb}",
        "--disallow-code-generation-from-strings",
        str(script.resolve()),
        str(libraries.resolve()) if libraries is not None else "",
    ]
    return confine(
        argv,
        readable=[node.executable.resolve().parent.parent, *readable],
        memory_bytes=data_mb * 1024 * 1024,
        address_space_bytes=None,
        cpu_seconds=CPU_SECONDS,
        bwrap=bwrap,
    )
