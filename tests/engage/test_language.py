"""Segment Query Language: every example and function of Segment's reference page parses to the
tree the engines read; every refusal names its part by position; ``to_text`` writes back text
that parses to the same tree (checked on generated trees)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headwater.engage.definition import (
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
    Stream,
    TraitRef,
    Value,
    ValueType,
    Window,
)
from headwater.engage.language import (
    COMPARATORS,
    MAX_DEPTH,
    MAX_PRIMARY,
    MAX_TEXT_BYTES,
    MAX_WINDOW_HOURS,
    Purpose,
    parse,
    to_text,
    without_spans,
)
from headwater.errors import DefinitionError, InputError
from tests.support.definitions import assert_same_tree, shape
from tests.support.limits import with_stack_budget

# --- building expected trees ---------------------------------------------------------------------


def ev(
    name: str, *where: Condition, window: Window | None = None, exclude: tuple[str, ...] = ()
) -> Stream:
    return Stream(name, tuple(where), frozenset(exclude), window)


def within(days: int = 0, hours: int = 0, *, parent: bool = False) -> Window:
    return Window(0, days * 24 + hours, parent)


def count(stream: Stream) -> Reduce:
    return Reduce(stream, "count")


def prop(path: str, *, parent: bool = False) -> PropertyRef:
    return PropertyRef(path, parent)


def trait(key: str) -> TraitRef:
    return TraitRef(key)


def cmp(left: Value, op: CompareOp, *args: Any, hours: int | None = None) -> Compare:
    values = tuple(
        a if isinstance(a, Literal | TraitRef | PropertyRef | ContextRef | Reduce) else Literal(a)
        for a in args
    )
    return Compare(left, op, values, hours)


def users(root: Condition | Value) -> Definition:
    return Definition("users", root)


def accounts(root: Condition | Value) -> Definition:
    return Definition("accounts", root)


def audience(text: str, kind: Kind = "users") -> Definition:
    return parse(text, kind=kind, purpose="audience")


def computed(text: str, kind: Kind = "users") -> Definition:
    return parse(text, kind=kind, purpose="trait")


def refused(text: str, kind: Kind = "users", purpose: Purpose = "audience") -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse(text, kind=kind, purpose=purpose)
    assert caught.value.text == text
    return caught.value


SHOES = ev("Shoes Bought")
BOUGHT_ONCE = cmp(count(SHOES), "at_least", 1)
BOTH = And((BOUGHT_ONCE, cmp(trait("total_spend"), "greater_than", 200)))

# --- the reference page's examples ---------------------------------------------------------------

AUDIENCE_EXAMPLES: list[tuple[str, Definition]] = [
    (
        "event('Shoes Bought').where( property('price') >= 100 ).within(7 days).count() >= 1",
        users(
            cmp(
                count(
                    ev(
                        "Shoes Bought",
                        cmp(prop("price"), "at_least", 100),
                        window=within(days=7),
                    )
                ),
                "at_least",
                1,
            )
        ),
    ),
    (
        "event('Shoes Bought').where( \n"
        "property('price') >= trait('avg_spend')\n"
        "AND \n"
        "event('Shoes Returned').within(parent: 5 days).count() >= 1 \n"
        ").within(30 days).count() >= 1",
        users(
            cmp(
                count(
                    ev(
                        "Shoes Bought",
                        And(
                            (
                                cmp(prop("price"), "at_least", trait("avg_spend")),
                                cmp(
                                    count(ev("Shoes Returned", window=within(5, parent=True))),
                                    "at_least",
                                    1,
                                ),
                            )
                        ),
                        window=within(days=30),
                    )
                ),
                "at_least",
                1,
            )
        ),
    ),
    (
        "NOT ( event('Shoes Bought').count() >= 1 AND trait('total_spend') > 200 )",
        users(Not(BOTH)),
    ),
    (
        "ALL ( event('Shoes Bought').count() >= 1 AND trait('total_spend') > 200 )",
        accounts(AllUsers(BOTH)),
    ),
    ("ALL NOT event('Shoes Bought').count() >= 1", accounts(AllUsers(Not(BOUGHT_ONCE)))),
    ("ANY event('Shoes Bought').count() >= 1", accounts(AnyUser(BOUGHT_ONCE))),
]

TRAIT_EXAMPLES: list[tuple[str, Definition]] = [
    (
        "event('Shoes Bought').within(30 days).avg(property('spend'))",
        users(Reduce(ev("Shoes Bought", window=within(30)), "avg", prop("spend"))),
    ),
    (
        "event('Shoes Bought').where( property('price') > 100 AND property('brand') = 'My Brand' )"
        ".min(property('spend'))",
        users(
            Reduce(
                ev(
                    "Shoes Bought",
                    And(
                        (
                            cmp(prop("price"), "greater_than", 100),
                            cmp(prop("brand"), "equals", "My Brand"),
                        )
                    ),
                ),
                "min",
                prop("spend"),
            )
        ),
    ),
    (
        "event('Shoes Bought').within(30 days).first(property('spend'))",
        users(Reduce(ev("Shoes Bought", window=within(30)), "first", prop("spend"))),
    ),
    (
        "event('Shoes Bought').within(30 days).mode(property('spend'), 2)",
        users(
            Reduce(ev("Shoes Bought", window=within(30)), "mode", prop("spend"), min_frequency=2)
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), AUDIENCE_EXAMPLES)
def test_every_audience_example_of_the_reference(text: str, expected: Definition) -> None:
    parsed = audience(text, expected.kind)
    assert_same_tree(parsed, expected)
    assert parsed.text == text
    assert parsed.is_audience


@pytest.mark.parametrize(("text", "expected"), TRAIT_EXAMPLES)
def test_every_computed_trait_example_of_the_reference(text: str, expected: Definition) -> None:
    parsed = computed(text)
    assert_same_tree(parsed, expected)
    assert not parsed.is_audience


def test_spans_point_into_the_text() -> None:
    text = "event('Shoes Bought').where( property('price') >= 100 ).within(7 days).count() >= 1"
    root = audience(text).root
    assert isinstance(root, Compare) and isinstance(root.left, Reduce)
    stream = root.left.stream
    where = stream.where[0]
    assert isinstance(where, Compare)
    assert stream.window is not None

    def spanned(span: tuple[int, int]) -> str:
        return text[span[0] : span[1]]

    assert spanned(root.span) == text
    assert spanned(root.left.span) == text.removesuffix(" >= 1")
    assert spanned(stream.span) == text.removesuffix(".count() >= 1")
    assert spanned(where.span) == "property('price') >= 100"
    assert spanned(where.left.span) == "property('price')"
    assert spanned(where.args[0].span) == "100"
    assert spanned(stream.window.span) == "within(7 days)"
    assert spanned(root.args[0].span) == "1"


def test_spans_of_junctions_and_parentheses() -> None:
    text = "NOT (trait('a') = 1 OR trait('b') = 2) AND trait('c').exists()"
    root = audience(text).root
    assert isinstance(root, And)
    negated, exists = root.items
    assert isinstance(negated, Not) and isinstance(negated.item, Or)
    assert root.span == (0, len(text))
    assert text[slice(*negated.span)] == "NOT (trait('a') = 1 OR trait('b') = 2)"
    assert text[slice(*negated.item.span)] == "(trait('a') = 1 OR trait('b') = 2)"
    assert text[slice(*exists.span)] == "trait('c').exists()"


# --- every function -------------------------------------------------------------------------------

SPEND = prop("spend")
EVERY_REDUCER: list[tuple[str, Reduce]] = [
    ("count()", count(SHOES)),
    ("sum(property('spend'))", Reduce(SHOES, "sum", SPEND)),
    ("avg(property('spend'))", Reduce(SHOES, "avg", SPEND)),
    ("max(property('spend'))", Reduce(SHOES, "max", SPEND)),
    ("max(property('spend') as string)", Reduce(SHOES, "max", SPEND, "string")),
    ("max(property('spend') as number)", Reduce(SHOES, "max", SPEND, "number")),
    ("min(property('spend'))", Reduce(SHOES, "min", SPEND)),
    ("min(property('spend') as string)", Reduce(SHOES, "min", SPEND, "string")),
    ("mode(property('spend'), 2)", Reduce(SHOES, "mode", SPEND, min_frequency=2)),
    ("mode(property('spend') as array, 2)", Reduce(SHOES, "mode", SPEND, "array", 2)),
    ("mode(property('spend') as string, 3)", Reduce(SHOES, "mode", SPEND, "string", 3)),
    ("mode(property('spend') as number, 1)", Reduce(SHOES, "mode", SPEND, "number", 1)),
    ("first(property('spend'))", Reduce(SHOES, "first", SPEND)),
    ("last(property('spend'))", Reduce(SHOES, "last", SPEND)),
    ("unique(property('spend'))", Reduce(SHOES, "unique", SPEND)),
    ("unique(property('spend')).count()", Reduce(SHOES, "unique_count", SPEND)),
    ("sum(context('page.count'))", Reduce(SHOES, "sum", ContextRef("page.count"))),
]


@pytest.mark.parametrize(("call", "expected"), EVERY_REDUCER)
def test_every_reducer(call: str, expected: Reduce) -> None:
    assert_same_tree(computed(f"event('Shoes Bought').{call}"), users(expected))


T = trait("total_spend")
EVERY_COMPARATOR: list[tuple[list[str], Compare]] = [
    (["equals(500)", "== 500", "= 500"], cmp(T, "equals", 500)),
    (["differs(500)", "!= 500"], cmp(T, "differs", 500)),
    (["absent()"], cmp(T, "absent")),
    (["exists()"], cmp(T, "exists")),
    (["greater_than(500)", "> 500"], cmp(T, "greater_than", 500)),
    (["at_least(500)", ">= 500"], cmp(T, "at_least", 500)),
    (["less_than(500)", "< 500"], cmp(T, "less_than", 500)),
    (["at_most(500)", "<= 500"], cmp(T, "at_most", 500)),
    (
        ["contains('shoes','shirts')", "contains(['shoes', 'shirts'])"],
        cmp(T, "contains", "shoes", "shirts"),
    ),
    (["omits('shoes')"], cmp(T, "omits", "shoes")),
    (["starts_with('total')"], cmp(T, "starts_with", "total")),
    (["ends_with('total')"], cmp(T, "ends_with", "total")),
    (
        ["one_of('shoes','shirts')", "one_of(['shoes', 'shirts'])"],
        cmp(T, "one_of", "shoes", "shirts"),
    ),
    (["one_of(1, 2.5, true, null)"], cmp(T, "one_of", 1, 2.5, True, None)),
    (["before_date('2023-12-07T18:50:00Z')"], cmp(T, "before_date", "2023-12-07T18:50:00Z")),
    (["after_date('2023-12-07T18:50:00Z')"], cmp(T, "after_date", "2023-12-07T18:50:00Z")),
    (["after_date('2023-12-07')"], cmp(T, "after_date", "2023-12-07")),
    (["within_last(7 days)"], cmp(T, "within_last", hours=168)),
    (["within_next(7 days)"], cmp(T, "within_next", hours=168)),
    (["before_last(7 days)"], cmp(T, "before_last", hours=168)),
    (["after_next(7 days)"], cmp(T, "after_next", hours=168)),
    (["within_last(1 hour)", "within_last(1 hours)"], cmp(T, "within_last", hours=1)),
    (["within_next(36 hours)"], cmp(T, "within_next", hours=36)),
    (["after_next(1 day)"], cmp(T, "after_next", hours=24)),
    (["equals(literal(100))", "= literal(100)", "== (100)"], cmp(T, "equals", 100)),
    (["equals(trait('avg_spend'))", "= trait('avg_spend')"], cmp(T, "equals", trait("avg_spend"))),
    (["> event('Shoes Bought').count()"], cmp(T, "greater_than", count(SHOES))),
]


@pytest.mark.parametrize(("calls", "expected"), EVERY_COMPARATOR)
def test_every_comparator_and_its_sugar(calls: list[str], expected: Compare) -> None:
    for call in calls:
        text = (
            f"trait('total_spend').{call}" if call[0].isalpha() else f"trait('total_spend') {call}"
        )
        assert_same_tree(audience(text), users(expected))


def test_every_comparator_is_covered() -> None:
    assert {expected.op for _, expected in EVERY_COMPARATOR} == set(COMPARATORS)
    ops: set[ReduceOp] = {expected.op for _, expected in EVERY_REDUCER}
    assert ops == {
        "count",
        "sum",
        "avg",
        "max",
        "min",
        "mode",
        "first",
        "last",
        "unique",
        "unique_count",
    }


PAGE = "event('Page Viewed').{}.count() >= 1"
EVERY_STREAM_FILTER: list[tuple[list[str], Stream]] = [
    (
        [
            "where(property('total') > 100)",
            "where({property('total') > 100})",
            "where( { property('total')>100 } )",
        ],
        ev("Page Viewed", cmp(prop("total"), "greater_than", 100)),
    ),
    (
        ["where(context('page.url').contains('pricing'))"],
        ev("Page Viewed", cmp(ContextRef("page.url"), "contains", "pricing")),
    ),
    (
        ["where(property('a') = 1).where(property('b') = 2)"],
        ev("Page Viewed", cmp(prop("a"), "equals", 1), cmp(prop("b"), "equals", 2)),
    ),
    (
        [
            "sources(exclude: 'QgRHeujRJBM9j18yChyC', '/;hSBZDqGDPvXCKHbikPm')",
            "sources({exclude: 'QgRHeujRJBM9j18yChyC', '/;hSBZDqGDPvXCKHbikPm'})",
            "sources(exclude: ['QgRHeujRJBM9j18yChyC', '/;hSBZDqGDPvXCKHbikPm'])",
            "sources({exclude: ['/;hSBZDqGDPvXCKHbikPm', 'QgRHeujRJBM9j18yChyC']})",
            "sources(exclude: 'QgRHeujRJBM9j18yChyC').sources(exclude: '/;hSBZDqGDPvXCKHbikPm')",
        ],
        ev("Page Viewed", exclude=("QgRHeujRJBM9j18yChyC", "/;hSBZDqGDPvXCKHbikPm")),
    ),
    (
        ["within(7 days)", "within(168 hours)", "within(7 DAYS)"],
        ev("Page Viewed", window=within(7)),
    ),
    (["within(1 day)", "within(24 hours)"], ev("Page Viewed", window=within(1))),
    (["within(1 hour)", "within(1 hours)"], ev("Page Viewed", window=within(hours=1))),
    (
        ["between(7 days, 10 days)", "between(168 hours, 10 days)"],
        ev("Page Viewed", window=Window(168, 240)),
    ),
    (["between(0 days, 7 days)"], ev("Page Viewed", window=within(7))),
    (
        ["within(1095 days)", f"within({MAX_WINDOW_HOURS} hours)"],
        ev("Page Viewed", window=within(hours=MAX_WINDOW_HOURS)),
    ),
    (
        [
            "within(2 days).where(property('a') = 1).sources(exclude: 's')",
            "sources(exclude: 's').within(2 days).where(property('a') = 1)",
        ],
        ev("Page Viewed", cmp(prop("a"), "equals", 1), window=within(2), exclude=("s",)),
    ),
]


@pytest.mark.parametrize(("calls", "expected"), EVERY_STREAM_FILTER)
def test_every_stream_filter(calls: list[str], expected: Stream) -> None:
    for call in calls:
        assert_same_tree(audience(PAGE.format(call)), users(cmp(count(expected), "at_least", 1)))


def test_funnels_reference_the_parent_event() -> None:
    text = (
        "event('Cart Viewed').where("
        "NOT event('Order Completed').where(property('cart_id') = property(parent: 'id'))"
        ".between(parent: 1 hour, 1 day).count() >= 1"
        ").within(30 days).count() >= 1"
    )
    step = cmp(
        count(
            ev(
                "Order Completed",
                cmp(prop("cart_id"), "equals", prop("id", parent=True)),
                window=Window(1, 24, parent=True),
            )
        ),
        "at_least",
        1,
    )
    expected = cmp(count(ev("Cart Viewed", Not(step), window=within(30))), "at_least", 1)
    assert_same_tree(audience(text), users(expected))


def test_junctions_and_precedence() -> None:
    a, b, c = (cmp(trait(k), "equals", 1) for k in "abc")
    cases: dict[str, Condition] = {
        "trait('a') = 1 AND trait('b') = 1 OR trait('c') = 1": Or((And((a, b)), c)),
        "trait('a') = 1 OR trait('b') = 1 AND trait('c') = 1": Or((a, And((b, c)))),
        "trait('a') = 1 and (trait('b') = 1 or trait('c') = 1)": And((a, Or((b, c)))),
        "trait('a') = 1 And trait('b') = 1 aNd trait('c') = 1": And((a, b, c)),
        "(trait('a') = 1 AND trait('b') = 1) AND trait('c') = 1": And((And((a, b)), c)),
        "not trait('a') = 1 AND trait('b') = 1": And((Not(a), b)),
        "NOT NOT trait('a') = 1": Not(Not(a)),
        "NOT (trait('a') = 1)": Not(a),
        "((trait('a') = 1))": a,
        "(trait('a')) = 1": a,
        "NOT (trait('a')) = 1": Not(a),
    }
    for text, expected in cases.items():
        assert_same_tree(audience(text), users(expected))
    quantified: dict[str, Condition] = {
        "any trait('a') = 1": AnyUser(a),
        "all (trait('a') = 1 OR trait('b') = 1)": AllUsers(Or((a, b))),
        "All Not trait('a') = 1": AllUsers(Not(a)),
        "ANY trait('a') = 1 AND trait('b') = 1": And((AnyUser(a), b)),
        "NOT ANY trait('a') = 1": Not(AnyUser(a)),
        "ANY(trait('a') = 1) OR ALL(trait('b') = 1)": Or((AnyUser(a), AllUsers(b))),
    }
    for text, expected in quantified.items():
        assert_same_tree(audience(text, "accounts"), accounts(expected))


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("'My Brand'", "My Brand"),
        ('"My Brand"', "My Brand"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'\n'", "n"),  # a backslash makes the next character plain, as in FQL
        ("'two\nlines'", "two\nlines"),
        ("''", ""),
        ("'ünïcødé ✓'", "ünïcødé ✓"),
        ("42", 42),
        ("-42", -42),
        ("0", 0),
        ("4.5", 4.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        (str(2**63 - 1), 2**63 - 1),
        (str(-(2**63)), -(2**63)),
        ("true", True),
        ("FALSE", False),
        ("null", None),
        ("literal('x')", "x"),
        ("literal(-1.5)", -1.5),
        ("literal(null)", None),
    ],
)
def test_literals(written: str, value: Any) -> None:
    parsed = audience(f"trait('t') = {written}")
    assert shape(parsed.root) == shape(cmp(trait("t"), "equals", Literal(value)))


def test_names_take_any_string() -> None:
    text = r"event('Order \'Completed\'').where(property('a.b c') = 1).count() >= 1"
    expected = cmp(count(ev("Order 'Completed'", cmp(prop("a.b c"), "equals", 1))), "at_least", 1)
    assert_same_tree(audience(text), users(expected))


def test_computed_traits_may_be_a_trait_or_any_reducer_kind() -> None:
    assert_same_tree(computed("trait('total_spend')"), users(trait("total_spend")))
    assert_same_tree(computed("trait('x')", "accounts"), accounts(trait("x")))
    assert_same_tree(
        computed("event('Shoes Bought').unique(property('spend'))"),
        users(Reduce(SHOES, "unique", SPEND)),
    )


def test_whitespace_and_layout_do_not_change_the_tree() -> None:
    compact = audience("event('a').where(property('x')>1).within(2 days).count()>=1")
    spaced = audience(
        "  event( 'a' )\n\t. where ( property ( 'x' ) > 1 )\n.within( 2  days ).count( ) >= 1 "
    )
    assert without_spans(compact) == without_spans(spaced)
    assert compact != spaced  # spans and text differ


# --- refusals -------------------------------------------------------------------------------------

# (text, kind, purpose, the part refused (its first occurrence is the position; "" the end, a
# number the position itself), part of the message)
REFUSALS: list[tuple[str, Kind, Purpose, str | int, str]] = [
    ("event('a').cnt() >= 1", "users", "audience", "cnt", "unknown function 'cnt' after event(…); expected one of where, sources, within, between, count, sum, avg, min, max, mode, first, last, unique"),
    ("evnt('a').count() >= 1", "users", "audience", "evnt", "unknown function 'evnt'; expected one of event, trait, property, context, literal"),
    ("trait('a').eq(1)", "users", "audience", "eq", "unknown function 'eq'; expected one of equals, differs, absent"),
    ("count() >= 1", "users", "audience", "count", "count() must follow a '.' in a chain"),
    ("foo = 1", "users", "audience", "foo", "unexpected name 'foo'"),
    ("event('a').where(property(parent: 'x') = 1).count() >= 1", "users", "audience", "parent", "'parent:' is only allowed inside a where() of another event"),
    ("event('a').within(parent: 2 days).count() >= 1", "users", "audience", "parent", "'parent:' is only allowed inside a where() of another event"),
    ("event('a').where(event('b').sum(property(parent: 'x')) > 1).count() >= 1", "users", "audience", "parent", "'parent:' is only allowed inside a where() of another event"),
    ("event('a').count()", "users", "audience", "event", "an audience must end in a comparison (found a computed value)"),
    ("trait('a')", "users", "audience", "trait", "an audience must end in a comparison (found a trait value)"),
    ("event('a')", "users", "audience", "event", "an audience must end in a comparison (found an event stream"),
    ("'a'", "users", "audience", "'a'", "an audience must end in a comparison (found a literal, 'a')"),
    ("event('a').count() > 1", "users", "trait", "event", "a computed trait must end in a value"),
    ("event('a').within(2 days)", "users", "trait", "event", "add a reducer such as .count()"),
    ("5", "users", "trait", "5", "a computed trait must end in a value"),
    ("ANY trait('a') = 1", "users", "audience", "ANY", "ANY/ALL need kind ACCOUNTS"),
    ("trait('b') = 1 OR all trait('a') = 1", "users", "audience", "all", "ANY/ALL need kind ACCOUNTS"),
    ("event('a').where(ALL property('x') = 1).count() >= 1", "accounts", "audience", "ALL", "ALL is not allowed inside where()"),
    ("ANY (ALL trait('a') = 1)", "accounts", "audience", "ALL", "ALL cannot be nested inside another ANY or ALL"),
    ("ANY trait('a')", "accounts", "audience", "trait", "ANY needs a condition after it; found a trait value"),
    ("NOT trait('a')", "users", "audience", "trait", "NOT needs a condition after it; found a trait value"),
    ("event('a').within(0 days).count() >= 1", "users", "audience", "0 days", "window of 0 days"),
    ("event('a').within(-1 hours).count() >= 1", "users", "audience", "-1", "window of -1 hours"),
    ("event('a').within(1096 days).count() >= 1", "users", "audience", "1096", "window longer than 3 years (26,280 hours)"),
    ("event('a').within(26281 hours).count() >= 1", "users", "audience", "26281", "window longer than 3 years (26,280 hours)"),
    ("event('a').between(1 days, 1096 days).count() >= 1", "users", "audience", "1096", "window longer than 3 years (26,280 hours)"),
    ("event('a').within(1.5 days).count() >= 1", "users", "audience", "1.5", "a window takes a whole number"),
    ("event('a').within(7 weeks).count() >= 1", "users", "audience", "weeks", "expected a unit (hour, hours, day or days)"),
    ("event('a').within(days).count() >= 1", "users", "audience", "days", "expected a duration such as 7 days"),
    ("event('a').between(3 days, 2 days).count() = 1", "users", "audience", "3 days", "between(S, E) needs S < E"),
    ("event('a').between(2 days, 48 hours).count() = 1", "users", "audience", "2 days", "between(S, E) needs S < E"),
    ("event('a').within(1 day).between(2 days, 3 days).count() >= 1", "users", "audience", "between", "a stream takes at most one window; event('a') already has within(1 day)"),
    ("event('a').within(1 day).within(1 day).count() >= 1", "users", "audience", "within(1 day).count", "a stream takes at most one window"),
    ("property('x') = 1", "users", "audience", "property", "property() is only allowed inside a where() or a reducer"),
    ("context('x') = 1", "users", "audience", "context", "context() is only allowed inside a where() or a reducer"),
    ("trait('a') > property('x')", "users", "audience", "property", "property() is only allowed inside a where()"),
    ("trait('a').count() > 1", "users", "audience", "count", "trait('…') cannot take count(): count() follows event(…) or unique(…)"),
    ("trait('a').where(property('x') = 1)", "users", "audience", "where", "trait('…') cannot take where()"),
    ("event('a').sum(property('x')).count() > 1", "users", "audience", "count()", "a computed value cannot take count(): count() follows event(…) or unique(…)"),
    ("event('a') >= 1", "users", "audience", ">=", "event('a') must be reduced before it is compared"),
    ("event('a').equals(1)", "users", "audience", "equals", "event('a') must be reduced before it is compared"),
    ("trait('a') = event('b')", "users", "audience", "event", "event('b') must be reduced first"),
    ("trait('a').exists().absent()", "users", "audience", ".absent", "a comparison ends the chain; nothing may follow it"),
    ("trait('a') = 1 = 2", "users", "audience", "= 2", "a comparison ends the chain; '=' cannot follow it"),
    ("trait('a').exists() = 1", "users", "audience", "=", "a comparison ends the chain; '=' cannot follow it"),
    ("(trait('a') = 1).exists()", "users", "audience", ".exists", "a comparison ends the chain"),
    ("event('a').where(property('x')).count() >= 1", "users", "audience", "property", "where() needs a condition such as property('price') > 100; found an event property"),
    ("event('a').where().count() >= 1", "users", "audience", ").count", "expected an expression"),
    ("event('a').unique(property('x')).sum(property('y'))", "users", "trait", "sum", "unique(…) gives a list; only .count() may follow it (found 'sum')"),
    ("event('a').unique(property('x')) = 1", "users", "audience", "=", "unique(…) gives a list; only .count() may follow it"),
    ("trait('a') = event('b').unique(property('x'))", "users", "audience", "event", "unique(…) gives a list (add .count())"),
    ("event('a').count(property('x')) > 1", "users", "audience", "property", "count() takes no argument"),
    ("event('a').sum(trait('x'))", "users", "trait", "trait", "sum() takes property('…') or context('…'); found a trait value"),
    ("event('a').sum()", "users", "trait", 15, "sum() takes property('…') or context('…')"),
    ("event('a').sum(property('x') as string)", "users", "trait", "as", "'as' is only allowed in min(), max() and mode(), not in sum()"),
    ("event('a').max(property('x') as array)", "users", "trait", "array", "max(… as TYPE) takes one of number, string; found 'array'"),
    ("event('a').mode(property('x'))", "users", "trait", 29, "expected ',' before mode()'s minimum frequency"),
    ("event('a').mode(property('x'), 0)", "users", "trait", "0", "mode() needs a minimum frequency, a whole number of at least 1"),
    ("event('a').mode(property('x'), 1.5)", "users", "trait", "1.5", "mode() needs a minimum frequency"),
    ("trait('a').before_date('yesterday')", "users", "audience", "'yesterday'", "before_date() takes an ISO-8601 timestamp"),
    ("trait('a').after_date(20231207)", "users", "audience", "2023", "after_date() takes an ISO-8601 timestamp such as '2023-12-07T18:50:00Z'; found 20231207"),
    ("trait('a').after_date('2023-02-30T00:00:00Z')", "users", "audience", "'2023", "is not one"),
    ("trait('a').contains(trait('b'))", "users", "audience", "trait('b')", "contains() takes one or more literal values; found a trait value"),
    ("trait('a').contains('x', 5)", "users", "audience", "5", "contains() takes strings to look for; found 5"),
    ("trait('a').one_of()", "users", "audience", 18, "one_of() takes one or more literal values"),
    ("trait('a') > null", "users", "audience", "null", "'>' takes a number or a string; found null"),
    ("trait('a').at_most(true)", "users", "audience", "true", "at_most() takes a number or a string; found true"),
    ("trait('a').starts_with(5)", "users", "audience", "5", "starts_with() takes a string; found 5"),
    ("trait('a').exists(1)", "users", "audience", "1", "exists() takes no argument"),
    ("trait('a').within_last(0 days)", "users", "audience", "0", "duration of 0 days"),
    ("trait('a').within_last(7)", "users", "audience", 24, "expected a unit"),
    ("trait('a').equals((trait('b') = 1))", "users", "audience", "(trait('b')", "equals() takes a value; found a condition"),
    ("trait('a').equals(trait('b') = 1)", "users", "audience", "= 1", "expected ')' to close equals(, found '='"),
    ("5 = trait('a')", "users", "audience", "5", "a comparison starts with event(…), trait(…), property(…) or context(…); found a literal"),
    ("literal(5).equals(5)", "users", "audience", "literal", "a comparison starts with event(…)"),
    ("trait('a') = literal(trait('b'))", "users", "audience", "trait('b')", "literal() takes a string, a number, true, false or null"),
    ("trait('a) = 1", "users", "audience", "'a) = 1", "a string is not closed"),
    ("trait('a') = 1 # comment", "users", "audience", "#", "unexpected character '#'"),
    ("!trait('a').exists()", "users", "audience", "!", "unexpected character '!'; write NOT for negation"),
    ("trait('a') = 99999999999999999999", "users", "audience", "9999", "does not fit in 64 bits"),
    ("trait('a') = 1e999", "users", "audience", "1e999", "the number 1e999 is out of range"),
    ("trait('a') = 1 trait('b') = 2", "users", "audience", "trait('b')", "unexpected 'trait'; expected AND, OR or the end"),
    ("trait('a') = 1 AND trait('b')", "users", "audience", "trait('b')", "AND joins conditions; found a trait value"),
    ("trait('b') OR trait('a') = 1", "users", "audience", "trait('b')", "OR joins conditions; found a trait value"),
    ("trait('a') = 1 AND", "users", "audience", "", "expected an expression such as event('…') or trait('…'), found the end"),
    ("trait('a') = 1 AND OR trait('b') = 1", "users", "audience", "OR", "found 'OR'"),
    ("event('').count() > 1", "users", "audience", "''", "event() needs a non-empty name"),
    ("event(1).count() > 1", "users", "audience", "1", "event() takes the event's name as a string"),
    ("event('a'.count() > 1", "users", "audience", ".", "expected ')' to close event(, found '.'"),
    ("event('a').count() > 1)", "users", "audience", 22, "unexpected ')'"),
    ("(trait('a') = 1", "users", "audience", "", "expected ')' to close the parenthesis, found the end"),
    ("event('a').sources('s').count() > 1", "users", "audience", "'s'", "sources() takes exclude: and source ids"),
    ("event('a').sources(exclude: 1).count() > 1", "users", "audience", "1", "expected source ids as strings"),
    ("event('a').where({property('x') = 1).count() > 1", "users", "audience", ").count", "expected '}' to close where({"),
    ("event('a').count().", "users", "trait", "", "expected a function name after '.'"),
    ("event('a').count > 1", "users", "audience", "> 1", "expected '(' after 'count'"),
    ("", "users", "audience", "", "empty definition"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "kind", "purpose", "part", "message"), REFUSALS)
def test_refusals_name_the_part_and_what_is_accepted(
    text: str, kind: Kind, purpose: Purpose, part: str | int, message: str
) -> None:
    error = refused(text, kind, purpose)
    position = part if isinstance(part, int) else text.index(part) if part else len(text)
    assert error.position == position, error.reason
    assert message in error.reason
    assert isinstance(error, InputError)  # the REST API answers it with a 4xx
    assert f"at position {position}" in str(error)


def test_refusal_positions_on_other_lines() -> None:
    text = "event('Shoes Bought')\n  .where(property('price') >= 100)\n  .within(0 days)\n  .count() >= 1"
    assert refused(text).position == text.index("0 days")


def test_a_bad_kind_or_purpose_is_refused() -> None:
    with pytest.raises(DefinitionError, match="unknown kind 'groups'"):
        parse("trait('a') = 1", kind="groups", purpose="audience")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="unknown purpose 'journey'"):
        parse("trait('a') = 1", purpose="journey")  # type: ignore[arg-type]


# --- limits ---------------------------------------------------------------------------------------


def test_fifty_primary_expressions_and_not_fifty_one() -> None:
    def joined(n: int) -> str:
        parts = [
            f"event('e{i}').count() >= 1" if i % 2 else f"trait('t{i}') = {i}" for i in range(n)
        ]
        return " OR ".join(parts)

    fifty = audience(joined(MAX_PRIMARY))
    assert isinstance(fifty.root, Or) and len(fifty.root.items) == MAX_PRIMARY
    text = joined(MAX_PRIMARY + 1)
    error = refused(text)
    assert error.position == text.index(f"trait('t{MAX_PRIMARY}')")
    assert "at most 50 primary expressions (found 51)" in error.reason


def test_primary_expressions_count_inside_where() -> None:
    inner = " AND ".join(f"property('p') = trait('t{i}')" for i in range(MAX_PRIMARY - 1))
    assert audience(f"event('a').where({inner}).count() >= 1")
    text = f"event('a').where({inner} AND trait('last') = 1).count() >= 1"
    error = refused(text)
    assert error.position == text.index("trait('last')")
    assert "(found 51)" in error.reason


def test_literals_property_and_context_are_not_primary_expressions() -> None:
    where = " AND ".join(
        f"property('p{i}') = literal({i}) AND context('c{i}').exists()" for i in range(60)
    )
    text = f"event('a').where({where}).count() >= 1"
    assert audience(text)


def test_the_text_is_at_most_64_kb() -> None:
    padding = " " * (MAX_TEXT_BYTES - len("trait('a') = 1"))
    assert audience("trait('a') = 1" + padding)
    text = "trait('a') = 1" + padding + " "
    error = refused(text)
    assert error.position == MAX_TEXT_BYTES
    assert "longer than 65,536 bytes" in error.reason
    multibyte = "trait('é') = 1" + " " * (MAX_TEXT_BYTES - 14)  # é is two bytes
    assert refused(multibyte).position == MAX_TEXT_BYTES - 1


def _nested_where(levels: int) -> str:
    return "event('e').where(" * levels + "event('e').count() >= 1" + ").count() >= 1" * levels


DEEPEST: dict[str, str] = {
    # Each reaches exactly MAX_DEPTH levels (the innermost call's own parenthesis included).
    "parentheses": "(" * (MAX_DEPTH - 1) + "trait('a') = 1" + ")" * (MAX_DEPTH - 1),
    "not": "NOT " * (MAX_DEPTH - 1) + "trait('a') = 1",
    "values": "trait('a') = " + "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH,
    "comparator arguments": "trait('a').equals("
    + "(" * (MAX_DEPTH - 2)
    + "trait('b')"
    + ")" * (MAX_DEPTH - 1),
    "funnels": _nested_where(MAX_PRIMARY - 1),
    "braced funnels": "event('e').where({" * 24
    + "event('e').count() >= 1"
    + "}).count() >= 1" * 24,
}


@pytest.mark.parametrize("kind", sorted(DEEPEST))
def test_the_deepest_definitions_parse_print_and_compare_within_a_small_stack(kind: str) -> None:
    text = DEEPEST[kind]

    def every_step() -> bool:
        parsed = audience(text)
        again = audience(to_text(parsed))
        return without_spans(parsed) == without_spans(again) and shape(parsed) == shape(again)

    assert with_stack_budget(every_step)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(" * MAX_DEPTH + "trait('a') = 1" + ")" * MAX_DEPTH, MAX_DEPTH + len("trait")),
        ("(" * 60_000, MAX_DEPTH),
        ("NOT " * 16_000 + "trait('a') = 1", 4 * MAX_DEPTH),
        ("trait('a') = " + "(" * 30_000 + "1" + ")" * 30_000, len("trait('a') = ") + MAX_DEPTH),
        (
            "event('e').where({" * 40 + "event('e').count() >= 1" + "}).count() >= 1" * 40,
            len("event('e').where({") * 32 + len("event"),
        ),
    ],
)
def test_deeper_definitions_are_refused_naming_the_position(text: str, position: int) -> None:
    with pytest.raises(DefinitionError) as caught:
        with_stack_budget(lambda: parse(text, purpose="audience"))
    assert caught.value.position == position
    assert f"nests deeper than {MAX_DEPTH} levels" in caught.value.reason


# --- the printer ----------------------------------------------------------------------------------

CANONICAL: list[tuple[str, str]] = [
    (
        "event('Shoes Bought').where( property('price') >= 100 ).within(7 days).count() >= 1",
        "event('Shoes Bought').where(property('price') >= 100).within(7 days).count() >= 1",
    ),
    (
        "trait('a').equals(1) and NOT (trait('b') == \"x\")",
        "trait('a') = 1 AND NOT trait('b') = 'x'",
    ),
    ("trait('a').greater_than(literal(2.0))", "trait('a') > 2.0"),
    (
        "(trait('a') = 1 OR trait('b') = 2) AND trait('c').absent()",
        "(trait('a') = 1 OR trait('b') = 2) AND trait('c').absent()",
    ),
    ("NOT (trait('a') = 1 AND trait('b') = 2)", "NOT (trait('a') = 1 AND trait('b') = 2)"),
    (
        "event('a').between(24 hours, 49 hours).count() < 3",
        "event('a').between(1 day, 49 hours).count() < 3",
    ),
    (
        "event('a').sources({exclude: ['z', 'a']}).count() >= 1",
        "event('a').sources(exclude: 'a', 'z').count() >= 1",
    ),
    ("trait('a').one_of(['x', -1, null, true])", "trait('a').one_of('x', -1, null, true)"),
    ("trait(\"it's\") = 'back\\\\slash'", "trait('it\\'s') = 'back\\\\slash'"),
    ("trait('a').within_last(48 hours)", "trait('a').within_last(2 days)"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_to_text_writes_canonical_text(text: str, canonical: str) -> None:
    parsed = audience(text)
    assert to_text(parsed) == canonical
    assert_same_tree(audience(canonical), parsed)


@pytest.mark.parametrize(("text", "expected"), AUDIENCE_EXAMPLES + TRAIT_EXAMPLES)
def test_examples_round_trip(text: str, expected: Definition) -> None:
    written = to_text(expected)
    purpose: Purpose = "audience" if expected.is_audience else "trait"
    assert_same_tree(parse(written, kind=expected.kind, purpose=purpose), expected)


# --- generated trees round trip -------------------------------------------------------------------

NAMES = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
LITERALS = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
).map(Literal)
STRINGS = st.text(st.characters(codec="utf-8"), max_size=8).map(Literal)
ORDERED = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=4),
).map(Literal)
DATES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: Literal(d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))
)
HOURS = st.integers(1, MAX_WINDOW_HOURS)


@st.composite
def windows(draw: st.DrawFn, *, nested: bool) -> Window:
    parent = nested and draw(st.booleans())
    end = draw(HOURS)
    start = draw(st.integers(0, end - 1)) if draw(st.booleans()) else 0
    return Window(start, end, parent)


@st.composite
def streams(draw: st.DrawFn, frames: int, depth: int) -> Stream:
    where: list[Condition] = []
    if depth > 0:
        where = draw(st.lists(conditions(frames + 1, depth - 1, quantifiable=False), max_size=2))
    window = draw(st.none() | windows(nested=frames > 0))
    return Stream(draw(NAMES), tuple(where), draw(st.frozensets(NAMES, max_size=2)), window)


@st.composite
def reduces(draw: st.DrawFn, frames: int, depth: int, *, lists: bool) -> Reduce:
    stream = draw(streams(frames, depth))
    ops: list[ReduceOp] = [
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "mode",
        "first",
        "last",
        "unique_count",
    ]
    op = draw(st.sampled_from([*ops, "unique"] if lists else ops))
    if op == "count":
        return Reduce(stream, "count")
    value = draw(st.one_of(NAMES.map(PropertyRef), NAMES.map(ContextRef)))
    if op in ("min", "max"):
        minmax: list[ValueType | None] = [None, "number", "string"]
        return Reduce(stream, op, value, draw(st.sampled_from(minmax)))
    if op == "mode":
        types: list[ValueType | None] = [None, "array", "string", "number"]
        as_type = draw(st.sampled_from(types))
        return Reduce(stream, op, value, as_type, draw(st.integers(1, 1000)))
    return Reduce(stream, op, value)


def references(frames: int, depth: int) -> st.SearchStrategy[Value]:
    """A value other than a literal, as the place allows."""
    options: list[st.SearchStrategy[Value]] = [NAMES.map(TraitRef)]
    if frames >= 1:
        options += [NAMES.map(PropertyRef), NAMES.map(ContextRef)]
    if frames >= 2:
        options.append(NAMES.map(lambda p: PropertyRef(p, parent=True)))
    if depth > 0:
        options.append(reduces(frames, depth - 1, lists=False))
    return st.one_of(options)


@st.composite
def compares(draw: st.DrawFn, frames: int, depth: int) -> Compare:
    left = draw(references(frames, depth))
    op: CompareOp = draw(st.sampled_from(COMPARATORS))
    if op in ("absent", "exists"):
        return Compare(left, op)
    if op in ("within_last", "within_next", "before_last", "after_next"):
        return Compare(left, op, hours=draw(HOURS))
    if op in ("one_of", "contains"):
        items = STRINGS if op == "contains" else LITERALS
        return Compare(left, op, tuple(draw(st.lists(items, min_size=1, max_size=3))))
    if op in ("before_date", "after_date"):
        return Compare(left, op, (draw(DATES),))
    literal = {
        "greater_than": ORDERED,
        "at_least": ORDERED,
        "less_than": ORDERED,
        "at_most": ORDERED,
        "omits": STRINGS,
        "starts_with": STRINGS,
        "ends_with": STRINGS,
    }.get(op, LITERALS)
    return Compare(left, op, (draw(literal | references(frames, depth)),))


def conditions(frames: int, depth: int, *, quantifiable: bool) -> st.SearchStrategy[Condition]:
    base: st.SearchStrategy[Condition] = compares(frames, depth)
    if depth <= 0:
        return base
    inner = conditions(frames, depth - 1, quantifiable=quantifiable)
    options: list[st.SearchStrategy[Condition]] = [
        base,
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
        inner.map(Not),
    ]
    if quantifiable:
        plain = conditions(frames, depth - 1, quantifiable=False)
        options += [plain.map(AnyUser), plain.map(AllUsers)]
    return st.one_of(options)


def primaries(node: Any) -> int:
    if isinstance(node, tuple):
        return sum(primaries(item) for item in node)
    if isinstance(node, Stream | TraitRef):
        return 1 + (primaries(node.where) if isinstance(node, Stream) else 0)
    if isinstance(node, Reduce):
        return primaries(node.stream)
    if isinstance(node, Compare):
        return primaries(node.left) + primaries(node.args)
    if isinstance(node, And | Or):
        return primaries(node.items)
    if isinstance(node, Not | AnyUser | AllUsers):
        return primaries(node.item)
    return 0


@st.composite
def definitions(draw: st.DrawFn) -> tuple[Definition, Purpose]:
    kind: Kind = draw(st.sampled_from(["users", "accounts"]))
    if draw(st.booleans()):
        root: Condition | Value = draw(conditions(0, 3, quantifiable=kind == "accounts"))
        purpose: Purpose = "audience"
    else:
        root = draw(st.one_of(NAMES.map(TraitRef), reduces(0, 2, lists=True)))
        purpose = "trait"
    return Definition(kind, root), purpose


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(definitions())
def test_generated_trees_round_trip_through_text(case: tuple[Definition, Purpose]) -> None:
    definition, purpose = case
    assume(primaries(definition.root) <= MAX_PRIMARY)
    text = to_text(definition)
    parsed = parse(text, kind=definition.kind, purpose=purpose)
    assert_same_tree(parsed, definition)
    assert parsed.text == text
    assert to_text(parsed) == text  # the canonical text is a fixed point


PIECES = [
    *("event", "trait", "property", "context", "literal", "where", "sources", "within"),
    *("between", "count", "sum", "mode", "unique", "exists", "one_of", "before_date", "as"),
    *("string", "parent", "exclude", "days", "hour", "AND", "OR", "NOT", "ANY", "ALL", "true"),
    *("(", ")", "{", "}", "[", "]", ".", ",", ":", "=", ">=", "!=", " ", "'a'", '"b"', "'"),
    *("7", "-1", "1.5", "0", "\\", "'2023-12-07'"),
]


SEEDS = [text for text, _ in AUDIENCE_EXAMPLES + TRAIT_EXAMPLES + CANONICAL] + [
    "event('C').where(NOT event('O').where(property('c') = property(parent: 'i'))"
    ".between(parent: 1 hour, 1 day).count() >= 1).within(30 days).count() >= 1",
    "event('x').sources({exclude: ['a','b']}).unique(property('a')).count() > 3 OR "
    "trait('d').within_last(3 days)",
    "event('a').mode(property('x') as array, 2)",
]


@st.composite
def edited(draw: st.DrawFn) -> str:
    """A valid definition with a few pieces put in or cut out."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(PIECES)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
    return text


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join) | edited())
def test_any_text_parses_or_is_refused_with_a_position_inside_it(text: str) -> None:
    kinds: tuple[Kind, ...] = ("users", "accounts")
    purposes: tuple[Purpose, ...] = ("audience", "trait")
    for kind in kinds:
        for purpose in purposes:
            try:
                parsed = parse(text, kind=kind, purpose=purpose)
            except DefinitionError as error:
                assert 0 <= error.position <= len(text)
            else:
                assert_same_tree(parse(to_text(parsed), kind=kind, purpose=purpose), parsed)


def test_generated_windows_cover_the_whole_range() -> None:
    assert within(hours=MAX_WINDOW_HOURS).end_hours == 1095 * 24
    assert timedelta(hours=MAX_WINDOW_HOURS) == timedelta(days=3 * 365)
