"""The functions' real sandbox as tests use it: its fetch may reach the loopback receivers."""

from __future__ import annotations

from headwater.functions.sandbox import Runtime
from headwater.functions.sandbox.runtime import SandboxRuntime

LOOPBACK = "127.0.0.1"  # the receivers' host: listed by name, as private addresses must be


def sandbox_runtime() -> Runtime:
    return SandboxRuntime(fetch_allow=[LOOPBACK, "*"])
