"""Users' regular expressions (Slack's ``/regex/`` keys) in linear time, with JavaScript's
answers: compared with Python's ``re`` where the two languages agree, timed on patterns that
make a backtracking engine run for hours, refused where linear time is impossible."""

from __future__ import annotations

import random
import re
from functools import partial

import pytest

from headwater.destinations.catalog import slack
from headwater.destinations.linear_regex import MAX_STATES, compile_regex
from headwater.destinations.registry import get
from headwater.errors import RegexError
from tests.support.limits import timed

_ATOMS = [
    "a",
    "b",
    "1",
    " ",
    ".",
    "[ab]",
    "[^a]",
    "[a-c1]",
    r"\d",
    r"\w",
    r"\s",
    r"\W",
    r"\b",
    "^",
    "$",
    r"\.",
    "(?:a|b)",
    "(a)",
    "(?<n>b)",
]
_QUANTIFIERS = ["", "", "", "*", "+", "?", "{1,2}", "{2}", "{0,}", "*?", "+?"]


def random_pattern(chance: random.Random, depth: int = 0) -> str:
    parts = []
    for _ in range(chance.randint(1, 4)):
        if depth < 2 and chance.random() < 0.25:
            atom = f"({random_pattern(chance, depth + 1)})"
        else:
            atom = chance.choice(_ATOMS)
        quantifier = "" if atom in ("^", "$", r"\b") else chance.choice(_QUANTIFIERS)
        parts.append(atom + quantifier)
    pattern = "".join(parts)
    return (
        pattern + "|" + random_pattern(chance, depth + 1)
        if (depth < 2 and chance.random() < 0.2)
        else pattern
    )


def test_answers_agree_with_python_where_the_languages_agree() -> None:
    """ASCII text without newlines: there Python's and JavaScript's ``\\w \\d \\s . ^ $``
    mean the same."""
    chance = random.Random(7)
    for _ in range(4000):
        pattern = random_pattern(chance)
        flags = chance.choice(["", "i"])
        linear = compile_regex(pattern, flags)
        python = re.compile(pattern.replace("(?<n>", "(?:"), re.IGNORECASE if flags else 0)
        for _ in range(5):
            text = "".join(chance.choice("abAB1 _.") for _ in range(chance.randint(0, 8)))
            assert linear.search(text) is (python.search(text) is not None), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "flags", "text", "expected"),
    [
        ("^b", "m", "a\nb", True),
        ("^b", "", "a\nb", False),
        ("a$", "m", "a\nb", True),
        ("a$", "", "a\n", False),  # JavaScript's $ is the very end
        ("a.b", "", "a\nb", False),
        ("a.b", "s", "a\nb", True),
        (r"\u00e9t\u00e9", "", "été", True),
        (r"\x41", "", "A", True),
        (r"\/path", "", "/path", True),
        ("é", "i", "É", True),
        (r"[\d-x]", "", "-", True),
        ("a{,2}", "", "a{,2}", True),
        (r"\bis\b", "", "this is", True),
        (r"\Bis\b", "", "is", False),
        ("[]a]", "", "]", False),
    ],
)
def test_javascript_semantics(pattern: str, flags: str, text: str, expected: bool) -> None:
    assert compile_regex(pattern, flags).search(text) is expected


# Each with its answers on ("a" * n + "!", "x" * n, "ab " * n + "!").
HOSTILE = {
    r"(a+)+$": (False, False, False),
    r"(a|a)*b": (False, False, True),
    r"(a*)*b": (False, False, True),
    r"(.*a){20}": (True, False, True),
    r".*a.*a.*a.*a.*b": (False, False, True),
    r"(\w+\s?)+$": (False, True, False),
    r"^(a|aa)+$": (False, False, False),
    r"(x+x+)+y": (False, False, False),
    r"([a-z]+)*[0-9]": (False, False, False),
}


@pytest.mark.parametrize("pattern", sorted(HOSTILE))
def test_patterns_that_backtrack_for_hours_run_in_linear_time(pattern: str) -> None:
    compiled = compile_regex(pattern)
    texts = ("a" * 100_000 + "!", "x" * 100_000, "ab " * 30_000 + "!")
    for text, expected in zip(texts, HOSTILE[pattern], strict=True):
        answer, seconds = timed(partial(compiled.search, text))
        assert seconds < 1, f"{pattern} took {seconds:.1f} s"
        assert answer is expected, (pattern, text[:10])


@pytest.mark.parametrize(
    ("pattern", "position", "words"),
    [
        (r"(a)\1", 3, "backreferences"),
        (r"(?<n>a)\k<n>", 7, "backreferences"),
        ("a(?=b)", 1, "lookahead"),
        ("(?<!a)b", 0, "lookbehind"),
        ("(?!a)", 0, "lookahead"),
        ("(ab", 0, "unterminated group"),
        ("ab)", 2, "unmatched"),
        ("[ab", 0, "unterminated"),
        ("*a", 0, "nothing to repeat"),
        ("a{2,1}", 1, "out of order"),
        ("[z-a]", 0, "out of order"),
        ("\\", 0, "end of pattern"),
        (r"\p{L}", 0, "Unicode property"),
    ],
)
def test_what_cannot_run_in_linear_time_or_parse_is_refused(
    pattern: str, position: int, words: str
) -> None:
    with pytest.raises(RegexError) as caught:
        compile_regex(pattern)
    assert words in str(caught.value) and caught.value.position == position


def test_counted_repetition_is_bounded() -> None:
    with pytest.raises(RegexError, match=str(MAX_STATES)):
        compile_regex("(a{1000}){1000}")
    assert compile_regex("a{3,5}b").search("xaaaab") is True


def test_slack_regex_keys_use_it() -> None:
    definition = get("slack")
    url = "https://hooks.slack.com/services/T/B/X"
    with pytest.raises(ValueError, match="lookahead"):
        definition.parse_settings({"webhook_url": url, "templates": {"/a(?=b)/": "x"}})
    settings = definition.parse_settings(
        {"webhook_url": url, "event_channels": {"/(a+)+$/": "#as", "/^Order/i": "#orders"}}
    )
    assert isinstance(settings, slack.SlackSettings)
    long_name = "a" * 50_000 + "!"
    found, seconds = timed(partial(slack._lookup, settings.event_channels, long_name))
    assert found is None and seconds < 1
    assert slack._lookup(settings.event_channels, "order shipped") == "#orders"
    assert slack._lookup(settings.event_channels, "baaa") == "#as"
