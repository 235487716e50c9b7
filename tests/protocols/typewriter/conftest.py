"""A realistic plan (shaped like Segment's own Typewriter fixtures) as Public API rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headwater.protocols.compiled import Rule, compile_plan
from headwater.protocols.typewriter import rules_from_api

PLAN = Path(__file__).with_name("plan.json")


@pytest.fixture(scope="session")
def plan_rules() -> list[Rule]:
    rules = rules_from_api(json.loads(PLAN.read_text("utf-8")))
    compile_plan(rules)  # the fixture is a plan Headwater itself accepts
    return rules
