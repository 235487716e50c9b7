"""Fixtures of tests/delivery that the functions' delivery tests share: a workspace with a
source, the event log, a router and a delivery engine on a test clock."""

from __future__ import annotations

from tests.delivery.conftest import pipeline  # noqa: F401  (a fixture)
