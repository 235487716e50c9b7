"""One ``headwater serve`` process shared by a module's tests, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.live import LiveServer, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("server")) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http
