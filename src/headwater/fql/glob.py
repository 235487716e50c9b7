"""FQL's ``match()`` patterns: full-string globs where ``/`` is an ordinary character.

``*`` any run of characters, ``?`` one character, ``[abc]`` / ``[a-z]`` / ``[^a-z]`` a class,
``\\x`` a literal x. A malformed pattern (an unclosed class, a trailing backslash) matches
nothing, as in Segment's matcher.

Matching runs in O(len(text) × len(pattern)) at worst, never exponentially: a regular
expression with one ``.*`` per star backtracks through every way of splitting the text
(``*a*a*a*b`` took 23 s on 1,000 characters, ``*/*/*/checkout`` froze a server). Every part
between stars matches a fixed number of characters, so the parts can be placed greedily: the
first at the start, the last at the end, each one between at its leftmost place after the one
before. Leftmost is never wrong (a later place leaves less room for the rest), so no placement
is ever undone. A part is found with ``str.find`` when it is plain text, otherwise with a
regular expression without repetition, which tries each start once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class _Part:
    """The characters between two stars: plain text, or a repetition-free expression."""

    width: int  # characters it matches, always exactly this many
    text: str | None  # set when the part is plain text
    expression: re.Pattern[str] | None  # set when it holds ``?`` or a class

    def at(self, subject: str, start: int) -> bool:
        if self.text is not None:
            return subject.startswith(self.text, start)
        assert self.expression is not None
        return self.expression.match(subject, start) is not None

    def find(self, subject: str, start: int, end: int) -> int:
        """The leftmost place in ``subject[start:end]`` where the part matches, or -1."""
        if self.text is not None:
            return subject.find(self.text, start, end)
        assert self.expression is not None
        found = self.expression.search(subject, start, end)
        return -1 if found is None else found.start()


@dataclass(frozen=True, slots=True)
class _Glob:
    parts: tuple[_Part, ...]  # one more than the stars
    starred: bool

    def matches(self, subject: str) -> bool:
        first, last = self.parts[0], self.parts[-1]
        if not self.starred:
            return len(subject) == first.width and first.at(subject, 0)
        end = len(subject) - last.width
        if end < first.width or not first.at(subject, 0) or not last.at(subject, end):
            return False
        at = first.width
        for part in self.parts[1:-1]:
            found = part.find(subject, at, end) if part.width else at
            if found < 0:
                return False
            at = found + part.width
        return True


def matches(text: str, pattern: str) -> bool:
    compiled = compile_glob(pattern)
    return compiled is not None and compiled.matches(text)


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> _Glob | None:
    """The pattern split at its stars, or None when it is malformed."""
    parts: list[_Part] = []
    current: list[str] = []  # regular-expression pieces, one per character matched
    plain: list[str] | None = []  # the same characters as text, while the part has no wildcard
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            parts.append(_part(current, plain))
            current, plain = [], []
        elif char == "?":
            current.append(".")
            plain = None
        elif char == "\\":
            if i + 1 >= n:
                return None
            i += 1
            current.append(re.escape(pattern[i]))
            if plain is not None:
                plain.append(pattern[i])
        elif char == "[":
            found = _character_class(pattern, i + 1)
            if found is None:
                return None
            expression, i = found
            current.append(expression)
            plain = None
            continue
        else:
            current.append(re.escape(char))
            if plain is not None:
                plain.append(char)
        i += 1
    parts.append(_part(current, plain))
    return _Glob(tuple(parts), len(parts) > 1)


def _part(pieces: list[str], plain: list[str] | None) -> _Part:
    if plain is not None:
        return _Part(len(plain), "".join(plain), None)
    # No quantifier and no alternation: a search tries each start once, len(pieces) steps each.
    return _Part(len(pieces), None, re.compile("".join(pieces), re.DOTALL))


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
