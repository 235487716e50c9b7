"""PII matchers (spec §9.2, §9.3): what the Privacy Portal pre-classifies Red or Yellow.

Segment ships 36 uneditable default matchers, all on a field's key, and lets a workspace add up
to 100 custom ones (on key or value, exact or similar, with synonyms). "Similar" is Segment's
godice: Sørensen–Dice over character bigrams, a match when the score is above 0.7.

How a key is compared: its last path segment (``properties.user.e-mail`` → ``e-mail``),
camelCase split, lower-cased. Exact compares with every separator (space, ``_``, ``-``, ``.``)
read as one space, so ``phone_number`` is exactly ``phone number``; Similar drops separators
before scoring, as godice drops spaces, so ``e-mail`` scores 1.0 against ``email`` while never
being exactly it. ``ssn`` is a synonym of the default ``social security number`` matcher, as
common abbreviations are of the others: three letters share too few bigrams to be "similar".

Value patterns are regular expressions in RE2's spirit: lookaround and backreferences are
refused, and they run in linear time (``destinations.linear_regex``), since a user's pattern
meets every value the worker sees.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from headwater.destinations.linear_regex import LinearRegex, compile_regex
from headwater.errors import InvalidError, RegexError

Classification = Literal["red", "yellow", "green"]
Restricted = Literal["red", "yellow"]
MatchOn = Literal["key", "value"]
Precision = Literal["exact", "similar"]

CLASSIFICATIONS: tuple[Classification, ...] = ("red", "yellow", "green")
MAX_CUSTOM = 100  # per workspace (§9.3)
SIMILAR = 0.7  # godice's threshold: a match when the score is above it
MAX_NAME = 200
MAX_SYNONYMS = 50
MAX_PATTERN = 1000
_KEY_CACHE = 50_000  # keys remembered before the cache starts over

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_\-.]+")


@dataclass(frozen=True)
class Matcher:
    name: str
    classification: Restricted
    match_on: MatchOn = "key"
    precision: Precision = "similar"
    synonyms: tuple[str, ...] = ()
    pattern: str = ""  # value matchers: a regular expression searched in the value
    custom: bool = False
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "classification": self.classification.upper(),
            "matchOn": self.match_on.upper(),
            "precision": self.precision.upper(),
            "synonyms": list(self.synonyms),
            "pattern": self.pattern,
            "type": "CUSTOM" if self.custom else "DEFAULT",
        }


@dataclass(frozen=True)
class Match:
    """Why a field is Red or Yellow: the matcher, whether default or custom, and how."""

    classification: Restricted
    matcher: str
    matcher_type: Literal["default", "custom"]
    how: Literal["exact", "similar", "pattern"]


def _default(name: str, classification: Restricted, *synonyms: str) -> Matcher:
    return Matcher(name, classification, "key", "similar", tuple(synonyms))


# Segment's 36 (§9.2), with the abbreviations a payload really uses as synonyms.
DEFAULT_MATCHERS: tuple[Matcher, ...] = (
    _default("social security number", "red", "ssn", "social security", "social security no"),
    _default("password", "red", "passwd", "pwd"),
    _default("visa", "red"),
    _default("veteran", "red"),
    _default("disability", "red"),
    _default("credit card", "red", "credit card number", "ccn", "cc number", "card number"),
    _default("passport", "red", "passport number"),
    _default("token", "red", "access token", "auth token"),
    _default("race", "yellow"),
    _default("birthdate", "yellow", "birthday", "date of birth", "dob"),
    _default("phone", "yellow", "phone number", "telephone", "mobile number"),
    _default("address", "yellow", "street address"),
    _default("gender", "yellow"),
    _default("ethnicity", "yellow"),
    _default("citizenship", "yellow"),
    _default("name", "yellow", "first name", "last name", "full name"),
    _default("street", "yellow"),
    _default("city", "yellow"),
    _default("certificate", "yellow"),
    _default("license", "yellow", "licence"),
    _default("identification", "yellow"),
    _default("serial", "yellow", "serial number"),
    _default("ip", "yellow", "ip address"),
    _default("photo", "yellow"),
    _default("salary", "yellow"),
    _default("religion", "yellow"),
    _default("mac", "yellow", "mac address"),
    _default("sex", "yellow"),
    _default("sexual orientation", "yellow"),
    _default("medication", "yellow"),
    _default("allergy", "yellow"),
    _default("condition", "yellow"),
    _default("diagnosis", "yellow"),
    _default("procedure", "yellow"),
    _default("email", "yellow", "email address"),
    _default("zipcode", "yellow", "zip", "postal code", "postcode"),
)


def last_key(path: str) -> str:
    """The key a path ends with, skipping array steps (``items.$.sku`` → ``sku``)."""
    for part in reversed(path.split(".")):
        if part and part != "$":
            return part
    return path


def words(key: str) -> str:
    """A key as Exact compares it: camelCase split, lower case, separators one space."""
    return _SEPARATORS.sub(" ", _CAMEL.sub(" ", key)).strip().lower()


def _letters(key: str) -> str:
    """A key as Similar scores it: no separators at all."""
    return words(key).replace(" ", "")


def _bigrams(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(len(text) - 1):
        pair = text[i : i + 2]
        found[pair] = found.get(pair, 0) + 1
    return found


def dice(a: str, b: str) -> float:
    """Sørensen–Dice over character bigrams (godice's CompareString, without spaces)."""
    a, b = a.replace(" ", ""), b.replace(" ", "")
    return _score(a, _bigrams(a), b, _bigrams(b))


def _near(a: str, b: str) -> bool:
    """Whether two strings' lengths allow a score above SIMILAR (the most they can share is
    the shorter one's bigrams): most terms are ruled out before their bigrams are counted."""
    shorter, total = min(len(a), len(b)) - 1, len(a) + len(b) - 2
    return total <= 0 or 2.0 * shorter / total > SIMILAR


def _score(a: str, first: dict[str, int], b: str, second: dict[str, int]) -> float:
    if a == b:
        return 1.0
    if len(a) < 2 or len(b) < 2:
        return 0.0
    shared = sum(min(count, second.get(pair, 0)) for pair, count in first.items())
    return 2.0 * shared / (len(a) + len(b) - 2)


@dataclass
class _Compiled:
    matcher: Matcher
    exact: frozenset[str]  # the name and synonyms as words()
    letters: tuple[tuple[str, dict[str, int]], ...]  # _letters() and bigrams, for Similar
    regex: LinearRegex | None = None


@dataclass
class Matchers:
    """The defaults with a workspace's custom matchers; a custom matcher replaces the default
    of the same name (compared as words) and the same ``match_on``. Key classification is
    cached per key: a workspace sends a few thousand distinct keys, over and over."""

    custom: Sequence[Matcher] = ()
    _keys: list[_Compiled] = field(init=False)
    _values: list[_Compiled] = field(init=False)
    _cache: dict[str, Match | None] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        replaced = {(words(m.name), m.match_on) for m in self.custom}
        chosen = [
            m for m in DEFAULT_MATCHERS if (words(m.name), m.match_on) not in replaced
        ] + list(self.custom)
        # Red before Yellow, custom before default: the strictest, most specific answer wins.
        chosen.sort(key=lambda m: (m.classification != "red", not m.custom))
        self._keys = []
        self._values = []
        for matcher in chosen:
            terms = (matcher.name, *matcher.synonyms)
            compiled = _Compiled(
                matcher,
                frozenset(words(t) for t in terms),
                tuple((_letters(t), _bigrams(_letters(t))) for t in terms),
            )
            if matcher.match_on == "key":
                self._keys.append(compiled)
            elif matcher.pattern:
                compiled.regex = compile_regex(matcher.pattern)
                self._values.append(compiled)

    @property
    def all(self) -> list[Matcher]:
        return [c.matcher for c in self._keys] + [c.matcher for c in self._values]

    def classify_key(self, key: str) -> Match | None:
        """The matcher a field's key (or path) meets, Red first; None: Green."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._classify_key(last_key(key))
        with self._lock:
            if len(self._cache) >= _KEY_CACHE:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _classify_key(self, key: str) -> Match | None:
        exact = words(key)
        letters = exact.replace(" ", "")
        pairs = _bigrams(letters)
        similar: Match | None = None
        for compiled in self._keys:
            matcher = compiled.matcher
            kind: Literal["default", "custom"] = "custom" if matcher.custom else "default"
            if exact in compiled.exact:
                return Match(matcher.classification, matcher.name, kind, "exact")
            if (
                similar is None
                and matcher.precision == "similar"
                and any(
                    _near(letters, term) and _score(letters, pairs, term, grams) > SIMILAR
                    for term, grams in compiled.letters
                )
            ):
                similar = Match(matcher.classification, matcher.name, kind, "similar")
        return similar

    def classify_value(self, value: object) -> Match | None:
        """The value matcher a scalar value meets (custom matchers only have patterns)."""
        if not self._values or isinstance(value, dict | list) or value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        if len(text) > 1000:
            text = text[:1000]
        for compiled in self._values:
            assert compiled.regex is not None
            if compiled.regex.search(text):
                matcher = compiled.matcher
                kind: Literal["default", "custom"] = "custom" if matcher.custom else "default"
                return Match(matcher.classification, matcher.name, kind, "pattern")
        return None


def check_matcher(data: object, *, id: str = "") -> Matcher:
    """A custom matcher from its JSON (the REST API's and headwater.yaml's shape):
    ``name``, ``classification`` RED|YELLOW, ``matchOn`` KEY|VALUE, ``precision``
    EXACT|SIMILAR, ``synonyms``, and ``pattern`` for a value matcher."""
    if not isinstance(data, Mapping):
        raise InvalidError("must be an object")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidError(f"must be a non-empty string of at most {MAX_NAME} characters", "name")
    classification = _choice(data, "classification", ("red", "yellow"), None)
    match_on = _choice(data, "matchOn", ("key", "value"), "key")
    precision = _choice(data, "precision", ("exact", "similar"), "exact")
    synonyms = data.get("synonyms", [])
    if not isinstance(synonyms, list) or len(synonyms) > MAX_SYNONYMS:
        raise InvalidError(f"must be a list of at most {MAX_SYNONYMS} strings", "synonyms")
    for i, synonym in enumerate(synonyms):
        if not isinstance(synonym, str) or not synonym.strip() or len(synonym) > MAX_NAME:
            raise InvalidError("must be a non-empty string", f"synonyms[{i}]")
    pattern = data.get("pattern", "")
    if pattern is None:
        pattern = ""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        raise InvalidError(f"must be a string of at most {MAX_PATTERN} characters", "pattern")
    if match_on == "value":
        if not pattern:
            raise InvalidError("a VALUE matcher needs a pattern", "pattern")
        try:
            compile_regex(pattern)
        except RegexError as exc:
            raise InvalidError(f"not a usable RE2 pattern: {exc.message}", "pattern") from exc
    elif pattern:
        raise InvalidError("only a VALUE matcher has a pattern", "pattern")
    return Matcher(
        name=name.strip(),
        classification=classification,  # type: ignore[arg-type]
        match_on=match_on,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        synonyms=tuple(s.strip() for s in synonyms),
        pattern=pattern,
        custom=True,
        id=id,
    )


def _choice(data: Mapping[str, Any], key: str, allowed: Iterable[str], default: str | None) -> str:
    value = data.get(key, default)
    options = tuple(allowed)
    if not isinstance(value, str) or value.lower() not in options:
        raise InvalidError(f"must be one of {', '.join(o.upper() for o in options)}", key)
    return value.lower()
