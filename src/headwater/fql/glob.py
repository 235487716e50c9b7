"""FQL's ``match()`` patterns: full-string globs where ``/`` is an ordinary character.

``*`` any run of characters, ``?`` one character, ``[abc]`` / ``[a-z]`` / ``[^a-z]`` a class,
``\\x`` a literal x. A malformed pattern (an unclosed class, a trailing backslash) matches
nothing, as in Segment's matcher. Patterns become regular expressions once and are cached.
"""

from __future__ import annotations

import re
from functools import lru_cache


def matches(text: str, pattern: str) -> bool:
    compiled = compile_glob(pattern)
    return compiled is not None and compiled.fullmatch(text) is not None


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str] | None:
    """The pattern as a regular expression, or None when it is malformed."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\":
            if i + 1 >= n:
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            found = _character_class(pattern, i + 1)
            if found is None:
                return None
            expression, i = found
            out.append(expression)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _character_class(pattern: str, i: int) -> tuple[str, int] | None:
    """``[...]`` from just after the ``[``: (regex, index after ``]``), or None if malformed."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    count = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and count > 0:
            body = "".join(ranges)
            if not body:  # only empty ranges (lo > hi): nothing matches, or anything if negated
                return ("." if negated else "(?!)"), i + 1
            return f"[{'^' if negated else ''}{body}]", i + 1
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
            ranges.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
        count += 1


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    if i >= len(pattern) or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None
    if i + 1 >= len(pattern):  # the class never closes
        return None
    return pattern[i], i + 1
