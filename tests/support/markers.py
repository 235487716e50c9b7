"""The test being run, so that helpers which start slow things can insist on its marker.

tests/conftest.py records each test as its setup begins (before its fixtures start); a helper
such as ``LiveServer.start`` then calls ``require_marker("live", ...)``. A test that starts a
server process without ``@pytest.mark.live`` fails at once, instead of slipping into the fast
``-m "not live"`` subset unnoticed.
"""

from __future__ import annotations

import pytest

_current: pytest.Item | None = None


def set_current(item: pytest.Item | None) -> None:
    global _current
    _current = item


def require_marker(name: str, what: str) -> None:
    """Fail the running test unless it carries ``@pytest.mark.<name>``."""
    if _current is not None and _current.get_closest_marker(name) is None:
        pytest.fail(
            f"{_current.nodeid} {what}: mark it @pytest.mark.{name} (see tests/README.md)",
            pytrace=False,
        )
