"""The catalog of the shared install of Segment's Actions package (``actions_dir``, from
tests/conftest.py), or of none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.destinations import registry


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
