"""FQL statements as trees: the parser for Segment's grammar (Spec §21.4).

    expr    := and ( "or" and )*          and := unary ( "and" unary )*
    unary   := "!" unary | compare        compare := operand ( op operand )?
    operand := "(" expr ")" | call | literal | list | path

Parsing happens once per configuration change; ``evaluate.py`` turns the tree into closures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from headwater.errors import FQLSyntaxError
from headwater.fql.lexer import Kind, Token, tokenize

MAX_BYTES = 5 * 1024  # Segment's limit on one destination filter statement
# Parentheses, lists, "!" and function calls nest at most this deep. Parsing, compiling,
# evaluating and the browser's IR each recurse once or a few times per level, so 5 KB of "("
# would pass Python's recursion limit; 64 levels is far beyond any filter written by hand.
MAX_DEPTH = 64

# Function name -> number of arguments.
FUNCTIONS: dict[str, int] = {
    "contains": 2,
    "match": 2,
    "length": 1,
    "lowercase": 1,
    "uppercase": 1,
    "snakecase": 1,
    "kebabcase": 1,
    "titlecase": 1,
    "typeof": 1,
    "bool": 1,
    "string": 1,
    "number": 1,
    "semver": 3,
}
COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">=", "in"})
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE]-?\d+)?")
_LITERAL_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Path:
    segments: tuple[str, ...]


@dataclass(frozen=True)
class Literal:
    value: Any  # str, int, float, bool or None


@dataclass(frozen=True)
class ListOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Call:
    function: str
    arguments: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Compare:
    operator: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Logic:
    operator: str  # "and" or "or"
    operands: tuple[Node, ...]


Node = Path | Literal | ListOf | Call | Not | Compare | Logic


def parse(text: str) -> Node:
    if len(text.encode()) > MAX_BYTES:
        raise FQLSyntaxError(f"the statement is longer than {MAX_BYTES} bytes", MAX_BYTES)
    parser = _Parser(tokenize(text))
    node = parser.expression()
    token = parser.peek()
    if token.kind is not Kind.END:
        raise FQLSyntaxError(f"unexpected {_describe(token)}", token.position)
    return node


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0

    def _enter(self, token: Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise FQLSyntaxError(
                f"the statement nests deeper than {MAX_DEPTH} levels of parentheses, lists, "
                "'!' and function calls",
                token.position,
            )

    def _leave(self) -> None:
        self._depth -= 1

    def peek(self) -> Token:
        return self._tokens[self._at]

    def _take(self) -> Token:
        token = self._tokens[self._at]
        if token.kind is not Kind.END:
            self._at += 1
        return token

    def _is(self, kind: Kind, text: str) -> bool:
        token = self.peek()
        return token.kind is kind and token.text == text

    def _expect(self, text: str) -> None:
        token = self._take()
        if token.kind is not Kind.OPERATOR or token.text != text:
            raise FQLSyntaxError(f"expected {text!r} but found {_describe(token)}", token.position)

    def expression(self) -> Node:
        return self._logic("or", self._and)

    def _and(self) -> Node:
        return self._logic("and", self._unary)

    def _logic(self, operator: str, operand: Any) -> Node:
        operands = [operand()]
        while self._is(Kind.WORD, operator):
            self._take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Logic(operator, tuple(operands))

    def _unary(self) -> Node:
        if self._is(Kind.OPERATOR, "!"):
            self._enter(self._take())
            operand = self._unary()
            self._leave()
            return Not(operand)
        left = self._operand()
        token = self.peek()
        if (token.kind is Kind.OPERATOR and token.text in COMPARISONS) or (
            token.kind is Kind.WORD and token.text == "in"
        ):
            self._take()
            return Compare(token.text, left, self._operand())
        return left

    def _operand(self) -> Node:
        token = self._take()
        if token.kind is Kind.STRING:
            return Literal(token.text)
        if token.kind is Kind.OPERATOR and token.text == "(":
            self._enter(token)
            inner = self.expression()
            self._expect(")")
            self._leave()
            return inner
        if token.kind is Kind.OPERATOR and token.text == "[":
            self._enter(token)
            items = self._items("]")
            self._leave()
            return ListOf(tuple(items))
        if token.kind is Kind.WORD:
            return self._word(token)
        raise FQLSyntaxError(f"expected a value but found {_describe(token)}", token.position)

    def _items(self, closing: str) -> list[Node]:
        items: list[Node] = []
        if self._is(Kind.OPERATOR, closing):
            self._take()
            return items
        while True:
            items.append(self._operand())
            token = self._take()
            if token.kind is Kind.OPERATOR and token.text == closing:
                return items
            if token.kind is not Kind.OPERATOR or token.text != ",":
                raise FQLSyntaxError(
                    f"expected ',' or {closing!r} but found {_describe(token)}", token.position
                )

    def _word(self, token: Token) -> Node:
        word = token.text
        if self._is(Kind.OPERATOR, "("):
            if word not in FUNCTIONS:
                raise FQLSyntaxError(f"unknown function {word!r}", token.position)
            self._enter(token)
            self._take()
            arguments = self._items(")")
            self._leave()
            if len(arguments) != FUNCTIONS[word]:
                raise FQLSyntaxError(
                    f"{word}() takes {FUNCTIONS[word]} argument"
                    f"{'s' if FUNCTIONS[word] > 1 else ''}, not {len(arguments)}",
                    token.position,
                )
            return Call(word, tuple(arguments))
        if word in _LITERAL_WORDS:
            return Literal(_LITERAL_WORDS[word])
        if word in ("and", "or", "in"):
            raise FQLSyntaxError(f"expected a value but found {word!r}", token.position)
        if _NUMBER.fullmatch(word):
            is_integer = "." not in word and "e" not in word.lower()
            return Literal(int(word) if is_integer else float(word))
        return Path(_segments(word, token.position))


def _segments(word: str, position: int) -> tuple[str, ...]:
    """``a.b\\ c`` -> ("a", "b c"): dots split unless escaped; ``\\x`` is a literal x."""
    segments: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == "\\":
            current.append(word[i + 1])
            i += 2
            continue
        if char == ".":
            if not current:
                raise FQLSyntaxError(f"empty path segment in {word!r}", position + i)
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if not current:
        raise FQLSyntaxError(f"empty path segment in {word!r}", position + len(word))
    segments.append("".join(current))
    return tuple(segments)


def _describe(token: Token) -> str:
    if token.kind is Kind.END:
        return "the end of the statement"
    if token.kind is Kind.STRING:
        return f"the string {token.text!r}"
    return repr(token.text)
