"""Identifiers from tracking-plan names, shared by every language Typewriter writes.

Event and property names are free text (`42_--terrible=="event'++name~!3`), so every name is
split into words, re-joined in the language's case, and made unique in its namespace in the
order the caller asks — callers ask in sorted order, so the same plan always gives the same
names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_RUN = re.compile(r"[^\W_]+")  # letters and digits, any script


def words(name: str) -> list[str]:
    """`Order Completed`, `order_completed` and `orderCompleted` all give order, completed;
    letters outside ASCII stay (`Commande passée` gives commande, passée)."""
    found: list[str] = []
    # Python reads identifiers NFKC-normalised: `ﬁle` and `file` are one name.
    for run in _RUN.findall(unicodedata.normalize("NFKC", name)):
        run = "".join(c for c in run if f"a{c}".isidentifier())  # no `²` in identifiers
        start = 0
        for i in range(1, len(run)):
            before, char, after = run[i - 1], run[i], run[i + 1 : i + 2]
            if (
                (before.islower() and char.isupper())
                or (before.isdigit() != char.isdigit())
                or (before.isupper() and char.isupper() and after.islower())  # HTMLParser
            ):
                found.append(run[start:i])
                start = i
        if run[start:]:
            found.append(run[start:])
    return [w.lower() for w in found]


def snake(name: str, fallback: str) -> str:
    parts = words(name) or [fallback]
    if parts[0][0].isdigit():
        parts.insert(0, fallback)
    return "_".join(parts)


def pascal(name: str, fallback: str) -> str:
    parts = words(name) or [fallback]
    if parts[0][0].isdigit():
        parts.insert(0, fallback)
    return "".join(p[:1].upper() + p[1:] for p in parts)


def camel(name: str, fallback: str) -> str:
    joined = pascal(name, fallback)
    return joined[:1].lower() + joined[1:]


class Namespace:
    """Hands out unique identifiers: a taken one gets the lowest free numeric suffix."""

    def __init__(self, reserved: Iterable[str] = (), separator: str = "") -> None:
        self._taken = set(reserved)
        self._separator = separator

    def claim(self, base: str) -> str:
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}{self._separator}{n}"
        self._taken.add(name)
        return name
