"""Regular expressions that users write (JavaScript syntax), matched in linear time.

Python's ``re`` backtracks: a user's ``(a+)+$`` or ``.*a.*a.*a.*b`` on one long event name
would hold a worker for hours. These expressions compile to an automaton whose set of live
states advances one character at a time (Thompson's construction), so a search costs
O(len(text) × len(pattern)) at worst, with the steps cached as a lazy DFA.

The syntax is JavaScript's (Segment's settings are written for its Node runtime): ``.``, ``|``,
groups (``(…)``, ``(?:…)``, ``(?<name>…)``), ``* + ? {n} {n,} {n,m}`` (greedy or lazy, which is
the same to a yes/no search), classes with ranges, ``\\d \\w \\s`` and their negations, ``\\b``
``\\B``, ``^ $``, escapes (``\\n``, ``\\xHH``, ``\\uHHHH``, ``\\cX``, ``\\/``); flags ``i``, ``m``,
``s`` (others change nothing here). Backreferences and lookaround cannot run in linear time
and are refused with a ``RegexError``, as are counted repetitions past ``MAX_STATES``. The
text is matched by code point; case-insensitive matching folds one character at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from headwater.destinations.javascript import WHITESPACE
from headwater.errors import RegexError

MAX_STATES: Final = 10_000  # automaton size; a{1000}{1000} would be a million states
_CACHE_LIMIT: Final = 20_000  # cached steps before the cache starts over

_LINE_TERMINATORS: Final = frozenset("\n\r\u2028\u2029")
_SPACE: Final = frozenset(WHITESPACE)  # \s: JavaScript's WhiteSpace and LineTerminator


def _is_word(char: str | None) -> bool:
    return char is not None and (char.isascii() and (char.isalnum() or char == "_"))


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


Predicate = Callable[[str], bool]


# --- parsing to a tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Char:
    test: Predicate


@dataclass(frozen=True)
class _Assert:
    kind: str  # "^", "$", "b", "B"


@dataclass(frozen=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True)
class _Repeat:
    item: _Node
    least: int
    most: int | None  # None: no upper bound


_Node = _Char | _Assert | _Seq | _Alt | _Repeat


class _Parser:
    def __init__(self, pattern: str, ignore_case: bool, dot_all: bool) -> None:
        self.text = pattern
        self.at = 0
        self.ignore_case = ignore_case
        self.dot_all = dot_all

    def error(self, message: str, position: int | None = None) -> RegexError:
        return RegexError(message, self.at if position is None else position)

    def peek(self, offset: int = 0) -> str | None:
        i = self.at + offset
        return self.text[i] if i < len(self.text) else None

    def parse(self) -> _Node:
        node = self.alternation()
        if self.at < len(self.text):
            raise self.error("unmatched ')'")
        return node

    def alternation(self) -> _Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def sequence(self) -> _Node:
        items: list[_Node] = []
        while (char := self.peek()) is not None and char not in "|)":
            atom = self.atom()
            items.append(self.quantified(atom))
        return items[0] if len(items) == 1 else _Seq(tuple(items))

    def quantified(self, atom: _Node) -> _Node:
        start = self.at
        char = self.peek()
        bounds: tuple[int, int | None] | None = None
        if char == "*":
            bounds, self.at = (0, None), self.at + 1
        elif char == "+":
            bounds, self.at = (1, None), self.at + 1
        elif char == "?":
            bounds, self.at = (0, 1), self.at + 1
        elif char == "{":
            bounds = self.braces()
        if bounds is None:
            return atom
        if isinstance(atom, _Assert):
            raise self.error("nothing to repeat", start)
        if self.peek() == "?":
            self.at += 1  # lazy: the same yes or no
        least, most = bounds
        if most is not None and most < least:
            raise self.error("numbers out of order in {} quantifier", start)
        return _Repeat(atom, least, most)

    def braces(self) -> tuple[int, int | None] | None:
        """``{n}``, ``{n,}``, ``{n,m}``; anything else is a literal ``{`` (as without ``u``)."""
        i = self.at + 1
        digits = i
        while i < len(self.text) and _is_digit(self.text[i]):
            i += 1
        if i == digits:
            return None
        least = int(self.text[digits:i])
        most: int | None = least
        if i < len(self.text) and self.text[i] == ",":
            i += 1
            upper = i
            while i < len(self.text) and _is_digit(self.text[i]):
                i += 1
            most = int(self.text[upper:i]) if i > upper else None
        if i >= len(self.text) or self.text[i] != "}":
            return None
        self.at = i + 1
        return least, most

    def atom(self) -> _Node:
        start = self.at
        char = self.text[self.at]
        self.at += 1
        if char == "(":
            if self.text.startswith(("?=", "?!", "?<=", "?<!"), self.at):
                raise self.error(
                    "lookahead and lookbehind are not supported (they cannot run in linear time)",
                    start,
                )
            if self.text.startswith("?:", self.at):
                self.at += 2
            elif self.text.startswith("?<", self.at):
                end = self.text.find(">", self.at)
                if end < 0:
                    raise self.error("invalid group name", start)
                self.at = end + 1
            elif self.peek() == "?":
                raise self.error("invalid group", start)
            inner = self.alternation()
            if self.peek() != ")":
                raise self.error("unterminated group", start)
            self.at += 1
            return _Seq((inner,))  # a group: "(^)*" repeats, "^*" cannot
        if char == ")":
            raise self.error("unmatched ')'", start)
        if char in "*+?":
            raise self.error("nothing to repeat", start)
        if char == "{" and self.braces_at(start):
            raise self.error("nothing to repeat", start)
        if char == "^":
            return _Assert("^")
        if char == "$":
            return _Assert("$")
        if char == ".":
            if self.dot_all:
                return _Char(lambda c: True)
            return _Char(lambda c: c not in _LINE_TERMINATORS)
        if char == "[":
            return _Char(self.character_class(start))
        if char == "\\":
            if self.peek() in ("b", "B"):
                self.at += 1
                return _Assert(self.text[self.at - 1])
            return _Char(self.case(self.escape(start, in_class=False)))
        return _Char(self.case(_equal(char)))

    def braces_at(self, start: int) -> bool:
        saved = self.at
        self.at = start
        found = self.braces() is not None
        self.at = saved
        return found

    def case(self, test: Predicate) -> Predicate:
        if not self.ignore_case:
            return test
        return lambda c: test(c) or test(_fold(c)) or test(c.lower()) or test(c.upper())

    def escape(self, start: int, in_class: bool) -> Predicate:
        char = self.peek()
        if char is None:
            raise self.error("\\ at end of pattern", start)
        self.at += 1
        classes: dict[str, Predicate] = {
            "d": _is_digit,
            "D": lambda c: not _is_digit(c),
            "w": _is_word,
            "W": lambda c: not _is_word(c),
            "s": _SPACE.__contains__,
            "S": lambda c: c not in _SPACE,
        }
        if char in classes:
            return classes[char]
        return _equal(self.escaped_char(char, start, in_class))

    def escaped_char(self, char: str, start: int, in_class: bool) -> str:
        simple = {"t": "\t", "n": "\n", "r": "\r", "v": "\v", "f": "\f"}
        if char in simple:
            return simple[char]
        if char == "b" and in_class:
            return "\b"
        if char == "0" and not _is_digit(self.peek() or ""):
            return "\0"
        if _is_digit(char):
            raise self.error(
                "backreferences are not supported (they cannot run in linear time)", start
            )
        if char == "k" and not in_class:
            raise self.error("backreferences are not supported", start)
        if char in "pP" and self.peek() == "{":
            raise self.error("Unicode property escapes are not supported", start)
        if char == "c" and (self.peek() or "").isascii() and (self.peek() or "").isalpha():
            letter = self.text[self.at]
            self.at += 1
            return chr(ord(letter) % 32)
        for prefix, width in (("x", 2), ("u", 4)):
            if char == prefix:
                digits = self.text[self.at : self.at + width]
                if len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
                    self.at += width
                    return chr(int(digits, 16))
        return char  # an identity escape: \/ \. \- …

    def character_class(self, start: int) -> Predicate:
        negated = self.peek() == "^"
        if negated:
            self.at += 1
        tests: list[Predicate] = []
        while True:
            char = self.peek()
            if char is None:
                raise self.error("unterminated character class", start)
            if char == "]":
                self.at += 1
                break
            low, low_char = self.class_atom(start)
            if self.peek() == "-" and self.peek(1) not in (None, "]"):
                self.at += 1
                high, high_char = self.class_atom(start)
                if low_char is None or high_char is None:
                    tests += [low, _equal("-"), high]  # \d-x: both and a "-"
                    continue
                if ord(low_char) > ord(high_char):
                    raise self.error("range out of order in character class", start)
                tests.append(_between(low_char, high_char))
            else:
                tests.append(low)
        members = tuple(tests)
        inside = self.case(lambda c: any(test(c) for test in members))  # fold, then negate
        if negated:
            return lambda c: not inside(c)
        return inside

    def class_atom(self, start: int) -> tuple[Predicate, str | None]:
        """One class member, and the character it is when it is a single one."""
        char = self.text[self.at]
        self.at += 1
        if char != "\\":
            return _equal(char), char
        escaped = self.peek()
        if escaped is not None and escaped in "dDwWsS":
            return self.escape(start, in_class=True), None
        if escaped is None:
            raise self.error("\\ at end of pattern", start)
        self.at += 1
        single = self.escaped_char(escaped, start, in_class=True)
        return _equal(single), single


def _equal(expected: str) -> Predicate:
    return lambda c: c == expected


def _between(low: str, high: str) -> Predicate:
    return lambda c: low <= c <= high


def _fold(char: str) -> str:
    """JavaScript's Canonicalize without ``u``: upper case, unless that leaves one character
    for two or turns a non-ASCII letter into an ASCII one."""
    upper = char.upper()
    if len(upper) != 1 or (ord(char) >= 128 and ord(upper) < 128):
        return char
    return upper


# --- the automaton ------------------------------------------------------------------------------


@dataclass
class _Program:
    """Instructions: ("char", test), ("split", a, b), ("jump", a), ("assert", kind), ("match",)."""

    code: list[tuple[Any, ...]] = field(default_factory=list)

    def emit(self, *instruction: Any) -> int:
        if len(self.code) >= MAX_STATES:
            raise RegexError(f"the pattern is too large (more than {MAX_STATES} states)", 0)
        self.code.append(instruction)
        return len(self.code) - 1

    def patch(self, at: int, *instruction: Any) -> None:
        self.code[at] = instruction

    def compile(self, node: _Node) -> None:
        if isinstance(node, _Char):
            self.emit("char", node.test)
        elif isinstance(node, _Assert):
            self.emit("assert", node.kind)
        elif isinstance(node, _Seq):
            for item in node.items:
                self.compile(item)
        elif isinstance(node, _Alt):
            jumps = []
            for option in node.options[:-1]:
                split = self.emit("split", 0, 0)
                self.compile(option)
                jumps.append(self.emit("jump", 0))
                self.patch(split, "split", split + 1, len(self.code))
            self.compile(node.options[-1])
            for jump in jumps:
                self.patch(jump, "jump", len(self.code))
        else:
            self.repeat(node)

    def repeat(self, node: _Repeat) -> None:
        for _ in range(node.least):
            self.compile(node.item)
        if node.most is None:
            split = self.emit("split", 0, 0)
            self.compile(node.item)
            self.emit("jump", split)
            self.patch(split, "split", split + 1, len(self.code))
            return
        splits = []
        for _ in range(node.most - node.least):
            splits.append(self.emit("split", 0, 0))
            self.compile(node.item)
        for split in splits:
            self.patch(split, "split", split + 1, len(self.code))


_START, _WORD, _LINE, _OTHER = range(4)  # what the previous character was


def _kind(char: str | None) -> int:
    if char is None:
        return _START
    if _is_word(char):
        return _WORD
    return _LINE if char in _LINE_TERMINATORS else _OTHER


class LinearRegex:
    """A compiled pattern; ``search(text)`` says whether it matches anywhere in ``text``."""

    def __init__(self, pattern: str, flags: str = "") -> None:
        self.pattern = pattern
        self._multiline = "m" in flags
        tree = _Parser(pattern, "i" in flags, "s" in flags).parse()
        program = _Program()
        program.compile(tree)
        program.emit("match")
        self._code = program.code
        self._steps: dict[tuple[frozenset[int], int, str], tuple[bool, frozenset[int]]] = {}

    def search(self, text: str) -> bool:
        states: frozenset[int] = frozenset()
        previous = _START
        steps = self._steps
        for char in text:
            key = (states, previous, char)
            found = steps.get(key)
            if found is None:
                found = self._step(states, previous, char)
            matched, states = found
            if matched:
                return True
            previous = _kind(char)
        return self._step(states, previous, None)[0]

    def _step(
        self, states: frozenset[int], previous: int, char: str | None
    ) -> tuple[bool, frozenset[int]]:
        """From the states after the last character (and a new start, as a search may begin
        anywhere), past the assertions that hold here, then across ``char``."""
        code = self._code
        reached: set[int] = set()
        pending = [0, *states]
        matched = False
        following: set[int] = set()
        while pending:
            at = pending.pop()
            if at in reached:
                continue
            reached.add(at)
            instruction = code[at]
            op = instruction[0]
            if op == "char":
                if char is not None and instruction[1](char):
                    following.add(at + 1)
            elif op == "split":
                pending += (instruction[1], instruction[2])
            elif op == "jump":
                pending.append(instruction[1])
            elif op == "assert":
                if self._holds(instruction[1], previous, char):
                    pending.append(at + 1)
            else:
                matched = True
        result = (matched, frozenset(following))
        if char is not None:
            if len(self._steps) >= _CACHE_LIMIT:
                self._steps.clear()
            self._steps[(states, previous, char)] = result
        return result

    def _holds(self, kind: str, previous: int, char: str | None) -> bool:
        if kind == "^":
            return previous == _START or (self._multiline and previous == _LINE)
        if kind == "$":
            return char is None or (self._multiline and char in _LINE_TERMINATORS)
        boundary = (previous == _WORD) != _is_word(char)
        return boundary if kind == "b" else not boundary


def compile_regex(pattern: str, flags: str = "") -> LinearRegex:
    """The pattern compiled, or ``RegexError`` naming what cannot be used and where."""
    return LinearRegex(pattern, flags)
