"""The delivery tests' pipeline (a workspace, the event log, a router, a delivery engine)."""

from tests.delivery.conftest import pipeline  # noqa: F401  (a fixture, found by name)
