"""How a sandbox process is confined: the layers every function worker starts under.

``confine`` turns a worker's command into one that starts with a clean environment (PATH and
LANG only) in an empty directory, under resource limits (CPU seconds, memory, no file writes,
few descriptors, no core dumps), with ``PR_SET_NO_NEW_PRIVS`` and a seccomp filter that denies
the system calls a function never needs: network sockets, new processes, debugging other
processes, namespaces, mounts, kernel keyrings, eBPF, io_uring, and opening a file for writing.
When bubblewrap (``bwrap``) works here, the command also runs in fresh namespaces (no network,
its own PIDs) that see only read-only binds of the interpreter, its libraries and ``readable``.

Each layer holds without the others: a worker without bwrap still cannot open a socket, start a
process or write a file. ``execve`` stays allowed because the filter is installed before the
worker's own exec; the language worker closes that door itself (the Python worker installs a
tighter filter after its startup) or never offers it to user code (Node).

The filter is compiled once, here, to classic BPF; the child only calls ``prctl`` (no library
work between fork and exec). Under bwrap the filter cannot come first (bwrap needs the calls
it denies), so a short launcher inside the sandbox installs it and execs the worker.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyseccomp as seccomp

log = logging.getLogger(__name__)

# HEADWATER_FUNCTIONS_BWRAP=0 turns bubblewrap off (tests of the other layers; hosts where
# unprivileged namespaces are forbidden and the probe would only waste a spawn).
BWRAP_ENV: Final = "HEADWATER_FUNCTIONS_BWRAP"
OPEN_FILES: Final = 64  # RLIMIT_NOFILE: pipes, epoll, a few libraries; no room for hoarding
ENVIRONMENT: Final = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2

# Address families a function has no business with; AF_UNIX is denied too (its connect would
# reach the host's local services without bwrap), only socketpair stays.
_CLONE_THREAD: Final = 0x00010000
_WRITE_FLAGS: Final = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)

# Denied outright with EPERM. Names the running libseccomp does not know are skipped.
DENIED: Final = (
    # network: no sockets, and nothing to do with one passed in
    "socket", "connect", "bind", "listen", "accept", "accept4",
    # processes: fork in every spelling (glibc forks through clone, below)
    "fork", "vfork",
    # other processes, the kernel, the machine
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsmount", "fsconfig", "fspick", "mount_setattr", "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "iopl", "ioperm",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "personality", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "fanotify_init", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "uselib", "vhangup",
    # io_uring runs its operations (open, connect…) without passing through this filter
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the file system: nothing created, renamed, removed or re-permissioned
    "creat", "mknod", "mknodat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "truncate", "utime", "utimes", "utimensat", "futimesat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
)  # fmt: skip
# Answered ENOSYS so the C library falls back to a call the filter can inspect.
UNSUPPORTED: Final = ("clone3", "openat2")


@dataclass(frozen=True)
class Confined:
    """A command ready for ``subprocess``/``asyncio`` ``create_subprocess_exec``: pass
    ``argv``, ``env``, ``cwd`` and ``preexec_fn`` as they are."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    preexec_fn: Callable[[], None] | None


def _rule(flt: seccomp.SyscallFilter, action: int, name: str, *args: seccomp.Arg) -> None:
    try:
        flt.add_rule(action, name, *args)
    except (OSError, ValueError, RuntimeError):  # a call this kernel/libseccomp does not know
        log.debug("seccomp: no system call %s here", name)


def build_filter(extra_denied: Sequence[str] = (), *, deny_open: bool = False) -> bytes:
    """The policy's seccomp filter as classic BPF (``struct sock_filter`` array).
    ``extra_denied``/``deny_open``: the tighter filter a language worker adds after startup."""
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in (*DENIED, *extra_denied):
        _rule(flt, deny, name)
    for name in UNSUPPORTED:
        _rule(flt, seccomp.ERRNO(errno.ENOSYS), name)
    # clone: threads only (CLONE_THREAD set); a new process is a fork.
    _rule(flt, deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    if deny_open:
        _rule(flt, deny, "open")
        _rule(flt, deny, "openat")
    else:  # read-only opens only
        for flag in _WRITE_FLAGS:
            _rule(flt, deny, "open", seccomp.Arg(1, seccomp.MASKED_EQ, flag, flag))
            _rule(flt, deny, "openat", seccomp.Arg(2, seccomp.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as sink:
        flt.export_bpf(sink)
        sink.seek(0)
        return sink.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Installer:
    """Everything the child needs to install the filter, allocated before the fork."""

    def __init__(self, bpf: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._program = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        self._prctl.restype = ctypes.c_int
        self._pointer = ctypes.addressof(self._program)

    def no_new_privs(self) -> None:
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")

    def seccomp(self) -> None:
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._pointer, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@functools.cache
def _policy_bpf() -> bytes:
    return build_filter()


@functools.cache
def _installer() -> _Installer:
    return _Installer(_policy_bpf())


@functools.cache
def _empty_directory() -> str:
    """The working directory of every worker: empty, and nothing may be written to it."""
    path = tempfile.mkdtemp(prefix="headwater-fn-")
    os.chmod(path, 0o555)
    return path


def _limits(
    memory_bytes: int | None, address_space_bytes: int | None, cpu_seconds: int
) -> list[tuple[int, int]]:
    limits = [
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_NOFILE, OPEN_FILES),
        (resource.RLIMIT_CORE, 0),
    ]
    if memory_bytes is not None:
        limits.append((resource.RLIMIT_DATA, memory_bytes))
    if address_space_bytes is not None:
        limits.append((resource.RLIMIT_AS, address_space_bytes))
    return limits


def _apply(limits: list[tuple[int, int]]) -> None:
    for kind, value in limits:
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later.
        hard = value + 1 if kind == resource.RLIMIT_CPU else value
        resource.setrlimit(kind, (value, hard))


# The launcher bwrap runs: install the BPF given in hex, then exec the worker. Python's -I -S
# startup reads only the standard library; ctypes loads libc from the already-mapped process.
_LAUNCHER: Final = """\
import ctypes, os, sys
bpf = bytes.fromhex(sys.argv[1])
buf = ctypes.create_string_buffer(bpf, len(bpf))
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = P(len(bpf) // 8, ctypes.addressof(buf))
prctl = ctypes.CDLL(None, use_errno=True).prctl
prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if prctl(38, 1, None, 0, 0) or prctl(22, 2, ctypes.addressof(prog), 0, 0):
    raise SystemExit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _launcher_python() -> str:
    return os.path.realpath(sys.executable)


def _binds(argv0: str, readable: Sequence[Path]) -> list[str]:
    """Read-only binds: the system's programs and libraries (/usr, merged /lib…), the
    interpreters (which may live elsewhere, in a virtual environment) and ``readable``."""
    paths: list[str] = ["/usr"]
    for program in (argv0, _launcher_python()):
        real = os.path.realpath(shutil.which(program) or program)
        paths.append(str(Path(real).parent.parent if "/bin/" in real else Path(real).parent))
    paths.append(sys.base_prefix)
    paths.extend(os.path.realpath(p) for p in readable)
    args: list[str] = []
    seen: set[str] = set()
    for path in sorted(paths, key=len):
        if not os.path.exists(path) or any(path == s or path.startswith(s + "/") for s in seen):
            continue
        seen.add(path)
        args += ["--ro-bind", path, path]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = f"/{link}"
        if os.path.islink(target):
            args += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target) and target not in seen:
            args += ["--ro-bind", target, target]
    return args


def _bwrap_prefix(argv0: str, readable: Sequence[Path]) -> list[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    env: list[str] = []
    for name, value in ENVIRONMENT.items():
        env += ["--setenv", name, value]
    return [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *env,
        # The tmpfs first: a readable path under /tmp is bound onto it, not hidden by it.
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        *_binds(argv0, readable),
        "--chdir",
        "/tmp",
        "--",
    ]


def _wrap(argv: Sequence[str], readable: Sequence[Path], *, launcher: bool) -> list[str]:
    if not launcher:
        return [*_bwrap_prefix(argv[0], readable), *argv]
    program = shutil.which(argv[0]) or argv[0]
    return [
        *_bwrap_prefix(argv[0], readable),
        _launcher_python(),
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        _policy_bpf().hex(),
        os.path.realpath(program),
        *argv[1:],
    ]


@functools.cache
def bwrap_works() -> bool:
    """Whether bubblewrap is on PATH and can make its namespaces here (probed once)."""
    if os.environ.get(BWRAP_ENV, "1").lower() in ("0", "false", "no", "off"):
        return False
    if shutil.which("bwrap") is None:
        return False
    try:
        probe = subprocess.run(
            [*_bwrap_prefix("/usr/bin/true", ()), "/usr/bin/true"],
            capture_output=True,
            timeout=10,
            env=dict(ENVIRONMENT),
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("bubblewrap does not start here (%s): functions run without it", error)
        return False
    if probe.returncode != 0:
        log.warning(
            "bubblewrap does not work here (%s): functions run without it",
            probe.stderr.decode(errors="replace").strip(),
        )
        return False
    return True


def confine(
    argv: Sequence[str],
    *,
    readable: Sequence[Path],
    memory_bytes: int | None,
    address_space_bytes: int | None,
    cpu_seconds: int,
    bwrap: bool | None = None,
    filters_itself: bool = False,
) -> Confined:
    """``argv`` under every layer this host supports. ``memory_bytes`` caps the data segment
    (RLIMIT_DATA: Node, whose V8 reserves far more address space than it uses),
    ``address_space_bytes`` the whole address space (RLIMIT_AS: Python); ``readable`` are the
    paths the worker must read (its script, its packages) when bwrap hides the rest. ``bwrap``:
    None uses it when it works here; False leaves it out (tests of the other layers).
    ``filters_itself``: the program installs a filter at least as strict as the policy's
    before it runs anything untrusted (the Python worker), so under bwrap it needs no
    launcher (one interpreter start less)."""
    limits = _limits(memory_bytes, address_space_bytes, cpu_seconds)
    installer = _installer()
    wrapped = bwrap_works() if bwrap is None else bwrap and bwrap_works()

    def preexec() -> None:
        _apply(limits)
        installer.no_new_privs()
        if not wrapped:
            installer.seccomp()

    # Resolved with the host's PATH: the worker's own PATH is the clean one.
    argv = [os.path.realpath(shutil.which(argv[0]) or argv[0]), *argv[1:]]
    command = _wrap(argv, readable, launcher=not filters_itself) if wrapped else argv
    return Confined(argv=command, env=dict(ENVIRONMENT), cwd=_empty_directory(), preexec_fn=preexec)
