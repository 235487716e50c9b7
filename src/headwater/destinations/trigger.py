"""Actions mapping triggers: whether a mapping fires, decided exactly as Segment decides it.

Segment stores a mapping's trigger as text in its "subscription" syntax and evaluates it with
``@segment/destination-subscriptions`` 3.37 (``parseFql`` on the ``@segment/fql-ts`` lexer, then
``validate``). Both are literal and lenient in ways saved triggers depend on, so this module
reproduces their answers, quirks included, rather than a tidier grammar; differential tests hold
it to the package.

Grammar (whitespace is space, tab or newline; keywords and field names are case sensitive)::

    trigger    := item ( item )*                 items the grammar does not expect are skipped
    item       := comparison | function | "!" function | "(" items ")" | "and" | "or"
    comparison := field operator value
    function   := ("contains" | "match") "(" field "," value ")"
    field      := type | event | name | userId
                | properties.<path> | traits.<path> | context.<path>
    operator   := = | != | < | <= | > | >=       any other single token is kept as written
    value      := "double" | 'single' | number | true | false | null | word

- No precedence: the *last* ``and``/``or`` of a group (or of the top level) joins every
  condition of that group; with none, they are all and-ed. Parentheses group once; they do not
  nest. ``AND``/``OR`` are ordinary words and are skipped.
- ``= null`` is "does not exist" (missing or null), ``!= null`` "exists"; ``= true`` /
  ``= false`` need that boolean; ``= 5`` / ``!= 5`` need a number. On ``type`` and ``event``
  these keep their text: ``type = null`` compares with the string "null".
- Strings have no escapes (a backslash is a backslash). A double-quoted string is its content;
  a single-quoted one keeps its quotes. A closing quote followed by anything but a space, ``,``,
  ``)`` or ``]`` is taken as the next string's opening quote.
- ``match(f, "x*")`` is "starts with x"; any other pattern is "ends with" the pattern minus its
  first character (``"*x"`` → ends with x).
- A word (path segment) is ``[A-Za-z0-9_-]`` characters, ``\\`` escaping any one character; a
  ``<``, ``>`` or quote right after a word is an error. ``!`` before a letter or ``(`` negates
  the function after it (and is otherwise ignored); any other ``!`` must be ``!=`` followed by a
  space. ``<=``/``>=`` need a space after them, or they read as ``<``/``>`` with ``=`` as the
  value. Words in operator position are kept: ``properties.coupon exists`` works (taking the
  next token as its value), ``properties.coupon !exists`` never matches.
- Paths walk the event as JavaScript's ``obj && obj[key]`` does: array indices and ``length`` of
  arrays and strings work, and a falsy value on the way (0, "", false, null) is the result.

A few triggers the package accepts but cannot evaluate (its ``validate`` throws) are rejected
here when parsed instead: an empty ``()`` next to other conditions, and a path made only of
separators (``properties.\\.``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import eq, ge, gt, le, lt, ne
from typing import Any, Final

from headwater.destinations.javascript import (
    UNDEFINED,
    from_utf16_units,
    number_to_string,
    to_double,
    to_number,
    to_string,
    utf16_units,
)
from headwater.errors import TriggerError

Condition = dict[str, Any]  # the package's condition JSON (``parseFql``'s result)
Predicate = Callable[[Mapping[str, Any]], bool]

__all__ = ["Trigger", "TriggerError", "parse_trigger", "to_condition"]


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger; ``matches`` runs a predicate compiled once, at construction."""

    source: str
    _condition: Condition = field(init=False, repr=False, compare=False)
    _predicate: Predicate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            condition = _parse(utf16_units(self.source))
        except _Syntax as error:
            position = len(from_utf16_units(utf16_units(self.source)[: error.position]))
            raise TriggerError(error.message, self.source, position) from None
        object.__setattr__(self, "_condition", condition)
        object.__setattr__(self, "_predicate", _compile(condition))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the mapping fires for ``event`` (a message as JSON); never raises."""
        return self._predicate(event)


def parse_trigger(text: str) -> Trigger:
    """Parse and compile ``text``; raises `TriggerError` where ``parseFql`` returns an error."""
    return Trigger(text)


def to_condition(trigger: Trigger) -> Condition:
    """The trigger as ``JSON.parse(JSON.stringify(parseFql(text)))``, for comparing parse trees.

    Strings are ordinary Python strings; numbers that JSON cannot hold (NaN, ±Infinity) are None.
    """
    condition: Condition = _as_json(trigger._condition)
    return condition


# --- JavaScript values ------------------------------------------------------------------------
# The package runs on JavaScript strings (UTF-16 code units) and numbers (doubles); the trigger
# is lexed, sliced and compared in code units, so astral characters count twice, as in Node.


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_BUILTIN: Final = _Marker("builtin")  # what obj["constructor"] and the like find in JavaScript


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Names every JavaScript object, array, string, number, boolean or function answers to (Node 20):
# ``properties.constructor != null`` is true for any object in Segment, so it is here too.
_OBJECT_MEMBERS: Final = _names(
    "constructor __defineGetter__ __defineSetter__ hasOwnProperty __lookupGetter__ "
    "__lookupSetter__ isPrototypeOf propertyIsEnumerable toString valueOf __proto__ "
    "toLocaleString"
)
_ARRAY_MEMBERS: Final = _OBJECT_MEMBERS | _names(
    "at concat copyWithin fill find findIndex findLast findLastIndex lastIndexOf pop push "
    "reverse shift unshift slice sort splice includes indexOf join keys entries values forEach "
    "filter flat flatMap map every some reduce reduceRight toReversed toSorted toSpliced "
    "with"
)
_STRING_MEMBERS: Final = _OBJECT_MEMBERS | _names(
    "anchor at big blink bold charAt charCodeAt codePointAt concat endsWith fontcolor fontsize "
    "fixed includes indexOf isWellFormed italics lastIndexOf link localeCompare match matchAll "
    "normalize padEnd padStart repeat replace replaceAll search slice small split strike sub "
    "substr substring sup startsWith toWellFormed trim trimStart trimLeft trimEnd trimRight "
    "toLocaleLowerCase toLocaleUpperCase toLowerCase toUpperCase"
)
_NUMBER_MEMBERS: Final = _OBJECT_MEMBERS | _names("toExponential toFixed toPrecision")
_FUNCTION_MEMBERS: Final = _OBJECT_MEMBERS | _names("length name arguments caller apply bind call")


def _index(key: str, size: int) -> int | None:
    """``key`` as an array or string index below ``size``, if it is one JavaScript accepts."""
    if key.isascii() and key.isdigit() and (key == "0" or key[0] != "0"):
        position = int(key)
        if position < size:
            return position
    return None


def _member(value: Any, key: str) -> Any:
    """JavaScript's ``value && value[key]`` on a JSON value (the package's ``get`` step)."""
    if type(value) is dict or isinstance(value, Mapping):
        found = value.get(key, UNDEFINED)
        if found is UNDEFINED and key in _OBJECT_MEMBERS:
            return _BUILTIN
        return found
    if isinstance(value, str):
        if not value:
            return value
        units = utf16_units(value)
        if key == "length":
            return len(units)
        position = _index(key, len(units))
        if position is not None:
            return units[position]
        return _BUILTIN if key in _STRING_MEMBERS else UNDEFINED
    if isinstance(value, bool):
        if not value:
            return value
        return _BUILTIN if key in _OBJECT_MEMBERS else UNDEFINED
    if isinstance(value, int | float):
        if value == 0 or value != value:
            return value
        return _BUILTIN if key in _NUMBER_MEMBERS else UNDEFINED
    if isinstance(value, list | tuple):
        if key == "length":
            return len(value)
        position = _index(key, len(value))
        if position is not None:
            return value[position]
        return _BUILTIN if key in _ARRAY_MEMBERS else UNDEFINED
    if value is UNDEFINED or value is None:
        return value
    if value is _BUILTIN:
        return _BUILTIN if key in _FUNCTION_MEMBERS else UNDEFINED
    return _BUILTIN if key in _OBJECT_MEMBERS else UNDEFINED


# --- Lexer (fql-ts) ---------------------------------------------------------------------------


class _Syntax(Exception):
    """A parse failure at a code-unit offset; `Trigger` turns it into a `TriggerError`."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # fql-ts's token types: ident, dot, operator, conditional, string, number, ...
    text: str  # fql-ts's token value: strings keep their quotes, numbers are as written
    position: int


_LONGEST = 100_000  # fql-ts's limit on a word, string or number
_PUNCTUATION = {
    ".": "dot",
    "[": "brackleft",
    "]": "brackright",
    ",": "comma",
    "(": "parenleft",
    ")": "parenright",
}
_KEYWORDS = {
    "a": ("nd", "conditional", "and"),
    "o": ("r", "conditional", "or"),
    "n": ("ull", "null", "null"),
}
_IDENT_END = " \t\n,]).(=!"  # what may follow a word


def _is_alpha(char: str | None) -> bool:
    return char is not None and ("a" <= char <= "z" or "A" <= char <= "Z")


def _is_digit(char: str | None) -> bool:
    return char is not None and "0" <= char <= "9"


def _is_word_char(char: str | None) -> bool:
    return _is_alpha(char) or _is_digit(char) or char in ("_", "-", "\\")


def _is_terminator(char: str | None) -> bool:
    return char is None or char in " \t\n,])"


def _shown(char: str | None) -> str:
    return "the end of the trigger" if char is None else repr(from_utf16_units(char))


class _Lexer:
    """fql-ts's lexer, character for character (None is the end of the text)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def next(self) -> str | None:
        if self.at == len(self.text):
            return None
        self.at += 1
        return self.text[self.at - 1]

    def peek(self) -> str | None:
        return self.text[self.at] if self.at < len(self.text) else None

    def accept(self, expected: str) -> bool:
        """Take ``expected`` if a terminator follows it; at the end, what was read stays read."""
        taken = ""
        for _ in expected:
            char = self.next()
            if char is None:
                return False  # fql-ts does not back up here: "event = an" reads "a"
            taken += char
            if _is_terminator(char):
                break
        if taken == expected and _is_terminator(self.peek()):
            return True
        self.at -= len(taken)
        return False

    def tokens(self) -> list[_Token]:
        found: list[_Token] = []
        while True:
            start = self.at
            char = self.next()
            if char is None:
                found.append(_Token("eos", "eos", start))
                return found
            if char in " \t\n":
                continue
            if char == "!" and (_is_alpha(self.peek()) or self.peek() == "("):
                found.append(_Token("operator", "!", start))
            elif _is_alpha(char) or char in "!=<>\\_":
                found.append(self.word(char, start))
            elif _is_digit(char) or char in "-+":
                found.append(self.number(char, start))
            elif char in "\"'":
                found.append(self.string(char, start))
            elif char in _PUNCTUATION:
                found.append(_Token(_PUNCTUATION[char], char, start))
            else:
                raise _Syntax(f"invalid character {_shown(char)}", start)

    def word(self, first: str, start: int) -> _Token:
        if first == "=":
            return _Token("operator", "=", start)
        if first == "!":
            if self.accept("="):
                return _Token("operator", "!=", start)
            raise _Syntax(f"expected '=' and a space after '!', got {_shown(self.peek())}", start)
        if first in "<>":
            return _Token("operator", first + "=" if self.accept("=") else first, start)
        keyword = _KEYWORDS.get(first)
        if keyword is not None and self.accept(keyword[0]):
            return _Token(keyword[1], keyword[2], start)
        return self.ident(first, start)

    def ident(self, first: str, start: int) -> _Token:
        text, char = "", first
        while True:
            if char == "\\":
                escaped = self.next()
                if escaped is None:
                    raise _Syntax("a backslash at the end escapes nothing", self.at - 1)
                char = escaped
            text += char
            if len(text) >= _LONGEST:
                raise _Syntax("word too long", start)
            if not _is_word_char(self.peek()):
                break
            char = self.next() or ""
        after = self.peek()
        if after is not None and after not in _IDENT_END:
            raise _Syntax(f"unexpected {_shown(after)} after {from_utf16_units(text)!r}", self.at)
        return _Token("ident", text, start)

    def number(self, first: str, start: int) -> _Token:
        text, decimal = "", False
        while _is_digit(self.peek()) or self.peek() == ".":
            char = self.next() or ""
            text += char
            if char == ".":
                if _is_terminator(self.peek()):
                    raise _Syntax("a number cannot end with '.'", self.at - 1)
                if decimal:
                    raise _Syntax("a number has two decimal points", self.at - 1)
                decimal = True
            if len(text) >= _LONGEST:
                raise _Syntax("number too long", start)
        return _Token("number", first + text, start)

    def string(self, quote: str, start: int) -> _Token:
        text = ""
        while self.peek() != quote:
            char = self.next()
            if char is None:
                raise _Syntax("unterminated string", start)
            text += char
            if len(text) >= _LONGEST:
                raise _Syntax("string too long", start)
        self.accept(quote)  # not taken unless a terminator follows: it then opens a new string
        return _Token("string", quote + text + quote, start)


def _lex(text: str) -> list[_Token]:
    """fql-ts's tokens, with ``a.b.c`` (word, dot, word, ...) joined into one word as parseFql
    does."""
    joined: list[_Token] = []
    raw = _Lexer(text).tokens()
    i = 0
    while i < len(raw):
        token = raw[i]
        following = raw[i + 1] if i + 1 < len(raw) else None
        if (
            joined
            and joined[-1].kind == "ident"
            and token.kind == "dot"
            and following is not None
            and following.kind == "ident"
        ):
            head = joined.pop()
            joined.append(_Token("ident", f"{head.text}.{following.text}", head.position))
            i += 2
        else:
            joined.append(token)
            i += 1
    return joined


# --- Parser (parseFql) ------------------------------------------------------------------------

_FIELDS: Final = {
    "type": "event-type",
    "event": "event",
    "name": "name",
    "userId": "userId",
    "context": "event-context",
    "properties": "event-property",
    "traits": "event-trait",
}
_PATH_PREFIX: Final = {
    "event-context": "context.",
    "event-property": "properties.",
    "event-trait": "traits.",
}
_FUNCTIONS: Final = ("contains", "match")
_SEGMENT = re.compile(r"[^\[.\]]+")


class _Queue:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def shift(self) -> _Token | None:
        if self.at >= len(self.tokens):
            return None
        self.at += 1
        return self.tokens[self.at - 1]

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None


def _parse(text: str) -> Condition:
    condition = _parse_items(_Queue(_lex(text)), nested=False)
    if condition is None:
        raise _Syntax(
            "no condition: a condition starts with type, event, name, userId, "
            "properties., traits., context., contains( or match(",
            0,
        )
    if condition["type"] != "group":
        return {"type": "group", "operator": "and", "children": [condition]}
    return condition


def _parse_items(queue: _Queue, nested: bool) -> Condition | None:
    """parseFql's loop: conditions in order, joined by the last ``and``/``or`` seen."""
    nodes: list[Condition] = []
    joiner = "and"
    token = queue.shift()
    while token is not None and token.kind != "eos":
        if token.kind == "ident":
            head = token.text.split(".")[0]
            if head in _FIELDS or head in _OBJECT_MEMBERS:
                # parseFql looks the head up on a plain object, so "toString" counts as a
                # field: it takes an operator and a value, and yields no condition.
                operator, value = queue.shift(), queue.shift()
                if operator is None or value is None:
                    raise _Syntax(
                        f"{from_utf16_units(token.text)!r} needs an operator and a value",
                        token.position,
                    )
                if head in _FIELDS:
                    nodes.append(_comparison(_FIELDS[head], token, operator, value))
            elif token.text in _FUNCTIONS:
                _function(token, queue, nodes, negate=False)
        elif token.kind == "operator" and token.text == "!":
            function = queue.peek()
            if function is not None and function.kind == "ident" and function.text in _FUNCTIONS:
                queue.shift()
                _function(function, queue, nodes, negate=True)
        elif token.kind == "parenleft":
            nodes.append(_group(token, queue, nested))
        elif token.kind == "conditional":
            joiner = token.text
        token = queue.shift()
    if len(nodes) > 1:
        return {"type": "group", "operator": joiner, "children": nodes}
    return nodes[0] if nodes else None


def _group(opening: _Token, queue: _Queue, nested: bool) -> Condition:
    """The tokens up to the first ``)``, parsed on their own: why parentheses cannot nest."""
    if nested:
        raise _Syntax("parentheses cannot nest", opening.position)
    inner: list[_Token] = []
    token = queue.shift()
    while token is None or token.kind != "parenright":
        if token is None or token.kind == "eos":
            raise _Syntax("'(' is never closed", opening.position)
        inner.append(token)
        token = queue.shift()
    inner.append(_Token("eos", "eos", token.position))
    condition = _parse_items(_Queue(inner), nested=True)
    if condition is None:
        # parseFql keeps an empty child, and validate then throws when it reaches it.
        raise _Syntax("'( )' holds no condition", opening.position)
    return condition


def _token_value(token: _Token) -> str | float | bool:
    """parseFql's ``getTokenValue``: double quotes dropped, numbers and booleans converted."""
    if token.kind == "string":
        text = token.text.removeprefix('"')
        return text[:-1] if text.endswith('"') else text
    if token.kind == "number":
        return to_number(token.text)
    if token.kind == "ident" and token.text in ("true", "false"):
        return token.text == "true"
    return token.text


def _comparison(kind: str, field_token: _Token, operator: _Token, value: _Token) -> Condition:
    op = operator.text
    special = None
    if op == "!=" and value.text == "null":
        special = "exists"
    elif op == "=" and value.text == "null":
        special = "not_exists"
    elif op == "=" and value.text in ("true", "false"):
        special = "is_" + value.text
    elif op in ("=", "!=") and value.kind == "number":
        special = "number_equals" if op == "=" else "number_not_equals"

    if kind in ("event", "event-type"):
        return {"type": kind, "operator": op, "value": to_string(_token_value(value))}
    if kind == "name" and special in ("exists", "not_exists"):
        return {"type": kind, "operator": special}
    if kind == "userId" and special in ("exists", "not_exists", "is_true", "is_false"):
        return {"type": kind, "operator": special}
    if kind in ("name", "userId"):
        return {"type": kind, "operator": op, "value": to_string(_token_value(value))}
    name = _path_name(kind, field_token)
    if special in ("exists", "not_exists", "is_true", "is_false"):
        return {"type": kind, "name": name, "operator": special}
    if special is not None:
        return {"type": kind, "name": name, "operator": special, "value": _token_value(value)}
    return {"type": kind, "name": name, "operator": op, "value": _token_value(value)}


def _path_name(kind: str, token: _Token) -> str:
    name = token.text.removeprefix(_PATH_PREFIX[kind])
    if name and not _SEGMENT.search(name):
        # The package's get() cannot split such a path and throws on every event.
        raise _Syntax(f"{from_utf16_units(token.text)!r} names no field", token.position)
    return name


def _function(function: _Token, queue: _Queue, nodes: list[Condition], negate: bool) -> None:
    """``contains(field, value)`` / ``match(field, value)``; the punctuation is not checked."""
    queue.shift()  # "("
    target = queue.shift()
    if target is None:
        raise _Syntax(f"{function.text}() is missing its 1st argument", function.position)
    queue.shift()  # ","
    value = queue.shift()
    if value is None:
        raise _Syntax(f"{function.text}() is missing its 2nd argument", function.position)
    queue.shift()  # ")"
    text = to_string(_token_value(value))
    if function.text == "contains":
        operator = "contains"
    elif value.text.endswith('*"'):
        operator, text = "starts_with", text[:-1]
    else:
        operator, text = "ends_with", text[1:]
    if negate:
        operator = "not_" + operator
    if target.text in ("event", "name", "userId"):
        nodes.append({"type": target.text, "operator": operator, "value": text})
        return
    for kind, prefix in _PATH_PREFIX.items():
        if target.text.startswith(prefix[:-1]):
            name = _path_name(kind, target)
            nodes.append({"type": kind, "name": name, "operator": operator, "value": text})
            return


# --- Evaluation (validate) --------------------------------------------------------------------

_TOP_LEVEL: Final = {"event-type": "type", "event": "event", "name": "name", "userId": "userId"}
_ROOTS: Final = {
    "event-property": "properties",
    "event-trait": "traits",
    "event-context": "context",
}


def _compile(condition: Condition) -> Predicate:
    """Closures over what parsing fixed: the path, the operator and the converted value."""
    kind = condition["type"]
    if kind == "group":
        children = [_compile(child) for child in condition["children"]]
        return _every(children) if condition["operator"] == "and" else _some(children)
    test = _test(condition["operator"], condition.get("value", UNDEFINED))
    key = _TOP_LEVEL.get(kind)
    if key is not None:
        return lambda event: test(event.get(key, UNDEFINED))
    root = _ROOTS[kind]
    keys = [from_utf16_units(segment) for segment in _SEGMENT.findall(condition["name"])]
    if not keys:  # an empty name: the package's get() answers undefined
        answer = test(UNDEFINED)
        return lambda event: answer
    if len(keys) == 1:
        only = keys[0]
        return lambda event: test(_member(event.get(root, UNDEFINED), only))

    def walk(event: Mapping[str, Any]) -> bool:
        value = event.get(root, UNDEFINED)
        for segment in keys:
            value = _member(value, segment)
        return test(value)

    return walk


# Up to this many conditions a group nests closures; past it, one loop. A trigger has no
# length limit, and a closure per condition of a long one would pass Python's recursion limit.
_NESTED_CLOSURES: Final = 8


def _every(children: list[Predicate]) -> Predicate:
    """``a and (b and (c ...))``: nested closures short-circuit without a loop per event."""
    if len(children) > _NESTED_CLOSURES:
        return lambda event: all(child(event) for child in children)
    predicate = children[-1]
    for child in reversed(children[:-1]):
        predicate = _both(child, predicate)
    return predicate


def _some(children: list[Predicate]) -> Predicate:
    if len(children) > _NESTED_CLOSURES:
        return lambda event: any(child(event) for child in children)
    predicate = children[-1]
    for child in reversed(children[:-1]):
        predicate = _either(child, predicate)
    return predicate


def _both(first: Predicate, second: Predicate) -> Predicate:
    return lambda event: first(event) and second(event)


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda event: first(event) or second(event)


def _test(operator: str, expected: Any) -> Callable[[Any], bool]:
    """validate's ``validateValue``: each operator's type check and comparison."""
    if operator in ("=", "!="):
        text = to_string(expected)
        wanted = operator == "="

        def equals(actual: Any) -> bool:
            if not isinstance(actual, str):
                return not wanted
            same = actual == text if actual.isascii() else utf16_units(actual) == text
            return same is wanted

        return equals
    if operator in _NUMERIC:
        number = to_number(expected)
        compare = _NUMERIC[operator]

        def numeric(actual: Any) -> bool:
            kind = type(actual)
            if kind is float:
                return compare(actual, number)
            if kind is int or _is_number(actual):
                return compare(to_double(actual), number)
            return False

        return numeric
    if operator in _TEXTUAL:
        part = to_string(expected)
        check, wanted = _TEXTUAL[operator]
        return lambda actual: isinstance(actual, str) and check(utf16_units(actual), part) is wanted
    if operator == "exists":
        return lambda actual: actual is not UNDEFINED and actual is not None
    if operator == "not_exists":
        return lambda actual: actual is UNDEFINED or actual is None
    if operator == "is_true":
        return lambda actual: actual is True
    if operator == "is_false":
        return lambda actual: actual is False
    return lambda actual: False  # an operator validate does not know ("!", "exist", ...)


_NUMERIC: Final[dict[str, Callable[[float, float], bool]]] = {
    "number_equals": eq,
    "number_not_equals": ne,
    "<": lt,
    "<=": le,
    ">": gt,
    ">=": ge,
}
_TEXTUAL: Final[dict[str, tuple[Callable[[str, str], bool], bool]]] = {
    "contains": (str.__contains__, True),
    "not_contains": (str.__contains__, False),
    "starts_with": (str.startswith, True),
    "not_starts_with": (str.startswith, False),
    "ends_with": (str.endswith, True),
    "not_ends_with": (str.endswith, False),
}


def _as_json(value: Any) -> Any:
    """What ``JSON.stringify`` makes of a condition, read back into Python."""
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if isinstance(value, str):
        return from_utf16_units(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        text = number_to_string(value)
        return int(text) if text.lstrip("-").isdigit() else value
    return value
