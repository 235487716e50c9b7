"""An install of Segment's Actions package with its ``catalog.json``, shared by these tests.

``HEADWATER_ACTIONS_DIR`` names one made ahead of time (read-only here); one installed before
``catalog.json`` existed gets a catalog extracted beside a link to its ``node_modules``, and
with neither the pinned package is installed into ``.cache/actions`` (npm ci, about 15 s).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.destinations import registry
from headwater.destinations.runtime import install

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def actions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get("HEADWATER_ACTIONS_DIR")
    if shared and install.installed(Path(shared)):
        return Path(shared)
    if shared and (Path(shared) / "node_modules" / install.PACKAGE_NAME).is_dir():
        made = tmp_path_factory.mktemp("actions")
        (made / "node_modules").symlink_to(Path(shared) / "node_modules")
        for name in ("package.json", "package-lock.json", install.STAMP):
            shutil.copyfile(Path(shared) / name, made / name)
        install.write_catalog(made)
        return made
    cached = REPO / ".cache" / "actions"
    install.install(cached, progress=lambda _message: None)
    return cached


@pytest.fixture
def catalog(actions_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process (and any server it makes) uses ``actions_dir``'s catalog."""
    monkeypatch.setenv("HEADWATER_ACTIONS_DIR", str(actions_dir))
    registry.use_actions_dir(actions_dir)
    yield actions_dir
    registry.reset()


@pytest.fixture
def no_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A process whose actions directory has nothing installed."""
    empty = tmp_path / "no-actions"
    monkeypatch.setenv("HEADWATER_ACTIONS_DIR", str(empty))
    registry.use_actions_dir(empty)
    yield empty
    registry.reset()
