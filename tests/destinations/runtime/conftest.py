"""Fixtures for the actions runtime: a Node.js fit for the package, the installed package, and
the presets' mappings read from the package itself (so the tests follow the pinned version)."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from headwater.destinations.runtime.node import Node, NodeNotFound, find_node


@pytest.fixture(scope="session")
def node() -> Node:
    try:
        return find_node()
    except NodeNotFound as error:
        pytest.skip(f"no Node.js for the actions runtime: {error}")


@pytest.fixture(scope="session")
def package_dir(node: Node, actions_dir: Path) -> Path:
    """The installed package (tests/conftest.py's shared install)."""
    return actions_dir


@cache
def _presets(executable: str, directory: str, destination: str) -> dict[str, Any]:
    script = (
        "const d = require(require('path').join(process.argv[1], 'node_modules/@segment/"
        "action-destinations/dist/destinations', process.argv[2])).default;"
        "const out = {};"
        "for (const p of d.presets || []) if (p.partnerAction && !(p.partnerAction in out))"
        " out[p.partnerAction] = p.mapping;"
        "process.stdout.write(JSON.stringify(out))"
    )
    result = subprocess.run(
        [executable, "-e", script, directory, destination],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    presets: dict[str, Any] = json.loads(result.stdout)
    return presets


def preset_mapping(node: Node, package_dir: Path, destination: str, action: str) -> dict[str, Any]:
    """The mapping of the destination's first preset for ``action``, as Segment ships it."""
    mapping: dict[str, Any] = _presets(str(node.executable), str(package_dir), destination)[action]
    return mapping
