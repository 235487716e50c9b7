"""Installing the pinned Actions package into a directory, with ``npm ci`` from our lock file.

An install is complete when its stamp names the lock file it came from: the stamp is written
last (after ``catalog.json``, the package's metadata that ``catalog.js`` extracts), so an
interrupted install is redone, and a newer lock file (``headwater catalog update``) is noticed.
Tests and CI install ahead of time; ``serve`` installs on first start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from headwater.destinations.runtime.node import Node, find_node
from headwater.errors import HeadwaterError

PACKAGE = Path(__file__).parent / "package"
CATALOG_SCRIPT = Path(__file__).parent / "catalog.js"
CATALOG = "catalog.json"
STAMP = "installed.json"
PACKAGE_NAME = "@segment/action-destinations"


class InstallError(HeadwaterError):
    pass


def actions_dir(data_dir: Path) -> Path:
    """Where the package lives: ``HEADWATER_ACTIONS_DIR`` (one install shared by many data
    directories, as the tests do), else inside the data directory."""
    shared = os.environ.get("HEADWATER_ACTIONS_DIR")
    return Path(shared) if shared else data_dir / "actions"


def lock_digest(package: Path = PACKAGE) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def installed(target: Path, package: Path = PACKAGE) -> bool:
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("lock") == lock_digest(package)


def pinned_version(package: Path = PACKAGE) -> str:
    return str(json.loads((package / "package.json").read_text())["dependencies"][PACKAGE_NAME])


def install(
    target: Path,
    *,
    progress: Callable[[str], None] = print,
    package: Path = PACKAGE,
    node: Node | None = None,
    force: bool = False,
) -> bool:
    """Install the pinned package into ``target`` unless it is there already; True if it ran."""
    if not force and installed(target, package):
        return False
    node = node or find_node()
    target.mkdir(parents=True, exist_ok=True)
    (target / STAMP).unlink(missing_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(package / name, target / name)
    progress(
        f"installing {PACKAGE_NAME} {pinned_version(package)} into {target} "
        f"(npm ci with Node.js v{'.'.join(map(str, node.version))}, about 100 MB)"
    )
    command = [*node.npm_command(), "ci", "--no-audit", "--no-fund", "--omit=dev"]
    result = subprocess.run(command, cwd=target, env=node.environment(), check=False)
    if result.returncode != 0:
        raise InstallError(
            f"npm ci failed in {target} (exit {result.returncode}); check the network or the npm "
            "registry settings (npm config get registry) and run `headwater catalog install` again"
        )
    progress("extracting the destinations' metadata (catalog.json)")
    write_catalog(target, node)
    stamp = {"lock": lock_digest(package), "version": pinned_version(package)}
    (target / STAMP).write_text(json.dumps(stamp))
    progress(f"installed {PACKAGE_NAME} {stamp['version']}")
    return True


def pin(
    version: str,
    *,
    progress: Callable[[str], None] = print,
    package: Path = PACKAGE,
    node: Node | None = None,
) -> str:
    """Move the lock file to ``version`` of the package (``latest`` for the newest), keeping
    the overrides; the version now pinned."""
    node = node or find_node()
    progress(f"pinning {PACKAGE_NAME}@{version} in {package}")
    command = [
        *node.npm_command(),
        "install",
        f"{PACKAGE_NAME}@{version}",
        "--package-lock-only",
        "--save-exact",
        "--no-audit",
        "--no-fund",
    ]
    result = subprocess.run(command, cwd=package, env=node.environment(), check=False)
    if result.returncode != 0:
        raise InstallError(
            f"npm could not pin {PACKAGE_NAME}@{version} (exit {result.returncode}); check the "
            "version exists (npm view @segment/action-destinations versions) and the network"
        )
    return pinned_version(package)


def write_catalog(target: Path, node: Node | None = None, output: Path | None = None) -> Path:
    """Run ``catalog.js`` on the package installed in ``target``: ``output`` (by default
    ``target/catalog.json``) then holds every definition's metadata, for Python to read."""
    node = node or find_node()
    output = output or target / CATALOG
    result = subprocess.run(
        [str(node.executable), str(CATALOG_SCRIPT), str(target), str(output)],
        env=node.environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InstallError(
            f"extracting the catalog from {target} failed (exit {result.returncode}): "
            f"{result.stderr.strip()[-2000:]}"
        )
    return output
