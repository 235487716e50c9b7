"""FQL tokens: words (paths, numbers, keywords, function names), strings and operators.

A word is a run of ``[A-Za-z0-9_.-]`` with ``\\`` escaping any one character, so a path such as
``properties.product\\ 1.price`` is one token; the parser decides what a word is. Every token
keeps its offset so errors can say where they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from headwater.errors import FQLSyntaxError


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    OPERATOR = "operator"
    END = "end"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # a word as written (escapes kept), a string's value, or the operator
    position: int


_WORD_CHAR = re.compile(r"[A-Za-z0-9_.\-]")
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "!", "(", ")", "[", "]", ",")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "'\"":
            value, end = _string(text, i)
            tokens.append(Token(Kind.STRING, value, i))
            i = end
        elif _WORD_CHAR.match(char) or char == "\\":
            start = i
            while i < n and (_WORD_CHAR.match(text[i]) or text[i] == "\\"):
                if text[i] == "\\":
                    if i + 1 >= n:
                        raise FQLSyntaxError("a backslash at the end of a path escapes nothing", i)
                    i += 1
                i += 1
            tokens.append(Token(Kind.WORD, text[start:i], start))
        else:
            for operator in _OPERATORS:
                if text.startswith(operator, i):
                    tokens.append(Token(Kind.OPERATOR, operator, i))
                    i += len(operator)
                    break
            else:
                raise FQLSyntaxError(f"unexpected character {char!r}", i)
    tokens.append(Token(Kind.END, "", n))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted string (either quote); ``\\`` escapes the next character."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise FQLSyntaxError("a string is not closed", start)
