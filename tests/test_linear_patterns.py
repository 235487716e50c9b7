"""Patterns never backtrack into a freeze: every place a user's pattern or a user's text meets
a matcher finishes quickly on hostile input (issue 10: ``match(properties.path,
'*/*/*/checkout')`` and one 6 KB event froze a server for minutes).

Two guards. The entry points where users give patterns (FQL ``match``, filters, triggers,
mapping directives, Slack templates) run adversarial patterns on 100 KB subjects. And every
regular expression compiled at module level in ``headwater`` runs, with the operations its
module uses it with, on 20 KB subjects built to make ambiguous expressions backtrack, so a new
``\\d+\\.?\\d*`` is caught where it is written. Bounds are generous (these failed by minutes).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import random
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

import headwater
from headwater import fql
from headwater.destinations.catalog import slack
from headwater.destinations.filters import check_filters, compile_filters
from headwater.destinations.mapping import compile_mapping
from headwater.destinations.mapping.fields import _date_like
from headwater.destinations.trigger import parse_trigger
from headwater.fql import glob
from headwater.timestamps import parse_timestamp
from tests.support.limits import timed

SIZE = 100_000
SECONDS = 1.0

HOSTILE_GLOBS = [
    "*a*a*a*a*b",
    "*/*/*/*/checkout",
    "?*" * 30 + "b",
    "*[ab]*[ab]*[ab]*[ab]*c",
    "*[^x]*[^x]*[^x]*y",
    "*\\**\\**\\**z",
    "*" + "a?" * 50 + "b*",
    "a*" * 40 + "b",
    "*" * 200 + "b",
    "*" + "a" * 500 + "b*",
]


def subjects(pattern: str) -> Iterator[str]:
    """Long texts made of the pattern's own characters, so every star has choices."""
    letters = [c for c in pattern if c not in "*?[]^\\"] or ["a"]
    yield "a" * SIZE
    yield "/" * SIZE
    yield "".join(random.Random(pattern).choice(letters) for _ in range(SIZE))


@pytest.mark.parametrize("pattern", HOSTILE_GLOBS)
def test_fql_match_and_filters_take_hostile_globs_in_linear_time(pattern: str) -> None:
    statement = f"match(properties.path, '{pattern.replace(chr(92), chr(92) * 2)}')"
    expression = fql.parse(statement)
    [checked] = check_filters([{"if": statement, "actions": [{"type": "DROP"}]}])
    apply = compile_filters([checked])
    assert apply is not None
    for text in subjects(pattern):
        event = {"type": "track", "properties": {"path": text}}
        answer, seconds = timed(partial(expression.matches, event))
        assert seconds < SECONDS, f"{pattern!r} took {seconds:.1f} s"
        dropped, seconds = timed(partial(apply, event))
        assert seconds < SECONDS and isinstance(dropped, str) is answer


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*a*a*a*a*b", "a" * SIZE + "b", True),
        ("*a*a*a*a*b", "a" * SIZE, False),
        ("*/*/*/*/checkout", "/" * SIZE + "checkout", True),
        ("*/*/*/*/checkout", "/" * SIZE + "checkou", False),
        ("?*" * 30 + "b", "x" * SIZE + "b", True),
        ("*[ab]*[ab]*[ab]*[ab]*c", "ab" * (SIZE // 2) + "c", True),
        ("*[^x]*[^x]*[^x]*y", "x" * SIZE + "y", False),
        ("*" + "a?" * 50 + "b*", "a" * SIZE, False),
        ("*" + "a?" * 50 + "b*", "a" * SIZE + "b" + "a" * 100, True),
    ],
)
def test_hostile_globs_give_the_right_answer(pattern: str, text: str, expected: bool) -> None:
    answer, seconds = timed(partial(glob.matches, text, pattern))
    assert answer is expected and seconds < SECONDS


def test_globs_agree_with_a_backtracking_translation_on_short_texts() -> None:
    """The linear matcher keeps the semantics of ``fullmatch`` on the regex translation."""
    chance = random.Random(10)
    for _ in range(20_000):
        pattern = "".join(chance.choice("ab/*?[]^-\\") for _ in range(chance.randint(0, 9)))
        text = "".join(chance.choice("ab/-]\n") for _ in range(chance.randint(0, 9)))
        translated = translate(pattern)
        expected = translated is not None and re.fullmatch(translated, text, re.S) is not None
        assert glob.matches(text, pattern) is expected, (pattern, text)


def translate(pattern: str) -> str | None:
    """A glob as the backtracking regular expression ``glob`` built before issue 10."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\":
            if i + 1 >= len(pattern):
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            found = _translate_class(pattern, i + 1)
            if found is None:
                return None
            expression, i = found
            out.append(expression)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _translate_class(pattern: str, i: int) -> tuple[str, int] | None:
    negated = i < len(pattern) and pattern[i] == "^"
    i += negated
    ranges: list[str] = []
    count = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and count > 0:
            if not ranges:
                return ("." if negated else "(?!)"), i + 1
            return f"[{'^' if negated else ''}{''.join(ranges)}]", i + 1
        low = _class_char(pattern, i)
        if low is None:
            return None
        lo, i = low
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            high = _class_char(pattern, i + 1)
            if high is None:
                return None
            hi, i = high
        if lo <= hi:
            ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
        count += 1


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    if i >= len(pattern) or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
    if i + 1 >= len(pattern):
        return None
    return pattern[i], i + 1


@pytest.mark.parametrize("function", ["contains", "match"])
def test_trigger_functions_on_long_fields(function: str) -> None:
    trigger = parse_trigger(f'{function}(properties.path, "*a*a*a*b") and type = "track"')
    for text in subjects("a/b"):
        _, seconds = timed(
            partial(trigger.matches, {"type": "track", "properties": {"path": text}})
        )
        assert seconds < SECONDS


HOSTILE_TEMPLATES = [
    "{{" * (SIZE // 2),
    "{{{" * (SIZE // 3),
    "{{" + " " * SIZE,
    "{{{" + " " * SIZE,
    "{{ " + "a." * (SIZE // 2),
    "(" * SIZE,
]


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES, ids=range(len(HOSTILE_TEMPLATES)))
def test_templates_from_mappings_events_and_slack_settings(template: str) -> None:
    dynamic = compile_mapping({"out": {"@template": {"@path": "$.properties.text"}}})
    static = compile_mapping({"out": {"@template": template}})
    event = {"type": "track", "event": "x", "properties": {"text": template}}
    for run in (
        partial(dynamic, event),
        partial(static, event),
        partial(slack.render_template, template, event),
    ):
        _, seconds = timed(run)
        assert seconds < SECONDS


def test_replace_directives_on_long_values() -> None:
    for ignore_case in (False, True):
        mapping = compile_mapping(
            {
                "out": {
                    "@replace": {
                        "pattern": "aaaaaaaaab",
                        "replacement": "$&$`",
                        "ignorecase": ignore_case,
                        "value": {"@path": "$.properties.text"},
                    }
                }
            }
        )
        _, seconds = timed(partial(mapping, {"properties": {"text": "a" * SIZE}}))
        assert seconds < SECONDS


EVENT_TEXTS = [
    "1" * SIZE + "x",
    "2024-01-01" + " " * SIZE + "!",
    " " * SIZE + "1x",
    "2024-01-01T1:1:1." + "1" * SIZE + "!",
    "(" * SIZE,
    "0" * SIZE + "e",
    "." + "1" * SIZE + "e+",
]


@pytest.mark.parametrize("text", EVENT_TEXTS, ids=range(len(EVENT_TEXTS)))
def test_event_values_parsed_as_numbers_dates_and_timestamps(text: str) -> None:
    number_trigger = parse_trigger("properties.n > 1")
    coerced = compile_mapping({"n": {"@path": "$.n"}})
    for run in (
        partial(parse_timestamp, text),
        partial(_date_like, text),
        partial(number_trigger.matches, {"properties": {"n": text}}),
        partial(coerced, {"n": text}),
    ):
        _, seconds = timed(run)
        assert seconds < SECONDS


# --- every module-level regular expression ---------------------------------------------------

_OPERATIONS = ("match", "fullmatch", "search", "findall", "sub", "split")
_UNITS = [
    "a",
    "A",
    "1",
    "0",
    " ",
    "\t",
    "\n",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "/",
    ".",
    "-",
    "_",
    ":",
    "e",
    "x",
    "0e",
    "a1",
    "A1",
    "{{",
    "1.",
    "a.",
]
_PREFIXES = ["", "2024-01-01", "2024-01-01T1:1", "{{", "{{{", "[", "/", "Chrome/", "0x"]
_TAILS = ["", "!", "}", "\x00"]
_SCAN_SIZE = 20_000


def module_patterns() -> Iterator[tuple[str, str, re.Pattern[str], tuple[str, ...]]]:
    """(module, name, pattern, operations its module uses it with) for each module-level one."""
    for info in pkgutil.walk_packages(headwater.__path__, "headwater."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            continue
        for name, value in vars(module).items():
            found: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = []
            if isinstance(value, re.Pattern):
                used = tuple(
                    sorted(
                        set(
                            re.findall(rf"\b{re.escape(name)}\.({'|'.join(_OPERATIONS)})\b", source)
                        )
                    )
                )
                found.append((name, value, used or _OPERATIONS))
            elif isinstance(getattr(value, "__self__", None), re.Pattern):
                found.append((name, value.__self__, (value.__name__,)))
            elif isinstance(value, dict):
                found += [
                    (f"{name}[{key!r}]", item, _OPERATIONS)
                    for key, item in value.items()
                    if isinstance(item, re.Pattern)
                ]
            for label, pattern, operations in found:
                if isinstance(pattern.pattern, str):
                    yield info.name, label, pattern, operations


PATTERNS = sorted(module_patterns(), key=lambda found: (found[0], found[1]))


def test_the_scan_finds_the_patterns_it_is_meant_to_guard() -> None:
    names = {(module, name) for module, name, _, _ in PATTERNS}
    assert ("headwater.timestamps", "_LENIENT") in names
    assert ("headwater.destinations.javascript", "_JS_DECIMAL") in names
    assert ("headwater.warehouse.rows", "_decimal_text") in names
    assert len(PATTERNS) > 40


@pytest.mark.parametrize(
    ("module", "name", "pattern", "operations"),
    PATTERNS,
    ids=[f"{m.removeprefix('headwater.')}.{n}" for m, n, _, _ in PATTERNS],
)
def test_module_patterns_are_linear_on_hostile_text(
    module: str, name: str, pattern: re.Pattern[str], operations: tuple[str, ...]
) -> None:
    for prefix in _PREFIXES:
        for unit in _UNITS:
            for tail in _TAILS:
                text = prefix + unit * (_SCAN_SIZE // len(unit)) + tail
                for operation in operations:
                    run: Callable[..., Any] = getattr(pattern, operation)
                    call = partial(run, "", text) if operation == "sub" else partial(run, text)
                    _, seconds = timed(call)
                    assert seconds < 0.5, (
                        f"{module}.{name}.{operation} took {seconds:.1f} s on "
                        f"{prefix!r} + {unit!r} * n + {tail!r}"
                    )
