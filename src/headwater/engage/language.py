"""Segment Query Language: the text of an audience or a computed trait, parsed into the tree of
``definition.py`` and written back (``to_text``).

    definition := or
    or         := and ( OR and )*                  and := unary ( AND unary )*
    unary      := ( NOT | ANY | ALL ) unary | compare
    compare    := chain ( ( = | == | != | > | >= | < | <= ) chain )?
    chain      := primary ( "." name "(" arguments ")" )*
    primary    := "(" or ")" | extractor "(" arguments ")" | string | number | true|false|null

Every refusal is a ``DefinitionError`` naming the part refused by its offset in the text, so an
editor can point at it. Refusals follow the reference's "Return Type" rules: what may follow an
``event()`` stream, a value, a ``unique()`` list and a comparison. The parser recurses once per
level of nesting and stops at ``MAX_DEPTH``, so no text reaches Python's recursion limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Final, get_args
from typing import Literal as Lit

from headwater.engage.definition import (
    NO_SPAN,
    AllUsers,
    And,
    AnyUser,
    Compare,
    CompareOp,
    Condition,
    ContextRef,
    Definition,
    Kind,
    Literal,
    Not,
    Or,
    PropertyRef,
    Reduce,
    ReduceOp,
    Span,
    Stream,
    TraitRef,
    Value,
    ValueType,
    Window,
)
from headwater.errors import DefinitionError
from headwater.timestamps import parse_timestamp

Purpose = Lit["audience", "trait"]

MAX_TEXT_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 64  # parentheses, braces, brackets, calls and NOT/ANY/ALL, nested
MAX_PRIMARY: Final = 50  # the reference's limit on primary expressions (event(), trait())
MAX_WINDOW_HOURS: Final = 26_280  # 3 years

EXTRACTORS: Final = ("event", "trait", "property", "context", "literal")
STREAM_FILTERS: Final = ("where", "sources", "within", "between")
REDUCERS: Final = ("count", "sum", "avg", "min", "max", "mode", "first", "last", "unique")
COMPARATORS: Final[tuple[CompareOp, ...]] = get_args(CompareOp)
SUGAR: Final[dict[str, CompareOp]] = {
    "=": "equals",
    "==": "equals",
    "!=": "differs",
    ">": "greater_than",
    ">=": "at_least",
    "<": "less_than",
    "<=": "at_most",
}
_ORDERING: Final = frozenset({"greater_than", "at_least", "less_than", "at_most"})
_STRING_ARG: Final = frozenset({"omits", "starts_with", "ends_with"})
_DATE_ARG: Final = frozenset({"before_date", "after_date"})
_DURATION_ARG: Final = frozenset({"within_last", "within_next", "before_last", "after_next"})
_LIST_ARG: Final = frozenset({"contains", "one_of"})
_AS_TYPES: Final[dict[str, tuple[ValueType, ...]]] = {
    "min": ("number", "string"),
    "max": ("number", "string"),
    "mode": ("array", "string", "number"),
}
_UNITS: Final = {"hour": 1, "hours": 1, "day": 24, "days": 24}
_KEYWORDS: Final = frozenset({"and", "or", "not", "any", "all"})
_CONSTANTS: Final[dict[str, bool | None]] = {"true": True, "false": False, "null": None}

# --- tokens ---------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPERATOR = re.compile(r"==|!=|>=|<=|=|>|<")
_PUNCTUATION = "(){}[],.:"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Lit["name", "string", "number", "punct", "op", "end"]
    text: str  # as written; a string's value without quotes and escapes
    start: int
    end: int
    number: int | float = 0


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "'\"":
            tokens.append(_string(text, i))
            i = tokens[-1].end
        elif (match := _NUMBER.match(text, i)) and (char != "-" or match.end() > i + 1):
            tokens.append(_number(match.group(), i, match.end(), text))
            i = match.end()
        elif match := _NAME.match(text, i):
            tokens.append(_Token("name", match.group(), i, match.end()))
            i = match.end()
        elif match := _OPERATOR.match(text, i):
            tokens.append(_Token("op", match.group(), i, match.end()))
            i = match.end()
        elif char in _PUNCTUATION:
            tokens.append(_Token("punct", char, i, i + 1))
            i += 1
        else:
            hint = "; write NOT for negation" if char == "!" else ""
            raise DefinitionError(f"unexpected character {char!r}{hint}", text, i)
    tokens.append(_Token("end", "", n, n))
    return tokens


def _string(text: str, start: int) -> _Token:
    """A quoted string (either quote); a backslash makes the next character plain, as in FQL."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return _Token("string", "".join(out), start, i + 1)
        else:
            out.append(char)
            i += 1
    raise DefinitionError("a string is not closed; end it with its opening quote", text, start)


def _number(written: str, start: int, end: int, text: str) -> _Token:
    if any(c in written for c in ".eE"):
        value = float(written)
        if not math.isfinite(value):
            raise DefinitionError(f"the number {written} is out of range", text, start)
        return _Token("number", written, start, end, value)
    digits = written.lstrip("-")
    whole = int(written) if len(digits) <= 20 else 2**64
    if not -(2**63) <= whole < 2**63:
        raise DefinitionError(
            f"the number {written} does not fit in 64 bits; whole numbers run from "
            f"{-(2**63)} to {2**63 - 1}",
            text,
            start,
        )
    return _Token("number", written, start, end, whole)


# --- parsing --------------------------------------------------------------------------------------


@dataclass
class _Stream:
    """An ``event()`` stream while its filters are read (a VectorExtractor)."""

    event: str
    start: int
    end: int
    nested: bool  # inside another stream's where(): a funnel step, may use ``parent:``
    where: list[Condition] = field(default_factory=list)
    exclude: set[str] = field(default_factory=set)
    window: Window | None = None

    def done(self) -> Stream:
        return Stream(
            self.event,
            tuple(self.where),
            frozenset(self.exclude),
            self.window,
            (self.start, self.end),
        )


_Item = Condition | Value | _Stream
_CONDITIONS = (Compare, And, Or, Not, AnyUser, AllUsers)


def parse(text: str, *, kind: Kind = "users", purpose: Purpose) -> Definition:
    """The tree of an audience (``purpose="audience"``, a condition) or of a computed trait
    (``"trait"``, a value); a ``DefinitionError`` names what is refused and where."""
    if kind not in ("users", "accounts"):
        raise DefinitionError(f"unknown kind {kind!r}; expected users or accounts", text, 0)
    if purpose not in ("audience", "trait"):
        raise DefinitionError(f"unknown purpose {purpose!r}; expected audience or trait", text, 0)
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_TEXT_BYTES:
        cut = len(encoded[:MAX_TEXT_BYTES].decode("utf-8", "ignore"))
        raise DefinitionError(
            f"the definition is longer than {MAX_TEXT_BYTES:,} bytes (64 KB)", text, cut
        )
    parser = _Parser(text, _tokenize(text), kind)
    if parser.peek().kind == "end":
        raise DefinitionError(
            "empty definition; expected an expression such as event('Signed Up').count() >= 1",
            text,
            0,
        )
    root = parser.or_()
    token = parser.peek()
    if token.kind != "end":
        raise DefinitionError(
            f"unexpected {_what(token)}; expected AND, OR or the end of the definition",
            text,
            token.start,
        )
    if purpose == "audience" and not isinstance(root, _CONDITIONS):
        raise DefinitionError(
            f"an audience must end in a comparison (found {_describe(root)})", text, _start(root)
        )
    if purpose == "trait" and not isinstance(root, Reduce | TraitRef):
        hint = ", add a reducer such as .count()" if isinstance(root, _Stream) else ""
        raise DefinitionError(
            f"a computed trait must end in a value such as .count(), .sum(property('…')) or "
            f"trait('…') (found {_describe(root)}{hint})",
            text,
            _start(root),
        )
    assert not isinstance(root, _Stream | PropertyRef | ContextRef | Literal)
    return Definition(kind, root, text)


class _Parser:
    def __init__(self, text: str, tokens: list[_Token], kind: Kind) -> None:
        self.text = text
        self.tokens = tokens
        self.at = 0
        self.kind = kind
        self.depth = 0
        self.primaries = 0
        self.frames: list[_Stream] = []  # the streams whose where() is being read
        self.reducing = False  # reading a reducer's argument
        self.quantified = False  # inside ANY/ALL

    # -- tokens --

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def fail(self, message: str, position: int) -> DefinitionError:
        return DefinitionError(message, self.text, position)

    def is_punct(self, char: str) -> bool:
        token = self.peek()
        return token.kind == "punct" and token.text == char

    def keyword(self) -> str | None:
        token = self.peek()
        if token.kind == "name" and token.text.lower() in _KEYWORDS:
            return token.text.upper()
        return None

    def expect(self, char: str, what: str) -> _Token:
        token = self.peek()
        if token.kind == "punct" and token.text == char:
            return self.take()
        where = f" {what}" if what else ""
        raise self.fail(f"expected {char!r}{where}, found {_what(token)}", token.start)

    def open(self, char: str, what: str) -> _Token:
        """Take an opening bracket; one level deeper."""
        token = self.expect(char, what)
        self.enter(token.start)
        return token

    def close(self, char: str, what: str) -> _Token:
        token = self.expect(char, what)
        self.depth -= 1
        return token

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(
                f"the definition nests deeper than {MAX_DEPTH} levels of parentheses, braces, "
                "calls and NOT/ANY/ALL",
                position,
            )

    # -- junctions --

    def or_(self) -> _Item:
        items = [self.and_()]
        while self.keyword() == "OR":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(self.joined("OR", items), _around(items))

    def and_(self) -> _Item:
        items = [self.unary()]
        while self.keyword() == "AND":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(self.joined("AND", items), _around(items))

    def joined(self, junction: str, items: list[_Item]) -> tuple[Condition, ...]:
        for item in items:
            if not isinstance(item, _CONDITIONS):
                raise self.fail(
                    f"{junction} joins conditions; found {_describe(item)}", _start(item)
                )
        return tuple(items)  # type: ignore[arg-type]

    def unary(self) -> _Item:
        word = self.keyword()
        if word not in ("NOT", "ANY", "ALL"):
            return self.compare()
        token = self.take()
        if word != "NOT":
            self.check_quantifier(word, token)
        self.enter(token.start)
        was_quantified = self.quantified
        self.quantified = self.quantified or word != "NOT"
        operand = self.unary()
        self.quantified = was_quantified
        self.depth -= 1
        if not isinstance(operand, _CONDITIONS):
            raise self.fail(
                f"{word} needs a condition after it; found {_describe(operand)}", _start(operand)
            )
        span = (token.start, _end(operand))
        if word == "NOT":
            return Not(operand, span)
        return AnyUser(operand, span) if word == "ANY" else AllUsers(operand, span)

    def check_quantifier(self, word: str, token: _Token) -> None:
        if self.kind != "accounts":
            raise self.fail(
                f"ANY/ALL need kind ACCOUNTS (this definition is of {self.kind}); they say "
                "which of an account's users must qualify",
                token.start,
            )
        if self.frames or self.reducing:
            raise self.fail(f"{word} is not allowed inside where(); use it outside", token.start)
        if self.quantified:
            raise self.fail(f"{word} cannot be nested inside another ANY or ALL", token.start)

    # -- comparisons and chains --

    def compare(self) -> _Item:
        left = self.chain()
        token = self.peek()
        if token.kind != "op":
            return left
        self.take()
        op = SUGAR[token.text]
        value = self.comparable(left, token)
        right = self.value_argument(op, f"'{token.text}'")
        node = Compare(value, op, (right,), span=(_start(left), _end(right)))
        after = self.peek()
        if after.kind == "op":
            raise self.fail(
                f"a comparison ends the chain; {after.text!r} cannot follow it (use AND/OR "
                "to join comparisons)",
                after.start,
            )
        return node

    def chain(self) -> _Item:
        item = self.primary()
        while self.is_punct("."):
            dot = self.take()
            name = self.peek()
            if name.kind != "name":
                raise self.fail(
                    f"expected a function name after '.', found {_what(name)}", name.start
                )
            self.take()
            if not (self.peek().kind == "punct" and self.peek().text == "("):
                raise self.fail(
                    f"expected '(' after {name.text!r}, found {_what(self.peek())}",
                    self.peek().start,
                )
            item = self.call_on(item, name, dot)
        return item

    def call_on(self, item: _Item, name: _Token, dot: _Token) -> _Item:
        if isinstance(item, _Stream):
            return self.stream_call(item, name)
        if isinstance(item, Reduce) and item.op == "unique":
            if name.text != "count":
                raise self.fail(
                    f"unique(…) gives a list; only .count() may follow it (found {name.text!r})",
                    name.start,
                )
            self.no_arguments(name)
            return replace(item, op="unique_count", span=(item.span[0], self.peek(-1).end))
        if isinstance(item, _CONDITIONS):
            raise self.fail(
                f"a comparison ends the chain; nothing may follow it (found '.{name.text}()')",
                dot.start,
            )
        if name.text in COMPARATORS:
            op: CompareOp = name.text
            return self.comparator(self.comparable(item, name), op, name)
        if name.text in REDUCERS or name.text in STREAM_FILTERS:
            what = "trait('…')" if isinstance(item, TraitRef) else _describe(item)
            follows = "event(…) or unique(…)" if name.text == "count" else "event(…)"
            raise self.fail(
                f"{what} cannot take {name.text}(): {name.text}() follows {follows}; a value "
                "takes only a comparison",
                name.start,
            )
        raise self.fail(
            f"unknown function {name.text!r}; expected one of {', '.join(COMPARATORS)}",
            name.start,
        )

    def comparable(self, left: _Item, at: _Token) -> Value:
        """``left`` if it is a single value (a Scalar), which alone may be compared."""
        if isinstance(left, _Stream):
            raise self.fail(
                f"event({left.event!r}) must be reduced before it is compared: add .count() or "
                "another reducer before the comparison",
                at.start,
            )
        if isinstance(left, Reduce) and left.op == "unique":
            raise self.fail(
                "unique(…) gives a list; only .count() may follow it, not a comparison",
                at.start,
            )
        if isinstance(left, Literal):
            raise self.fail(
                "a comparison starts with event(…), trait(…), property(…) or context(…); "
                "found a literal",
                _start(left),
            )
        if isinstance(left, _CONDITIONS):
            raise self.fail(f"a comparison ends the chain; {at.text!r} cannot follow it", at.start)
        return left

    def primary(self) -> _Item:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.open("(", "")
            item = self.or_()
            end = self.close(")", "to close the parenthesis")
            return _respan(item, (token.start, end.end))
        if token.kind in ("string", "number"):
            self.take()
            return Literal(token.text if token.kind == "string" else token.number, _at(token))
        if token.kind == "name" and token.text.lower() in _CONSTANTS:
            self.take()
            return Literal(_CONSTANTS[token.text.lower()], _at(token))
        if token.kind == "name" and token.text.lower() not in _KEYWORDS:
            follows = self.peek(1)
            if not (follows.kind == "punct" and follows.text == "("):
                raise self.fail(
                    f"unexpected name {token.text!r}; expected a function call such as "
                    "event('…') or trait('…')",
                    token.start,
                )
            if token.text in EXTRACTORS:
                self.take()
                return self.extractor(token)
            if token.text in REDUCERS or token.text in STREAM_FILTERS or token.text in COMPARATORS:
                raise self.fail(
                    f"{token.text}() must follow a '.' in a chain, as in "
                    f"event('…').{token.text}(…)",
                    token.start,
                )
            raise self.fail(
                f"unknown function {token.text!r}; expected one of {', '.join(EXTRACTORS)}",
                token.start,
            )
        raise self.fail(
            f"expected an expression such as event('…') or trait('…'), found {_what(token)}",
            token.start,
        )

    # -- extractors --

    def extractor(self, name: _Token) -> _Item:
        if name.text in ("event", "trait"):
            self.primaries += 1
            if self.primaries > MAX_PRIMARY:
                raise self.fail(
                    f"at most {MAX_PRIMARY} primary expressions (found {self.primaries}); "
                    "each event(…) and trait(…) is one",
                    name.start,
                )
        if name.text == "literal":
            self.open("(", "after literal")
            value = self.constant("literal() takes a string, a number, true, false or null")
            closing = self.close(")", "to close literal(")
            return Literal(value, (name.start, closing.end))
        if name.text in ("property", "context"):
            return self.reference(name)
        value, end = self.string_argument(name, "the event's name" if name.text == "event" else "")
        span = (name.start, end)
        if name.text == "trait":
            return TraitRef(value, span)
        return _Stream(value, name.start, end, nested=bool(self.frames))

    def reference(self, name: _Token) -> PropertyRef | ContextRef:
        if not (self.frames or self.reducing):
            raise self.fail(
                f"{name.text}() is only allowed inside a where() or a reducer such as "
                f"sum({name.text}('…'))",
                name.start,
            )
        parent = False
        word = self.peek(1)
        if name.text == "property" and word.kind == "name" and word.text == "parent":
            if self.reducing or len(self.frames) < 2:
                raise self.fail(
                    "'parent:' is only allowed inside a where() of another event (a funnel "
                    "step such as event('A').where(event('B').where(property('x') = "
                    "property(parent: 'x')).count() >= 1))",
                    word.start,
                )
            self.open("(", "")
            self.take()
            self.expect(":", "after parent")
            parent = True
            path, end = self.string_body(name, "the parent event's property")
        else:
            path, end = self.string_argument(name, "a property path")
        span = (name.start, end)
        if name.text == "context":
            return ContextRef(path, span)
        return PropertyRef(path, parent, span)

    def string_argument(self, name: _Token, what: str) -> tuple[str, int]:
        self.open("(", f"after {name.text}")
        return self.string_body(name, what)

    def string_body(self, name: _Token, what: str) -> tuple[str, int]:
        token = self.peek()
        example = f"{name.text}('Order Completed')" if name.text == "event" else f"{name.text}('x')"
        if token.kind != "string":
            raise self.fail(
                f"{name.text}() takes {what or 'a name'} as a string, as in {example}; found "
                f"{_what(token)}",
                token.start,
            )
        self.take()
        if not token.text:
            raise self.fail(f"{name.text}() needs a non-empty name", token.start)
        end = self.close(")", f"to close {name.text}(")
        return token.text, end.end

    def constant(self, message: str) -> str | int | float | bool | None:
        token = self.peek()
        if token.kind == "string":
            self.take()
            return token.text
        if token.kind == "number":
            self.take()
            return token.number
        if token.kind == "name" and token.text.lower() in _CONSTANTS:
            self.take()
            return _CONSTANTS[token.text.lower()]
        raise self.fail(f"{message}; found {_what(token)}", token.start)

    # -- stream filters and reducers --

    def stream_call(self, stream: _Stream, name: _Token) -> _Item:
        fn = name.text
        if fn == "where":
            self.where(stream)
        elif fn == "sources":
            self.sources(stream)
        elif fn in ("within", "between"):
            self.window(stream, name)
        elif fn in REDUCERS:
            return self.reducer(stream, name)
        elif fn in COMPARATORS:
            raise self.fail(
                f"event({stream.event!r}) must be reduced before it is compared: add .count() "
                f"or another reducer before .{fn}()",
                name.start,
            )
        else:
            raise self.fail(
                f"unknown function {fn!r} after event(…); expected one of "
                f"{', '.join(STREAM_FILTERS + REDUCERS)}",
                name.start,
            )
        stream.end = self.peek(-1).end
        return stream

    def where(self, stream: _Stream) -> None:
        self.open("(", "after where")
        braced = self.is_punct("{")
        if braced:
            self.open("{", "")
        self.frames.append(stream)
        condition = self.or_()
        self.frames.pop()
        if braced:
            self.close("}", "to close where({")
        self.close(")", "to close where(")
        if not isinstance(condition, _CONDITIONS):
            raise self.fail(
                f"where() needs a condition such as property('price') > 100; found "
                f"{_describe(condition)}",
                _start(condition),
            )
        stream.where.append(condition)

    def sources(self, stream: _Stream) -> None:
        self.open("(", "after sources")
        braced = self.is_punct("{")
        if braced:
            self.open("{", "")
        word = self.peek()
        if not (word.kind == "name" and word.text == "exclude"):
            raise self.fail(
                f"sources() takes exclude: and source ids, as in sources(exclude: 'id1', 'id2'); "
                f"found {_what(word)}",
                word.start,
            )
        self.take()
        self.expect(":", "after exclude")
        ids = self.strings("source ids")
        stream.exclude.update(ids)
        if braced:
            self.close("}", "to close sources({")
        self.close(")", "to close sources(")

    def strings(self, what: str) -> list[str]:
        """One or more strings: ``'a', 'b'`` or ``['a', 'b']``."""
        bracketed = self.is_punct("[")
        if bracketed:
            self.open("[", "")
        out: list[str] = []
        while True:
            token = self.peek()
            if token.kind != "string":
                raise self.fail(f"expected {what} as strings, found {_what(token)}", token.start)
            self.take()
            out.append(token.text)
            if not self.is_punct(","):
                break
            self.take()
        if bracketed:
            self.close("]", "to close the list")
        return out

    def window(self, stream: _Stream, name: _Token) -> None:
        if stream.window is not None:
            raise self.fail(
                f"a stream takes at most one window; event({stream.event!r}) already has "
                f"{_window_text(stream.window)}",
                name.start,
            )
        self.open("(", f"after {name.text}")
        parent = False
        word = self.peek()
        if word.kind == "name" and word.text == "parent":
            if not stream.nested:
                raise self.fail(
                    "'parent:' is only allowed inside a where() of another event (a funnel "
                    "step such as event('A').where(event('B').within(parent: 1 days).count() "
                    ">= 1))",
                    word.start,
                )
            self.take()
            self.expect(":", "after parent")
            parent = True
        start, at_start = 0, 0
        if name.text == "between":
            start, at_start = self.duration("window", minimum=0)
            self.expect(",", "between the start and the end of between(…)")
        hours, _ = self.duration("window")
        if start >= hours:
            raise self.fail(
                f"between(S, E) needs S < E (found {_hours_text(start)}, {_hours_text(hours)})",
                at_start,
            )
        end = self.close(")", f"to close {name.text}(")
        stream.window = Window(start, hours, parent, (name.start, end.end))

    def duration(self, what: str, minimum: int = 1) -> tuple[int, int]:
        """``N unit`` in hours, and where N is."""
        number = self.peek()
        unit = self.peek(1)
        if number.kind != "number":
            raise self.fail(
                f"expected a duration such as 7 days or 12 hours, found {_what(number)}",
                number.start,
            )
        if not isinstance(number.number, int):
            raise self.fail(
                f"a {what} takes a whole number of hours or days; found {number.text}",
                number.start,
            )
        self.take()
        if not (unit.kind == "name" and unit.text.lower() in _UNITS):
            raise self.fail(
                f"expected a unit (hour, hours, day or days) after {number.text}, found "
                f"{_what(unit)}",
                unit.start,
            )
        self.take()
        hours = number.number * _UNITS[unit.text.lower()]
        if number.number < minimum:
            raise self.fail(
                f"{what} of {number.text} {unit.text}; a {what} is at least 1 hour", number.start
            )
        if hours > MAX_WINDOW_HOURS:
            raise self.fail(
                f"{what} longer than 3 years ({MAX_WINDOW_HOURS:,} hours): {number.text} "
                f"{unit.text}",
                number.start,
            )
        return hours, number.start

    def reducer(self, stream: _Stream, name: _Token) -> Reduce:
        op: ReduceOp = name.text  # type: ignore[assignment]
        self.open("(", f"after {op}")
        value: PropertyRef | ContextRef | None = None
        as_type: ValueType | None = None
        frequency: int | None = None
        if op != "count":
            value = self.reduced_value(op)
            as_type = self.as_type(op)
        if op == "mode":
            self.expect(",", "before mode()'s minimum frequency, as in mode(property('x'), 2)")
            token = self.peek()
            if not (token.kind == "number" and isinstance(token.number, int) and token.number >= 1):
                raise self.fail(
                    "mode() needs a minimum frequency, a whole number of at least 1, as in "
                    f"mode(property('x'), 2); found {_what(token)}",
                    token.start,
                )
            self.take()
            frequency = int(token.number)
        if op == "count" and not self.is_punct(")"):
            raise self.fail(
                "count() takes no argument; to count distinct values write "
                ".unique(property('x')).count()",
                self.peek().start,
            )
        end = self.close(")", f"to close {op}(")
        return Reduce(stream.done(), op, value, as_type, frequency, (stream.start, end.end))

    def reduced_value(self, op: str) -> PropertyRef | ContextRef:
        token = self.peek()
        if token.kind == "punct" and token.text == ")":
            raise self.fail(f"{op}() takes property('…') or context('…'); found ')'", token.start)
        was = self.reducing
        self.reducing = True
        value = self.chain()
        self.reducing = was
        if not isinstance(value, PropertyRef | ContextRef):
            raise self.fail(
                f"{op}() takes property('…') or context('…'); found {_describe(value)}",
                token.start,
            )
        return value

    def as_type(self, op: str) -> ValueType | None:
        word = self.peek()
        if not (word.kind == "name" and word.text.lower() == "as"):
            return None
        allowed = _AS_TYPES.get(op)
        if allowed is None:
            raise self.fail(
                f"'as' is only allowed in min(), max() and mode(), not in {op}()", word.start
            )
        self.take()
        kind = self.peek()
        if not (kind.kind == "name" and kind.text.lower() in allowed):
            raise self.fail(
                f"{op}(… as TYPE) takes one of {', '.join(allowed)}; found {_what(kind)}",
                kind.start,
            )
        self.take()
        return kind.text.lower()  # type: ignore[return-value]

    # -- comparators --

    def comparator(self, left: Value, op: CompareOp, name: _Token) -> Compare:
        self.open("(", f"after {op}")
        args: tuple[Value, ...] = ()
        hours: int | None = None
        if op in _DURATION_ARG:
            hours, _ = self.duration("duration")
        elif op in _LIST_ARG:
            args = self.literal_list(op)
        elif op not in ("absent", "exists"):
            args = (self.value_argument(op, f"{op}()"),)
        elif not self.is_punct(")"):
            raise self.fail(f"{op}() takes no argument", self.peek().start)
        end = self.close(")", f"to close {op}(")
        return Compare(left, op, args, hours, (_start(left), end.end))

    def value_argument(self, op: CompareOp, written: str) -> Value:
        """One scalar: a literal (bare or literal(…)), a trait, a property or a reduced stream."""
        token = self.peek()
        value = self.chain()
        if isinstance(value, _Stream):
            raise self.fail(
                f"{written} takes a single value; event({value.event!r}) must be reduced first "
                "(add .count() or another reducer)",
                token.start,
            )
        if not isinstance(value, Literal | TraitRef | PropertyRef | ContextRef | Reduce):
            raise self.fail(
                f"{written} takes a value; found {_describe(value)}",
                token.start,
            )
        if isinstance(value, Reduce) and value.op == "unique":
            raise self.fail(
                f"{written} takes a single value; unique(…) gives a list (add .count())",
                token.start,
            )
        if isinstance(value, Literal):
            self.check_literal(op, written, value)
        return value

    def check_literal(self, op: CompareOp, written: str, literal: Literal) -> None:
        value = literal.value
        at = literal.span[0]
        if op in _ORDERING and (value is None or isinstance(value, bool)):
            raise self.fail(f"{written} takes a number or a string; found {_value(value)}", at)
        if op in _STRING_ARG and not isinstance(value, str):
            raise self.fail(f"{written} takes a string; found {_value(value)}", at)
        if op in _DATE_ARG:
            if not isinstance(value, str):
                raise self.fail(
                    f"{written} takes an ISO-8601 timestamp such as '2023-12-07T18:50:00Z'; "
                    f"found {_value(value)}",
                    at,
                )
            if parse_timestamp(value) is None:
                raise self.fail(
                    f"{written} takes an ISO-8601 timestamp such as '2023-12-07T18:50:00Z'; "
                    f"{value!r} is not one",
                    at,
                )

    def literal_list(self, op: CompareOp) -> tuple[Value, ...]:
        """``contains('a', 'b')``, ``one_of(1, 2)`` or the same as one list ``(['a', 'b'])``."""
        bracketed = self.is_punct("[")
        if bracketed:
            self.open("[", "")
        out: list[Value] = []
        while True:
            token = self.peek()
            if token.kind == "punct" and token.text in ")]":
                raise self.fail(
                    f"{op}() takes one or more literal values; found {_what(token)}", token.start
                )
            item = self.chain()
            if not isinstance(item, Literal):
                raise self.fail(
                    f"{op}() takes one or more literal values; found {_describe(item)}",
                    token.start,
                )
            if op == "contains" and not isinstance(item.value, str):
                raise self.fail(
                    f"contains() takes strings to look for; found {_value(item.value)}",
                    token.start,
                )
            out.append(item)
            if not self.is_punct(","):
                break
            self.take()
        if bracketed:
            self.close("]", "to close the list")
        return tuple(out)

    def no_arguments(self, name: _Token) -> None:
        self.open("(", f"after {name.text}")
        if not self.is_punct(")"):
            raise self.fail(f"{name.text}() takes no argument", self.peek().start)
        self.close(")", f"to close {name.text}(")


# --- helpers --------------------------------------------------------------------------------------


def _at(token: _Token) -> Span:
    return (token.start, token.end)


def _start(item: _Item) -> int:
    return item.start if isinstance(item, _Stream) else item.span[0]


def _end(item: _Item) -> int:
    return item.end if isinstance(item, _Stream) else item.span[1]


def _around(items: list[_Item]) -> Span:
    return (_start(items[0]), _end(items[-1]))


def _respan(item: _Item, span: Span) -> _Item:
    """A parenthesized item spans its parentheses, so a refusal points at all of it."""
    if isinstance(item, _Stream):
        item.start, item.end = span
        return item
    return replace(item, span=span)


def _what(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the definition"
    if token.kind == "string":
        return f"the string {token.text!r}"
    if token.kind == "number":
        return f"the number {token.text}"
    return repr(token.text)


def _describe(item: _Item) -> str:
    if isinstance(item, _Stream):
        return f"an event stream, event({item.event!r})"
    if isinstance(item, Reduce):
        return "a list, unique(…)" if item.op == "unique" else "a computed value"
    if isinstance(item, TraitRef):
        return "a trait value"
    if isinstance(item, PropertyRef):
        return "an event property"
    if isinstance(item, ContextRef):
        return "a context value"
    if isinstance(item, Literal):
        return f"a literal, {_value(item.value)}"
    return "a condition"


def _value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# --- writing text back ----------------------------------------------------------------------------

_PRINT_SUGAR: Final[dict[str, str]] = {
    "equals": "=",
    "differs": "!=",
    "greater_than": ">",
    "at_least": ">=",
    "less_than": "<",
    "at_most": "<=",
}


def to_text(definition: Definition) -> str:
    """Canonical Segment Query Language for a tree: ``parse(to_text(d))`` gives ``d`` back
    (spans aside) for every tree ``parse`` or the builder makes."""
    return _text(definition.root)


def _text(node: Condition | Value) -> str:
    if isinstance(node, Or):
        return " OR ".join(_grouped(item, (Or,)) for item in node.items)
    if isinstance(node, And):
        return " AND ".join(_grouped(item, (Or, And)) for item in node.items)
    if isinstance(node, Not | AnyUser | AllUsers):
        word = "NOT" if isinstance(node, Not) else "ANY" if isinstance(node, AnyUser) else "ALL"
        return f"{word} {_grouped(node.item, (Or, And))}"
    if isinstance(node, Compare):
        return _compare_text(node)
    if isinstance(node, Reduce):
        return _reduce_text(node)
    if isinstance(node, TraitRef):
        return f"trait({_quote(node.key)})"
    if isinstance(node, PropertyRef):
        inner = f"parent: {_quote(node.path)}" if node.parent else _quote(node.path)
        return f"property({inner})"
    if isinstance(node, ContextRef):
        return f"context({_quote(node.path)})"
    return _literal_text(node.value)


def _grouped(node: Condition, wrap: tuple[type, ...]) -> str:
    text = _text(node)
    return f"({text})" if isinstance(node, wrap) else text


def _compare_text(node: Compare) -> str:
    left = _text(node.left)
    if node.op in _PRINT_SUGAR and len(node.args) == 1:
        return f"{left} {_PRINT_SUGAR[node.op]} {_text(node.args[0])}"
    if node.hours is not None:
        return f"{left}.{node.op}({_hours_text(node.hours)})"
    return f"{left}.{node.op}({', '.join(_text(arg) for arg in node.args)})"


def _reduce_text(node: Reduce) -> str:
    stream = _stream_text(node.stream)
    if node.op == "count":
        return f"{stream}.count()"
    op = "unique" if node.op == "unique_count" else node.op
    argument = _text(node.value) if node.value is not None else ""
    if node.as_type is not None:
        argument += f" as {node.as_type}"
    if node.min_frequency is not None:
        argument += f", {node.min_frequency}"
    text = f"{stream}.{op}({argument})"
    return f"{text}.count()" if node.op == "unique_count" else text


def _stream_text(stream: Stream) -> str:
    parts = [f"event({_quote(stream.event)})"]
    parts += [f".where({_text(condition)})" for condition in stream.where]
    if stream.exclude_sources:
        ids = ", ".join(_quote(source) for source in sorted(stream.exclude_sources))
        parts.append(f".sources(exclude: {ids})")
    if stream.window is not None:
        parts.append("." + _window_text(stream.window))
    return "".join(parts)


def _window_text(window: Window) -> str:
    parent = "parent: " if window.parent else ""
    if window.start_hours == 0:
        return f"within({parent}{_hours_text(window.end_hours)})"
    start, end = _hours_text(window.start_hours), _hours_text(window.end_hours)
    return f"between({parent}{start}, {end})"


def _hours_text(hours: int) -> str:
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def _literal_text(value: str | int | float | bool | None) -> str:
    if isinstance(value, str):
        return _quote(value)
    if value is None or isinstance(value, bool):
        return _value(value)
    return repr(value)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- comparing trees ------------------------------------------------------------------------------


def without_spans(definition: Definition) -> Definition:
    """The same tree with every span ``(0, 0)`` and no text: two definitions that differ only in
    how they were written (spacing, quotes, sugar, order of filters) compare equal."""
    return Definition(definition.kind, _strip(definition.root), "")


def _strip(node: Any) -> Any:
    if isinstance(node, tuple):
        return tuple(_strip(item) for item in node)
    if not is_dataclass(node) or isinstance(node, type):
        return node
    changes: dict[str, Any] = {}
    for spec in fields(node):
        value = getattr(node, spec.name)
        if spec.name == "span":
            changes["span"] = NO_SPAN
        elif isinstance(value, tuple) or is_dataclass(value):
            changes[spec.name] = _strip(value)
    return replace(node, **changes)
