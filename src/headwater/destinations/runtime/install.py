"""Installing the pinned Actions package into a directory, with ``npm ci`` from our lock file.

An install is complete when its stamp names the lock file it came from: the stamp is written
last (after ``catalog.json``, the package's metadata that ``catalog.js`` extracts), so an
interrupted install is redone, and a newer lock file (``headwater catalog update``) is noticed.
Tests and CI install ahead of time; ``serve`` installs on first start.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from headwater.destinations.runtime import node as pinned
from headwater.destinations.runtime.node import InstallError as InstallError
from headwater.destinations.runtime.node import Node, find_node

PACKAGE = Path(__file__).parent / "package"
CATALOG_SCRIPT = Path(__file__).parent / "catalog.js"
CATALOG = "catalog.json"
STAMP = pinned.STAMP
PACKAGE_NAME = "@segment/action-destinations"


def actions_dir(data_dir: Path) -> Path:
    """Where the package lives: ``HEADWATER_ACTIONS_DIR`` (one install shared by many data
    directories, as the tests do), else inside the data directory."""
    shared = os.environ.get("HEADWATER_ACTIONS_DIR")
    return Path(shared) if shared else data_dir / "actions"


def lock_digest(package: Path = PACKAGE) -> str:
    return pinned.lock_digest(package)


def installed(target: Path, package: Path = PACKAGE) -> bool:
    return pinned.installed(target, package)


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
    version = pinned_version(package)
    progress(
        f"installing {PACKAGE_NAME} {version} into {target} "
        f"(npm ci with Node.js v{'.'.join(map(str, node.version))}, about 100 MB)"
    )

    def extract() -> dict[str, str]:
        progress("extracting the destinations' metadata (catalog.json)")
        write_catalog(target, node)
        return {"version": version}

    pinned.npm_ci(
        package, target, node, again="run `headwater catalog install` again", finish=extract
    )
    progress(f"installed {PACKAGE_NAME} {version}")
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
