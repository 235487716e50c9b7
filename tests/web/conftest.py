"""Fixtures of the web app's browser tests: one Chromium a module, and one live server a module
started from that module's ``CONFIG`` (a module that needs another server defines its own
``server`` fixture, which takes precedence)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import chromium, live_app
from tests.support.live import LiveServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium shared by the module's tests (each opens its own context)."""
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A running server with the test module's ``CONFIG`` as its headwater.yaml."""
    config = getattr(request.module, "CONFIG", None)
    if not isinstance(config, str):
        raise TypeError(f"{request.module.__name__} needs a CONFIG (headwater.yaml text)")
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with live_app(tmp_path_factory.mktemp(name), config) as live:
        yield live
