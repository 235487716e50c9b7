"""Typewriter: typed analytics calls generated from a tracking plan's rules (spec §7)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from headwater.protocols.compiled import RULE_TYPES, Rule

Language = Literal["python", "typescript"]
LANGUAGES: tuple[Language, ...] = ("python", "typescript")


def generate(plan_name: str, rules: list[Rule], language: Language) -> dict[str, str]:
    """The files to write, by path relative to the output directory.

    Besides the client, `plan.json` keeps the rules it was made from (as Segment's Typewriter
    keeps its plan snapshot), so a build needs no server.
    """
    if language == "python":
        from headwater.protocols.typewriter.python import generate_python

        files = {"__init__.py": generate_python(plan_name, rules), "py.typed": ""}
    elif language == "typescript":
        from headwater.protocols.typewriter.typescript import generate_typescript

        files = {"index.ts": generate_typescript(plan_name, rules)}
    else:
        raise ValueError(f"unknown language {language!r}: choose one of {', '.join(LANGUAGES)}")
    files["plan.json"] = json.dumps({"name": plan_name, "rules": rules_to_api(rules)}, indent=2)
    return files


def rules_to_api(rules: list[Rule]) -> list[dict[str, Any]]:
    """The Public API's `RuleV1` shape."""
    return [
        {"type": r.type, "key": r.key, "version": r.version, "jsonSchema": r.json_schema}
        for r in rules
    ]


def rules_from_api(items: Any) -> list[Rule]:
    """Rules from a `RuleV1` list, or from `{"rules": [...]}` / `{"data": {"rules": [...]}}`."""
    if isinstance(items, Mapping):
        items = items.get("data", items)
        if isinstance(items, Mapping):
            items = items.get("rules")
    if not isinstance(items, list):
        raise ValueError("expected a list of rules (Public API RuleV1 objects)")
    rules: list[Rule] = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise ValueError(f"rule {n}: expected an object")
        kind, key, version = item.get("type"), item.get("key"), item.get("version", 1)
        if kind not in RULE_TYPES:
            raise ValueError(f"rule {n}: type must be one of {', '.join(sorted(RULE_TYPES))}")
        if not isinstance(key, str):
            raise ValueError(f"rule {n}: key must be a string")
        if isinstance(version, float) and version.is_integer():
            version = int(version)  # the Public API types it as a number
        if type(version) is not int:
            raise ValueError(f"rule {n} ({key!r}): version must be an integer")
        if item.get("deprecatedAt"):
            continue  # a deprecated version is not something to instrument
        rules.append(Rule(kind, key, item.get("jsonSchema", {}), version))
    return rules
