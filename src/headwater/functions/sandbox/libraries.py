"""The pure-JavaScript libraries of Segment's functions runtime, installed ahead of time.

Segment pre-installs libraries functions use as globals (``_``, ``moment``, ``jsonwebtoken``…,
§11.1). Headwater pins the pure-JavaScript ones in ``libraries/package-lock.json`` and installs
them with ``npm ci`` into a directory the JavaScript worker may read (and nothing else):
``HEADWATER_FUNCTIONS_LIBRARIES_DIR``, else ``<data_dir>/functions-libraries``. The worker loads
each inside the function's context, lazily, the first time the code touches its global, so a
function that uses none pays nothing at cold start. An install is complete when its stamp names
the lock file it came from (written last). Without an install the globals are absent and
everything else works.

    python -m headwater.functions.sandbox.libraries --dir DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from headwater.destinations.runtime.node import Node, find_node
from headwater.errors import HeadwaterError

PACKAGE = Path(__file__).parent / "libraries"
STAMP = "installed.json"
ENVIRONMENT = "HEADWATER_FUNCTIONS_LIBRARIES_DIR"


class InstallError(HeadwaterError):
    pass


def libraries_dir(data_dir: Path) -> Path:
    shared = os.environ.get(ENVIRONMENT)
    return Path(shared) if shared else data_dir / "functions-libraries"


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


def install(
    target: Path,
    *,
    progress: Callable[[str], None] = print,
    package: Path = PACKAGE,
    node: Node | None = None,
    force: bool = False,
) -> bool:
    """Install the pinned libraries into ``target`` unless they are there; True if it ran."""
    if not force and installed(target, package):
        return False
    node = node or find_node()
    target.mkdir(parents=True, exist_ok=True)
    (target / STAMP).unlink(missing_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(package / name, target / name)
    progress(f"installing the functions' JavaScript libraries into {target} (npm ci, ~30 MB)")
    command = [*node.npm_command(), "ci", "--no-audit", "--no-fund", "--omit=dev"]
    result = subprocess.run(command, cwd=target, env=node.environment(), check=False)
    if result.returncode != 0:
        raise InstallError(
            f"npm ci failed in {target} (exit {result.returncode}); check the network or the npm "
            "registry settings (npm config get registry) and run the install again"
        )
    (target / STAMP).write_text(json.dumps({"lock": lock_digest(package)}))
    progress("installed the functions' JavaScript libraries")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Install the functions' JavaScript libraries")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    install(args.dir, force=args.force)


if __name__ == "__main__":
    main()
