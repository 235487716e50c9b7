"""How a Python function's sandbox process starts: this interpreter running ``python_worker.py``.

The worker runs isolated (``-I``: no user site, no ``PYTHON*`` variables; ``-S``: no site
packages, the standard library only; ``-B``: no bytecode written) under the confinement policy
(``policy.confine``: clean environment, rlimits with RLIMIT_AS as its memory cap, seccomp,
bubblewrap when it works). Once it has pre-imported its standard library it installs a tighter
filter, compiled here and passed in argv: the policy's plus no ``open``/``openat`` (nothing is
read from disk any more: ``/etc/passwd`` stays out of reach without bwrap too) and no
``execve`` (the worker cannot turn into another program). That filter contains the policy's,
so under bwrap the worker needs no launcher; without bwrap the policy's filter is installed
before the exec as for every worker.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Final

from headwater.functions.sandbox.policy import Confined, build_filter, confine

WORKER: Final = Path(__file__).with_name("python_worker.py")
# The whole address space (RLIMIT_AS): Python reserves little beyond what it uses, so this is
# its memory cap. A warm worker needs about 25 MiB of it.
ADDRESS_SPACE_BYTES: Final = 256 << 20
# CPU seconds over the process's life: a backstop, the host's per-call deadline (5 s) kills
# first. A warm process serving many calls earns no more than this before it is replaced.
CPU_SECONDS: Final = 3600
# What the worker denies itself after startup, on top of the policy's filter.
WORKER_DENIED: Final = ("execve", "execveat", "memfd_create", "prctl", "seccomp")


@functools.cache
def _worker_filter() -> str:
    return build_filter(WORKER_DENIED, deny_open=True).hex()


def command(
    *, address_space_bytes: int = ADDRESS_SPACE_BYTES, bwrap: bool | None = None
) -> Confined:
    """The worker's confined command line, for the runtime's pool."""
    argv = [sys.executable, "-I", "-S", "-B", str(WORKER), _worker_filter()]
    return confine(
        argv,
        readable=[WORKER],
        memory_bytes=None,
        address_space_bytes=address_space_bytes,
        cpu_seconds=CPU_SECONDS,
        bwrap=bwrap,
        filters_itself=True,  # the worker's filter is the policy's and more
    )
