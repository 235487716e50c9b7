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
import os
from collections.abc import Callable
from pathlib import Path

from headwater.destinations.runtime.node import Node, find_node, npm_ci
from headwater.destinations.runtime.node import installed as lock_installed

PACKAGE = Path(__file__).parent / "libraries"
ENVIRONMENT = "HEADWATER_FUNCTIONS_LIBRARIES_DIR"


def libraries_dir(data_dir: Path) -> Path:
    shared = os.environ.get(ENVIRONMENT)
    return Path(shared) if shared else data_dir / "functions-libraries"


def installed(target: Path, package: Path = PACKAGE) -> bool:
    return lock_installed(target, package)


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
    progress(f"installing the functions' JavaScript libraries into {target} (npm ci, ~30 MB)")
    npm_ci(package, target, node, again="run the install again")
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
