"""The session-wide `oracle` fixture; tests/conftest.py re-exports it to every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oracle.client import NodeOracle, OracleError


@pytest.fixture(scope="session")
def oracle() -> Iterator[NodeOracle]:
    """One started Node oracle process (tests/oracle/oracle.mjs) for the whole test session."""
    node = NodeOracle()
    try:
        node.start()
    except OracleError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield node
    finally:
        node.close()
