"""The builder's JSON shape (§21A) lands on the same tree as the equivalent Segment Query
Language, and every refusal names its JSON path."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import pytest

from headwater.engage.builder import OPERATORS, from_builder
from headwater.engage.definition import NO_SPAN, Definition, Kind
from headwater.engage.language import MAX_DEPTH, Purpose, parse
from headwater.errors import DefinitionError
from tests.support.definitions import assert_same_tree
from tests.support.limits import with_stack_budget


def same(shape: dict[str, Any], text: str, *, kind: Kind = "users", purpose: Purpose) -> None:
    built = from_builder(shape, kind=kind, purpose=purpose)
    assert_same_tree(built, parse(text, kind=kind, purpose=purpose))
    assert_same_tree(parse(built.text, kind=kind, purpose=purpose), built)
    assert built.kind == kind
    assert _spans(built.root) == {NO_SPAN}


def _spans(node: Any) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    if isinstance(node, tuple):
        for item in node:
            found |= _spans(item)
    elif is_dataclass(node) and not isinstance(node, type):
        for spec in fields(node):
            value = getattr(node, spec.name)
            if spec.name == "span":
                found.add(value)
            else:
                found |= _spans(value)
    return found


def refused(shape: Any, *, kind: Kind = "users", purpose: Purpose = "audience") -> str:
    with pytest.raises(DefinitionError) as caught:
        from_builder(shape, kind=kind, purpose=purpose)
    assert caught.value.position == 0
    return caught.value.reason


ORDER_WINDOW = {"type": "within", "days": 30}

# --- computed traits -------------------------------------------------------------------------------

COMPUTED: list[tuple[dict[str, Any], str]] = [
    (
        {"type": "counter", "event": "Order Completed", "window": ORDER_WINDOW},
        "event('Order Completed').within(30 days).count()",
    ),
    (
        {
            "type": "sum",
            "event": "Order Completed",
            "property": "revenue",
            "where": [{"property": "category", "op": "equals", "value": "cosmetics"}],
            "window": {"type": "within", "days": 90},
        },
        "event('Order Completed').where(property('category') = 'cosmetics').within(90 days)"
        ".sum(property('revenue'))",
    ),
    (
        {
            "type": "avg",
            "event": "Order Completed",
            "property": "total",
            "window": {"type": "within", "days": 180},
        },
        "event('Order Completed').within(180 days).avg(property('total'))",
    ),
    (
        {
            "type": "aggregation",
            "aggregation": "average",
            "event": "Order Completed",
            "property": "total",
        },
        "event('Order Completed').avg(property('total'))",
    ),
    (
        {
            "type": "aggregation",
            "aggregation": "maximum",
            "event": "Ride Completed",
            "property": "distance",
        },
        "event('Ride Completed').max(property('distance'))",
    ),
    (
        {
            "type": "min",
            "event": "Ride Completed",
            "property": "distance",
            "window": {"type": "within", "hours": 12},
        },
        "event('Ride Completed').within(12 hours).min(property('distance'))",
    ),
    (
        {
            "type": "max",
            "event": "Ride Completed",
            "property": "distance",
            "window": {"type": "within", "days": 60},
        },
        "event('Ride Completed').within(60 days).max(property('distance'))",
    ),
    (
        {"type": "most_frequent", "event": "Product Viewed", "property": "category"},
        "event('Product Viewed').mode(property('category'), 2)",
    ),
    (
        {"type": "first", "event": "Page Viewed", "property": "url"},
        "event('Page Viewed').first(property('url'))",
    ),
    (
        {
            "type": "last",
            "event": "Page Viewed",
            "property": "utm_campaign",
            "window": {"type": "any_time"},
        },
        "event('Page Viewed').last(property('utm_campaign'))",
    ),
    (
        {"type": "unique_list", "event": "Product Viewed", "property": "category"},
        "event('Product Viewed').unique(property('category'))",
    ),
    (
        {"type": "unique_list_count", "event": "Product Viewed", "property": "category"},
        "event('Product Viewed').unique(property('category')).count()",
    ),
    (
        {"type": "unique_list_count", "event": "Page Viewed", "context": "ip"},
        "event('Page Viewed').unique(context('ip')).count()",
    ),
    (
        {
            "type": "counter",
            "event": "Page Viewed",
            "where": [{"context": "page.url", "op": "contains", "value": "pricing"}],
            "window": {"type": "in_between", "from": 30, "to": 90},
        },
        "event('Page Viewed').where(context('page.url').contains('pricing'))"
        ".between(30 days, 90 days).count()",
    ),
    (
        {
            "type": "counter",
            "event": "Signed In",
            "window": {"type": "in_between", "from": 0, "to": 36, "unit": "hours"},
        },
        "event('Signed In').within(36 hours).count()",
    ),
]


@pytest.mark.parametrize(("shape", "text"), COMPUTED)
def test_every_computed_trait_type_is_its_text(shape: dict[str, Any], text: str) -> None:
    same(shape, text, purpose="trait")
    same({"definition": shape}, text, purpose="trait")
    same(shape, text, kind="accounts", purpose="trait")


def test_a_computed_trait_beside_its_settings() -> None:
    shape = {
        "key": "orders_30d",
        "name": "Orders Completed Last 30 Days",
        "level": "user",
        "include_historical": True,
        "destinations": [],
        "type": "counter",
        "event": "Order Completed",
        "window": ORDER_WINDOW,
    }
    same(shape, "event('Order Completed').within(30 days).count()", purpose="trait")
    built = from_builder(shape, purpose="trait")
    assert built.text == "event('Order Completed').within(30 days).count()"


# --- audiences -------------------------------------------------------------------------------------


def test_the_briefs_counter_audience() -> None:
    same(
        {
            "event": "Order Completed",
            "count": {"op": "at_least", "value": 1},
            "window": ORDER_WINDOW,
        },
        "event('Order Completed').within(30 days).count() >= 1",
        purpose="audience",
    )


@pytest.mark.parametrize(
    ("count", "text"),
    [
        ({"op": "at_least", "value": 3}, ">= 3"),
        ({"op": "at least", "value": 3}, ">= 3"),
        ({"op": "exactly", "value": 0}, "= 0"),
        ({"op": "at_most", "value": 2}, "<= 2"),
        ({"op": "At Most", "value": 2}, "<= 2"),
        ({"value": 5}, ">= 5"),
        ({"op": "exactly"}, "= 1"),
        (None, ">= 1"),
    ],
)
def test_event_counts(count: dict[str, Any] | None, text: str) -> None:
    shape: dict[str, Any] = {"event": "Signed In"}
    if count is not None:
        shape["count"] = count
    same(shape, f"event('Signed In').count() {text}", purpose="audience")


# builder operator as written, value, the comparison in the language (on property('p'))
WHERE_OPERATORS: list[tuple[str, Any, str]] = [
    ("equals", "a", "= 'a'"),
    ("not equals", "a", "!= 'a'"),
    ("not_equals", 1, "!= 1"),
    ("differs", 1, "!= 1"),
    ("less than", 30.5, "< 30.5"),
    ("greater than", 30, "> 30"),
    ("Greater Than", 30, "> 30"),
    ("less than or equal", 3, "<= 3"),
    ("less than or equal to", 3, "<= 3"),
    ("less_than_or_equal_to", 3, "<= 3"),
    ("at most", 3, "<= 3"),
    ("greater than or equal", "m", ">= 'm'"),
    ("greater than or equal to", 3, ">= 3"),
    ("at_least", 3, ">= 3"),
    ("contains", "pricing", ".contains('pricing')"),
    ("contains one of", ["a", "b"], ".contains('a', 'b')"),
    ("contains any of", ["a"], ".contains('a')"),
    ("does not contain", "pricing", ".omits('pricing')"),
    ("omits", "x", ".omits('x')"),
    ("starts with", "https", ".starts_with('https')"),
    ("ends with", ".pdf", ".ends_with('.pdf')"),
    ("exists", None, ".exists()"),
    ("not exists", None, ".absent()"),
    ("absent", None, ".absent()"),
    ("equals one of", ["a", 2, True, None], ".one_of('a', 2, true, null)"),
    ("equals any of", ["a"], ".one_of('a')"),
    ("one_of", "a", ".one_of('a')"),
    ("before date", "2023-12-07T18:50:00Z", ".before_date('2023-12-07T18:50:00Z')"),
    ("after date", "2023-12-07", ".after_date('2023-12-07')"),
    ("within last", {"days": 7}, ".within_last(7 days)"),
    ("within next", {"hours": 36}, ".within_next(36 hours)"),
    ("before last", 7, ".before_last(7 days)"),
    ("after next", {"days": 1}, ".after_next(1 day)"),
]


@pytest.mark.parametrize(("op", "value", "comparison"), WHERE_OPERATORS)
def test_every_builder_operator_in_where_and_on_traits(
    op: str, value: Any, comparison: str
) -> None:
    joined = f" {comparison}" if comparison[0] != "." else comparison
    condition: dict[str, Any] = {"op": op} if value is None else {"op": op, "value": value}
    same(
        {"event": "Order Completed", "where": [{"property": "p", **condition}]},
        f"event('Order Completed').where(property('p'){joined}).count() >= 1",
        purpose="audience",
    )
    same({"trait": "p", **condition}, f"trait('p'){joined}", purpose="audience")


def test_every_operator_is_covered() -> None:
    written = {op.lower().replace(" ", "_") for op, _, _ in WHERE_OPERATORS}
    assert written == set(OPERATORS)


def test_dynamic_values_a_trait_and_the_parent_events_property() -> None:
    same(
        {
            "event": "Shoes Bought",
            "where": [
                {
                    "property": "price",
                    "op": "greater than or equal",
                    "value": {"trait": "avg_spend"},
                }
            ],
        },
        "event('Shoes Bought').where(property('price') >= trait('avg_spend')).count() >= 1",
        purpose="audience",
    )
    same(
        {
            "event": "Item Viewed",
            "window": {"type": "within", "days": 7},
            "then": {
                "event": "Item Purchased",
                "where": [{"property": "sku", "op": "equals", "value": {"parent_property": "sku"}}],
                "within_of_parent": {"hours": 2},
            },
        },
        "event('Item Viewed').where("
        "event('Item Purchased').where(property('sku') = property(parent: 'sku'))"
        ".within(parent: 2 hours).count() >= 1"
        ").within(7 days).count() >= 1",
        purpose="audience",
    )


def test_funnels_negated_and_chained() -> None:
    same(
        {
            "event": "Cart Viewed",
            "count": {"op": "at_least", "value": 1},
            "window": {"type": "within", "days": 30},
            "then": {
                "negate": True,
                "event": "Order Completed",
                "count": {"op": "exactly", "value": 1},
                "within_of_parent": {"days": 1},
            },
        },
        "event('Cart Viewed').where("
        "NOT event('Order Completed').within(parent: 1 day).count() = 1"
        ").within(30 days).count() >= 1",
        purpose="audience",
    )
    same(
        {
            "event": "A",
            "then": {
                "event": "B",
                "within_of_parent": 1,
                "then": {"event": "C", "negate": False, "within_of_parent": {"hours": 5}},
            },
        },
        "event('A').where(event('B').where(event('C').within(parent: 5 hours).count() >= 1)"
        ".within(parent: 1 day).count() >= 1).count() >= 1",
        purpose="audience",
    )


def test_audience_membership_and_groups() -> None:
    same({"part_of_audience": "vip"}, "trait('vip') = true", purpose="audience")
    same(
        {"not": {"part_of_audience": "likely_to_churn"}},
        "NOT trait('likely_to_churn') = true",
        purpose="audience",
    )
    same(
        {
            "any_of": [
                {"trait": "plan", "op": "equals", "value": "pro"},
                {"trait": "plan", "op": "equals", "value": "team"},
            ]
        },
        "trait('plan') = 'pro' OR trait('plan') = 'team'",
        purpose="audience",
    )
    same(
        {"all_of": [{"any_of": [{"part_of_audience": "a"}]}]},
        "trait('a') = true",
        purpose="audience",
    )
    same(
        {
            "all_of": [
                {"part_of_audience": "a"},
                {"all_of": [{"part_of_audience": "b"}, {"part_of_audience": "c"}]},
            ]
        },
        "trait('a') = true AND (trait('b') = true AND trait('c') = true)",
        purpose="audience",
    )


def test_the_specs_example() -> None:
    shape = {
        "key": "order_completed_last_30days",
        "name": "Order Completed Last 30days",
        "level": "user",
        "include_anonymous": False,
        "include_historical": True,
        "mode": "realtime",
        "definition": {
            "all_of": [
                {
                    "any_of": [
                        {
                            "event": "Order Completed",
                            "count": {"op": "at_least", "value": 1},
                            "where": [{"property": "price", "op": "greater_than", "value": 30}],
                            "window": {"type": "within", "days": 30},
                            "then": {
                                "negate": True,
                                "event": "Order Completed",
                                "count": {"op": "exactly", "value": 1},
                                "within_of_parent": {"days": 1},
                            },
                        }
                    ]
                },
                {"not": {"part_of_audience": "likely_to_churn"}},
                {"trait": "plan", "op": "equals", "value": "premium"},
            ]
        },
        "destinations": [{"id": "...", "send_identify": True}],
    }
    text = (
        "event('Order Completed').where(property('price') > 30)"
        ".where(NOT event('Order Completed').within(parent: 1 day).count() = 1)"
        ".within(30 days).count() >= 1"
        " AND NOT trait('likely_to_churn') = true AND trait('plan') = 'premium'"
    )
    same(shape, text, purpose="audience")
    assert from_builder(shape, purpose="audience").text == text


def test_page_and_screen_views_are_event_names() -> None:
    same(
        {
            "event": "Page Viewed",
            "where": [{"property": "name", "op": "equals", "value": "Pricing"}],
        },
        "event('Page Viewed').where(property('name') = 'Pricing').count() >= 1",
        purpose="audience",
    )
    same({"event": "Screen Viewed"}, "event('Screen Viewed').count() >= 1", purpose="audience")


def test_user_quantifiers_on_account_audiences() -> None:
    bought = {"event": "Shoes Bought", "count": {"op": "at_least", "value": 1}}
    for quantifier, text in [
        ("any", "ANY event('Shoes Bought').count() >= 1"),
        ("all", "ALL event('Shoes Bought').count() >= 1"),
        ("none", "ALL NOT event('Shoes Bought').count() >= 1"),
    ]:
        same({**bought, "user_quantifier": quantifier}, text, kind="accounts", purpose="audience")
    same(
        {
            "all_of": [
                {"trait": "industry", "op": "equals", "value": "software"},
                {
                    "user_quantifier": "all",
                    "any_of": [
                        {"trait": "role", "op": "equals", "value": "Admin"},
                        {"part_of_audience": "x"},
                    ],
                },
            ]
        },
        "trait('industry') = 'software' AND ALL (trait('role') = 'Admin' OR trait('x') = true)",
        kind="accounts",
        purpose="audience",
    )


# --- refusals ---------------------------------------------------------------------------------------

EVENT = {"event": "Order Completed"}
REFUSALS: list[tuple[Any, Kind, Purpose, str]] = [
    ({"definition": {"all_of": [{"part_of_audience": "a"}, {"event": "x", "where": [{"property": "p", "op": "bigger", "value": 1}]}]}}, "users", "audience", "definition.all_of[1].where[0].op: unknown operator 'bigger'; expected one of equals, not equals"),
    ({"trait": "p", "op": 5, "value": 1}, "users", "audience", "definition.op: unknown operator 5"),
    ({"trait": "p"}, "users", "audience", "definition.op: unknown operator null"),
    ({"any_of": [{"evnt": "x"}]}, "users", "audience", "definition.any_of[0]: expected exactly one of all_of, any_of, not, event, trait, part_of_audience; found none"),
    ({"event": "x", "trait": "y"}, "users", "audience", "definition: expected exactly one of all_of, any_of, not, event, trait, part_of_audience; found event, trait"),
    ({**EVENT, "wehre": []}, "users", "audience", "definition.wehre: unknown key 'wehre'; expected one of count, event, then, user_quantifier, where, window"),
    ({"all_of": []}, "users", "audience", "definition.all_of: needs at least one condition"),
    ({"any_of": {"event": "x"}}, "users", "audience", "definition.any_of: expected a list"),
    ([1, 2], "users", "audience", "definition: expected an object, found [1, 2]"),
    ({"not": "x"}, "users", "audience", "definition.not: expected an object, found 'x'"),
    ({"event": ""}, "users", "audience", "definition.event: expected a non-empty string, found ''"),
    ({"part_of_audience": 3}, "users", "audience", "definition.part_of_audience: expected a non-empty string, found 3"),
    ({**EVENT, "count": {"op": "more than", "value": 1}}, "users", "audience", "definition.count.op: unknown count operator 'more than'; expected at least, exactly or at most"),
    ({**EVENT, "count": {"op": "at_least", "value": -1}}, "users", "audience", "definition.count.value: expected a whole number of times ≥ 0, found -1"),
    ({**EVENT, "count": {"op": "at_least", "value": True}}, "users", "audience", "definition.count.value: expected a whole number of times ≥ 0, found true"),
    ({**EVENT, "count": {"op": "at_least", "value": 1, "unit": "x"}}, "users", "audience", "definition.count.unit: unknown key 'unit'"),
    ({**EVENT, "window": {"type": "within", "days": 0}}, "users", "audience", "definition.window.days: window of 0 days"),
    ({**EVENT, "window": {"type": "within", "days": 1096}}, "users", "audience", "definition.window.days: window longer than 3 years (26,280 hours)"),
    ({**EVENT, "window": {"type": "within", "hours": 1.5}}, "users", "audience", "definition.window.hours: expected a whole number of hours, found 1.5"),
    ({**EVENT, "window": {"type": "within", "days": 1, "hours": 1}}, "users", "audience", "definition.window: expected exactly one of days, hours"),
    ({**EVENT, "window": {"type": "within", "weeks": 1}}, "users", "audience", "definition.window.weeks: unknown key 'weeks'"),
    ({**EVENT, "window": {"type": "rolling", "days": 1}}, "users", "audience", "definition.window.type: unknown window type 'rolling'; expected within, in_between or any_time"),
    ({**EVENT, "window": {"type": "in_between", "from": 90, "to": 30}}, "users", "audience", "definition.window: from (90) must be less than to (30)"),
    ({**EVENT, "window": {"type": "in_between", "from": 1, "to": 2, "unit": "weeks"}}, "users", "audience", "definition.window.unit: expected days or hours, found 'weeks'"),
    ({**EVENT, "then": {"event": "B"}}, "users", "audience", "definition.then.within_of_parent: a funnel step needs within_of_parent"),
    ({**EVENT, "then": {"event": "B", "within_of_parent": {"days": 0}}}, "users", "audience", "definition.then.within_of_parent.days: window of 0 days"),
    ({**EVENT, "then": {"event": "B", "within_of_parent": 1, "window": {"type": "within", "days": 1}}}, "users", "audience", "definition.then.window: unknown key 'window'"),
    ({**EVENT, "then": {"within_of_parent": 1}}, "users", "audience", "definition.then: a funnel step needs an event"),
    ({**EVENT, "then": {"event": "B", "within_of_parent": 1, "negate": "yes"}}, "users", "audience", "definition.then.negate: expected true or false, found 'yes'"),
    ({**EVENT, "where": [{"property": "p", "op": "equals", "value": {"parent_property": "q"}}]}, "users", "audience", "definition.where[0].value.parent_property: a parent event's property is only allowed in a funnel step (then)"),
    ({**EVENT, "where": [{"property": "p", "op": "equals", "value": {"trait": "a", "parent_property": "q"}}]}, "users", "audience", "definition.where[0].value: expected exactly one of trait, parent_property"),
    ({**EVENT, "where": [{"property": "p", "op": "equals", "value": [1]}]}, "users", "audience", "definition.where[0].value: expected a string, a number, true, false or null, found [1]"),
    ({**EVENT, "where": [{"property": "p", "context": "q", "op": "exists"}]}, "users", "audience", "definition.where[0]: expected exactly one of property, context"),
    ({**EVENT, "where": [{"property": "p", "op": "exists", "value": 1}]}, "users", "audience", "definition.where[0].value: exists takes no value"),
    ({**EVENT, "where": [{"property": "p", "op": "greater than", "value": None}]}, "users", "audience", "definition.where[0].value: expected a number or a string, found null"),
    ({**EVENT, "where": [{"property": "p", "op": "starts with", "value": 5}]}, "users", "audience", "definition.where[0].value: expected a string, found 5"),
    ({**EVENT, "where": [{"property": "p", "op": "contains one of", "value": ["a", 5]}]}, "users", "audience", "definition.where[0].value[1]: expected a string, found 5"),
    ({**EVENT, "where": [{"property": "p", "op": "equals one of", "value": []}]}, "users", "audience", "definition.where[0].value: equals one of needs at least one value"),
    ({**EVENT, "where": [{"property": "p", "op": "equals", "value": float("nan")}]}, "users", "audience", "definition.where[0].value: expected a finite number, found nan"),
    ({**EVENT, "where": [{"property": "p", "op": "equals", "value": 2**64}]}, "users", "audience", "definition.where[0].value: the number 18446744073709551616 does not fit in 64 bits"),
    ({"trait": "d", "op": "before date", "value": "yesterday"}, "users", "audience", "definition.value: expected an ISO-8601 timestamp such as '2023-12-07T18:50:00Z', found 'yesterday'"),
    ({"trait": "d", "op": "within last", "value": {"days": 0}}, "users", "audience", "definition.value.days: duration of 0 days"),
    ({"trait": "d", "op": "within last", "value": {"weeks": 1}}, "users", "audience", "definition.value.weeks: unknown key 'weeks'"),
    ({"trait": "d", "op": "within last", "value": "7 days"}, "users", "audience", "definition.value: expected an object, found '7 days'"),
    ({"part_of_audience": "a", "user_quantifier": "any"}, "users", "audience", "definition.user_quantifier: a user quantifier needs kind ACCOUNTS"),
    ({"part_of_audience": "a", "user_quantifier": "some"}, "accounts", "audience", "definition.user_quantifier: unknown quantifier 'some'; expected one of any, all, none"),
    ({"user_quantifier": "any", "not": {"part_of_audience": "a", "user_quantifier": "all"}}, "accounts", "audience", "definition.not.user_quantifier: a user quantifier cannot be nested inside another user quantifier"),
    ({"any_of": [{"trait": f"t{i}", "op": "exists"} for i in range(51)]}, "users", "audience", "definition: at most 50 primary expressions (found 51)"),
    ({"type": "median", "event": "x", "property": "p"}, "users", "trait", "definition.type: unknown computed trait type 'median'; expected one of counter, sum, avg, min, max, most_frequent, first, last, unique_list, unique_list_count, aggregation"),
    ({"event": "x", "count": {"op": "at_least", "value": 1}}, "users", "trait", "definition.count: unknown key 'count'"),
    ({"definition": {"type": "counter", "event": "x", "name": "n"}}, "users", "trait", "definition.name: unknown key 'name'"),
    ({"type": "counter", "event": "x", "property": "p"}, "users", "trait", "definition: a counter counts events; it takes no property"),
    ({"type": "sum", "event": "x"}, "users", "trait", "definition.property: missing; a sum trait needs a property"),
    ({"type": "sum", "property": "p"}, "users", "trait", "definition.event: missing; a computed trait needs the event it computes over"),
    ({"type": "sum", "event": "x", "property": "p", "context": "q"}, "users", "trait", "definition: expected one of property, context, not both"),
    ({"type": "aggregation", "aggregation": "median", "event": "x", "property": "p"}, "users", "trait", "definition.aggregation: unknown aggregation 'median'; expected one of sum, avg, average, min, minimum, max, maximum"),
    ({"type": "sum", "aggregation": "avg", "event": "x", "property": "p"}, "users", "trait", "definition.aggregation: only allowed with type aggregation"),
    ({"type": "counter", "event": "x", "window": {"type": "within", "days": 1096}}, "users", "trait", "definition.window.days: window longer than 3 years (26,280 hours)"),
]  # fmt: skip


@pytest.mark.parametrize(("shape", "kind", "purpose", "message"), REFUSALS)
def test_refusals_name_the_json_path(
    shape: Any, kind: Kind, purpose: Purpose, message: str
) -> None:
    assert message in refused(shape, kind=kind, purpose=purpose)


def test_a_bad_kind_or_purpose_is_refused() -> None:
    assert "unknown kind 'groups'" in refused({"part_of_audience": "a"}, kind="groups")  # type: ignore[arg-type]
    assert "unknown purpose 'journey'" in refused({"part_of_audience": "a"}, purpose="journey")  # type: ignore[arg-type]


def test_nesting_is_limited_and_never_exhausts_the_stack() -> None:
    def nested(levels: int) -> dict[str, Any]:
        shape: dict[str, Any] = {"part_of_audience": "a"}
        for _ in range(levels):
            shape = {"not": shape}
        return shape

    assert from_builder(nested(MAX_DEPTH - 1), purpose="audience")
    for levels in (MAX_DEPTH + 1, 10_000):
        shape = nested(levels)
        with pytest.raises(DefinitionError) as caught:
            with_stack_budget(lambda shape=shape: from_builder(shape, purpose="audience"))  # type: ignore[misc]
        assert f"conditions nest deeper than {MAX_DEPTH} levels" in caught.value.reason
        assert caught.value.reason.startswith("definition" + ".not" * (MAX_DEPTH + 1) + ":")


def test_an_error_quotes_the_shape_it_refused() -> None:
    with pytest.raises(DefinitionError) as caught:
        from_builder({"trait": "p", "op": "bigger", "value": 1}, purpose="audience")
    assert caught.value.text == '{"trait": "p", "op": "bigger", "value": 1}'
    assert str(caught.value).startswith("definition.op: unknown operator 'bigger'")


def test_built_definitions_are_plain_definitions() -> None:
    built = from_builder({"part_of_audience": "a"}, purpose="audience")
    assert isinstance(built, Definition) and built.is_audience
    assert built.text == "trait('a') = true"
