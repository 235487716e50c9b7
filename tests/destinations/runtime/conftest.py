"""Fixtures for the actions runtime: a Node.js fit for the package, the installed package, and
the presets' mappings from the install's catalog.json (so the tests follow the pinned version)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest

from headwater.destinations.runtime.definitions import read_catalog
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
def _presets(directory: Path, destination: str) -> dict[str, Any]:
    """Each action's first preset mapping, from the install's catalog.json."""
    [entry] = [e for e in read_catalog(directory)["destinations"] if e["directory"] == destination]
    presets: dict[str, Any] = {}
    for preset in entry.get("presets") or ():
        presets.setdefault(preset.get("partnerAction"), preset.get("mapping"))
    return presets


def preset_mapping(package_dir: Path, destination: str, action: str) -> dict[str, Any]:
    """The mapping of the destination's first preset for ``action``, as Segment ships it."""
    mapping: dict[str, Any] = _presets(package_dir, destination)[action]
    return mapping
