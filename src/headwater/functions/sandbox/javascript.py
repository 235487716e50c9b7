"""How a JavaScript function's sandbox process starts: Node.js running ``worker.js``.

Node runs with its permission model: the file system is readable only at the worker's own file
and the pre-installed libraries, and child processes, worker threads, addons and WASI are off
(not granted). ``--max-old-space-size`` caps V8's heap (out of it, V8 aborts the process: the
host answers ``MemoryLimit``); the environment is empty, so nothing of the host's leaks in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from headwater.destinations.runtime.node import find_node

WORKER_JS = Path(__file__).with_name("worker.js")
HEAP_MB = 128  # V8's old space; the process's RSS is about 40 MiB more


@dataclass(frozen=True)
class Launch:
    """What the pool runs: the same fields as ``policy.Confined``."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    preexec_fn: Callable[[], None] | None = None


def command(*, heap_mb: int = HEAP_MB, libraries: Path | None = None) -> Launch:
    """The worker's command line; ``libraries``: the pre-installed libraries' directory."""
    node = find_node()
    readable = [WORKER_JS, *([libraries] if libraries is not None else [])]
    argv = [
        str(node.executable),
        "--permission",
        *(f"--allow-fs-read={path}" for path in readable),
        f"--max-old-space-size={heap_mb}",
        "--disallow-code-generation-from-strings",
        str(WORKER_JS),
        str(libraries or ""),
    ]
    return Launch(argv=argv, env={"LANG": "C.UTF-8"}, cwd="/")
