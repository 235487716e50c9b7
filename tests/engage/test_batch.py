"""Engage's batch engine: definitions compiled to SQL over the Profiles Sync tables that real
identity resolution and a real warehouse sync wrote, on DuckDB and on PostgreSQL — every
construct, the checks A-UE-32 … A-UE-36, A-UE-40, A-UE-42 and A-UE-44, hostile text, and the differential test
against the real-time engine."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headwater.engage import batch
from headwater.engage.language import parse
from headwater.engage.realtime import Computation
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.warehouse import rows
from headwater.warehouse.connect import loader_for
from headwater.warehouse.naming import naming_for
from tests.engage.batch_world import SCHEMA, World, close
from tests.support.postgres import pg_settings


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A space on a SQLite state database, loading into a DuckDB or PostgreSQL warehouse."""
    engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    settings = (
        {} if request.param == "duckdb" else pg_settings(request.getfixturevalue("pg_database"))
    )
    yield World.make(tmp_path, engine, request.param, settings)
    engine.dispose()


U1 = {"userId": "u1"}
U2 = {"userId": "u2"}
U3 = {"userId": "u3"}


# --- windows and counts -------------------------------------------------------------------------


def test_windows_are_precise_to_the_hour_a36(world: World) -> None:
    """A36: 90 days = 2,160 hours; an event 2,159 h old counts, one in hour now - 2,160 not."""
    a = world.profile(world.track(U1, "Logged In", 2159))
    b = world.profile(world.track(U2, "Logged In", 2160.6))
    world.sync()
    text = "event('Logged In').within(90 days).count() >= 1"
    assert world.members(text) == {a}
    assert world.members("event('Logged In').count() >= 1") == {a, b}
    # a condition counts 0 for a profile without events: "exactly 0 times"
    assert world.members("event('Logged In').within(90 days).count() = 0") == {b}


def test_between_windows(world: World) -> None:
    """between(S, E): from E hours ago until S hours ago."""
    a = world.profile(world.track(U1, "Viewed", 24 * 3))  # 3 days ago: inside 2–5 days
    b = world.profile(world.track(U2, "Viewed", 24 * 1))  # too recent
    c = world.profile(world.track(U3, "Viewed", 24 * 6))  # too old
    world.sync()
    assert world.members("event('Viewed').between(2 days, 5 days).count() >= 1") == {a}
    assert {a, b, c} == world.members("event('Viewed').count() >= 1")


def test_events_count_for_the_profile_they_belong_to_now(world: World) -> None:
    """An anonymous visitor's events before they identified count for the merged profile."""
    anonymous = world.profile(world.track({"anonymousId": "anon-1"}, "Viewed", 5))
    world.track({"anonymousId": "anon-1"}, "Viewed", 4)
    world.identify({"anonymousId": "anon-2", "userId": "u9"}, 3)
    merged = world.identify({"anonymousId": "anon-1", "userId": "u9"}, 2)
    world.track({"userId": "u9"}, "Viewed", 1)
    world.sync()
    profile = world.profile(merged)
    assert world.canonical(anonymous) == profile
    assert world.batch("event('Viewed').count()", purpose="trait") == {profile: 3}


# --- reducers ------------------------------------------------------------------------------------


def test_aggregations_a32_a33_a34(world: World) -> None:
    cosmetics = "event('Order Completed').where(property('category') = 'cosmetics')"
    a = world.profile(world.track(U1, "Order Completed", 1, category="cosmetics", revenue=10))
    world.track(U1, "Order Completed", 2, category="shoes", revenue=20)
    world.track(U1, "Order Completed", 3, category="cosmetics", revenue="5")  # a numeric string
    world.track(U1, "Order Completed", 91 * 24, category="cosmetics", revenue=100)
    for i, category in enumerate(["b", "a", "b", "a"]):
        world.track(U1, "Viewed", 10 + i, category=category)
    b = world.profile(world.track(U2, "Viewed", 1, category="x"))
    for i, category in enumerate(["shoes", "bags", "shoes"]):
        world.track(U2, "Bought", 30 - i, category=category)
    world.sync()

    def trait(text: str) -> dict[str, object]:
        return world.batch(text, purpose="trait")

    assert trait(f"{cosmetics}.within(90 days).sum(property('revenue'))") == {a: 15}  # A32
    assert trait(f"{cosmetics}.within(90 days).avg(property('revenue'))") == {a: 7.5}
    assert trait("event('Order Completed').min(property('revenue'))") == {a: 5}
    assert trait("event('Order Completed').max(property('revenue'))") == {a: 100}
    assert trait("event('Order Completed').max(property('category') as string)") == {a: "shoes"}
    assert trait("event('Viewed').mode(property('category'), 2)") == {a: "a"}  # A33
    assert trait("event('Viewed').mode(property('category'), 1)") == {a: "a", b: "x"}
    assert trait("event('Bought').unique(property('category'))") == {b: ["bags", "shoes"]}  # A34
    assert trait("event('Bought').unique(property('category')).count()") == {b: 2}
    assert trait("event('Bought').first(property('category'))") == {b: "shoes"}
    assert trait("event('Order Completed').last(property('category'))") == {a: "cosmetics"}


def test_a_windowed_count_trait_is_zero_once_it_had_a_value(world: World) -> None:
    """Like the real-time trait that had a value: 0 when its events left the window; a
    profile that never had a matching event has none."""
    a = world.profile(world.track(U1, "Logged In", 24 * 10))
    b = world.profile(world.track(U2, "Logged In", 1))
    world.profile(world.track(U3, "Other", 1))
    world.sync()
    assert world.batch("event('Logged In').within(7 days).count()", purpose="trait") == {
        a: 0,
        b: 1,
    }


# --- conditions ------------------------------------------------------------------------------------


def test_comparators_follow_compare_py(world: World) -> None:
    """Numbers compare as numbers (numeric strings too, never bools), the rest as text."""
    a = world.profile(world.track(U1, "E", 1, price="30.50", tag="Pricing Page", ok=True))
    b = world.profile(world.track(U2, "E", 1, price=7, tag="home", ok=False))
    c = world.profile(world.track(U3, "E", 1, price="abc", tag="x"))
    world.sync()

    def who(condition: str) -> set[str]:
        return world.members(f"event('E').where({condition}).count() >= 1")

    assert who("property('price') > 30") == {a}
    assert who("property('price') = 7") == {b}
    assert who("property('price') = '7.0'") == {b}
    assert who("property('price') < 10") == {b}  # 'abc' is no number: never less
    assert who("property('price') != 7") == {a, c}
    assert who("property('price').contains('.5')") == {a}
    assert who("property('tag').contains('ric')") == {a}
    assert who("property('tag').starts_with('ho')") == {b}
    assert who("property('tag').ends_with('Page')") == {a}
    assert who("property('tag').one_of('x', 'home')") == {b, c}
    assert who("property('ok') = true") == {a}
    assert who("property('ok') = 'false'") == {b}
    assert who("property('ok').absent()") == {c}
    assert who("property('ok').exists()") == {a, b}
    assert who("property('tag').omits('o')") == {a, c}
    assert who("property('missing').absent()") == {a, b, c}


def test_array_properties_hold_when_an_element_does(world: World) -> None:
    """Segment's ``$`` operator: a condition on an array property holds when one of its
    elements does; the warehouse holds the array as JSON text."""
    a = world.profile(world.track(U1, "E", 1, tags=["red", "big"], sizes=[3, 10.5]))
    b = world.profile(world.track(U2, "E", 1, tags=["blue"], sizes=[]))
    c = world.profile(world.track(U3, "E", 1, tags="[red", sizes=["x", None]))
    world.sync()

    def who(condition: str) -> set[str]:
        return world.members(f"event('E').where({condition}).count() >= 1")

    assert who("property('tags') = 'red'") == {a}
    assert who("property('tags') != 'red'") == {a, b, c}  # 'big' differs; '[red' is text
    assert who("property('tags').contains('ed')") == {a, c}
    assert who("property('tags').omits('l')") == {a, c}
    assert who("property('sizes') > 10") == {a}
    assert who("property('sizes').exists()") == {a, b, c}
    assert who("property('sizes') = 'x'") == {c}
    # most frequent and unique values count each element
    world.track(U1, "E", 2, tags=["red"])
    world.sync()
    assert world.batch("event('E').mode(property('tags'), 2)", purpose="trait") == {a: "red"}
    assert world.batch("event('E').unique(property('tags'))", purpose="trait") == {
        a: ["big", "red"],
        b: ["blue"],
        c: ["[red"],
    }
    assert world.batch("event('E').unique(property('sizes')).count()", purpose="trait") == {
        a: 2,
        c: 1,
    }
    assert world.batch("event('E').mode(property('tags') as array, 1)", purpose="trait") == {
        a: '["red","big"]',
        b: '["blue"]',
        c: "[red",
    }


def test_trait_conditions_and_dates(world: World) -> None:
    """Custom-trait conditions and time comparisons in batch (A-UE-46's `within last`)."""
    a = world.profile(world.identify(U1, plan="pro", seats="12", last_login="2026-02-27T10:00:00Z"))
    b = world.profile(world.identify(U2, plan="free", seats=3, last_login="2025-01-01T00:00:00Z"))
    c = world.profile(world.identify(U3, plan="pro", last_login="2026-02-30T00:00:00Z"))
    world.sync()
    assert world.members("trait('plan') = 'pro'") == {a, c}
    assert world.members("trait('seats') >= 5") == {a}
    assert world.members("trait('last_login').within_last(7 days)") == {a}
    assert world.members("trait('last_login').before_last(30 days)") == {b}  # c: no date
    assert world.members("trait('last_login').after_date('2025-06-01')") == {a}
    assert world.members("trait('seats').absent()") == {c}
    world.identify(U1, interests=["golf", "chess"])
    world.sync()
    assert world.members("trait('interests') = 'chess'") == {a}


def test_eligibility_without_anonymous_users_a40(world: World) -> None:
    anonymous = world.profile(world.track({"anonymousId": "only-anon"}, "Viewed", 1))
    known = world.profile(world.track(U1, "Viewed", 1))
    world.sync()
    text = "event('Viewed').count() >= 1"
    assert world.members(text) == {known}
    assert world.members(text, include_anonymous=True) == {known, anonymous}


# --- batch-only constructs -------------------------------------------------------------------------


FUNNEL = (
    "event('Product Added').where(event('Order Completed').within(parent: 1 days).count() = 0)"
    ".within(30 days).count() >= 1"
)


def test_funnel_considers_every_parent_event_a42(world: World) -> None:
    """A-UE-42: Product Added (t0), Order Completed (t0+1h), Product Added (t0+2d), no later
    order: a member, since the second Product Added was not followed by an order."""
    t0 = 24 * 5
    a = world.profile(world.track(U1, "Product Added", t0))
    world.track(U1, "Order Completed", t0 - 1)
    world.track(U1, "Product Added", t0 - 48)
    b = world.profile(world.track(U2, "Product Added", t0))
    world.track(U2, "Order Completed", t0 - 1)
    c = world.profile(world.track(U3, "Order Completed", t0 + 1))  # the order came first
    world.track(U3, "Product Added", t0)
    world.sync()
    assert world.members(FUNNEL) == {a, c}
    did = FUNNEL.replace("count() = 0", "count() >= 1")
    assert world.members(did) == {a, b}


def test_funnel_parent_property_reference(world: World) -> None:
    """``property(parent: 'sku')``: the step must be about the parent event's item."""
    text = (
        "event('Item Viewed').where(event('Item Purchased').where(property('sku') = "
        "property(parent: 'sku')).within(parent: 2 days).count() >= 1).count() >= 1"
    )
    a = world.profile(world.track(U1, "Item Viewed", 10, sku="A1"))
    world.track(U1, "Item Purchased", 9, sku="A1")
    b = world.profile(world.track(U2, "Item Viewed", 10, sku="B1"))
    world.track(U2, "Item Purchased", 9, sku="other")
    world.sync()
    assert world.members(text) == {a}
    assert b not in world.members(text)


def test_three_step_funnel_with_a_trait_in_a_step(world: World) -> None:
    """Steps nest (A, then B within a day of A, then C within a day of that B) and a step's
    own conditions may read the profile's traits; a funnel on accounts counts every user's."""
    text = (
        "event('A').where(event('B').where(property('color') = trait('favorite'))"
        ".where(event('C').within(parent: 1 days).count() >= 1)"
        ".within(parent: 1 days).count() >= 1).count() >= 1"
    )
    a = world.profile(world.identify(U1, 100, favorite="red"))
    world.track(U1, "A", 50)
    world.track(U1, "B", 40, color="red")
    world.track(U1, "C", 30)
    b = world.profile(world.identify(U2, 100, favorite="red"))
    world.track(U2, "A", 50)
    world.track(U2, "B", 40, color="red")
    world.track(U2, "C", 10)  # 30 hours after B: too late
    c = world.profile(world.identify(U3, 100, favorite="blue"))
    world.track(U3, "A", 50)
    world.track(U3, "B", 40, color="red")  # not the favourite
    world.track(U3, "C", 30)
    world.group(U1, "acme", 1)
    world.group(U2, "acme", 1)
    world.group(U3, "other", 1)
    world.sync()
    assert world.members(text) == {a}
    assert {b, c}.isdisjoint(world.members(text))
    assert world.members(f"ANY {text}", kind="accounts") == {"acme"}
    assert world.members(f"ALL {text}", kind="accounts") == set()


def test_dynamic_trait_reference(world: World) -> None:
    """``trait('x')`` inside where(): the profile's own trait value."""
    a = world.profile(world.identify(U1, favorite="red"))
    world.track(U1, "Bought", 2, color="red")
    b = world.profile(world.identify(U2, favorite="blue"))
    world.track(U2, "Bought", 2, color="red")
    world.sync()
    text = "event('Bought').where(property('color') = trait('favorite')).count() >= 1"
    assert world.members(text) == {a}
    assert b not in world.members(text)


def test_audiences_read_other_computations(world: World) -> None:
    a = world.profile(world.track(U1, "Order Completed", 1, revenue=600))
    b = world.profile(world.track(U2, "Order Completed", 1, revenue=50))
    world.sync()
    spend = parse("event('Order Completed').sum(property('revenue'))", purpose="trait")
    big = parse("trait('spend') > 500", purpose="audience")
    references = {
        "spend": batch.Reference("trait", spend),
        "big": batch.Reference("audience", big),
    }
    assert world.members("trait('spend') > 500", references=references) == {a}
    assert world.members("trait('big') = false", references=references) == {b}
    assert world.batch("trait('spend')", purpose="trait", references=references) == {
        a: 600,
        b: 50,
    }


def test_account_audiences_any_all_none_a44(world: World) -> None:
    """A-UE-44: account with U1 (logged in) and U2 (not): ANY → member; ALL and ALL NOT → not."""
    world.track(U1, "Logged In", 24 * 2)
    world.track(U2, "Other", 1)
    world.group(U1, "acme", industry="Software")
    world.group(U2, "acme")
    world.track(U3, "Logged In", 1)
    world.group(U3, "solo", industry="Retail")
    world.sync()
    logged = "event('Logged In').within(30 days).count() >= 1"

    def accounts(text: str) -> set[str]:
        return world.members(text, kind="accounts")

    assert accounts(f"ANY {logged}") == {"acme", "solo"}
    assert accounts(f"ALL {logged}") == {"solo"}
    assert accounts(f"ALL NOT {logged}") == set()
    assert accounts(f"ANY {logged} AND trait('industry') = 'Software'") == {"acme"}
    # an account-level count covers every user's events
    assert world.batch("event('Logged In').count()", kind="accounts", purpose="trait") == {
        "acme": 1,
        "solo": 1,
    }


def test_account_links_and_traits_older_than_two_months_count_a44(world: World) -> None:
    """A-UE-44 through Profiles Sync's account tables: a Group call made (and received) 100
    days ago is outside the ``groups`` event table (two months) but its link and the trait
    it set are in ``user_accounts`` and ``account_traits``; an anonymous member who later
    identifies counts as the profile it merged into, and a trait set to null is gone."""
    anon = {"anonymousId": "visitor-9"}
    world.group(U1, "acme", 24 * 100, industry="Software", tier="gold")
    world.track(U1, "Logged In", 24 * 2)
    world.group(anon, "acme", 24 * 90)
    world.track(anon, "Other", 24 * 3)
    world.identify({**U2, **anon}, 24 * 2)  # the visitor becomes u2: the link follows
    world.group(U2, "acme", 1, tier=None)
    world.track(U3, "Logged In", 1)
    world.group(U3, "solo", 1, industry="Retail")
    world.sync()
    assert world.rows(f"SELECT group_id FROM {SCHEMA}.groups ORDER BY group_id") == [
        ("acme",),
        ("solo",),
    ]  # the 100- and 90-day-old calls are not in the event table
    logged = "event('Logged In').within(30 days).count() >= 1"

    def accounts(text: str) -> set[str]:
        return world.members(text, kind="accounts")

    assert accounts(f"ANY {logged}") == {"acme", "solo"}
    assert accounts(f"ALL {logged}") == {"solo"}  # u2 (the merged visitor) never logged in
    assert accounts(f"ALL NOT {logged}") == set()
    assert accounts("trait('industry') = 'Software'") == {"acme"}
    assert accounts("trait('tier').exists()") == set()  # set, then removed by a null
    assert world.batch("event('Logged In').count()", kind="accounts", purpose="trait") == {
        "acme": 1,
        "solo": 1,
    }
    # the visitor's event, sent before it identified, counts for acme through u2
    assert world.batch("event('Other').count()", kind="accounts", purpose="trait") == {"acme": 1}


# --- hostile text ------------------------------------------------------------------------------------


HOSTILE = [
    "x'; DROP TABLE batch_space.profile_merges; --",
    'x"; DROP TABLE batch_space.profile_merges; --',
    "\\'; SELECT 1; --",
    "a'||(SELECT 'b')||'",
    "$$; DROP TABLE x; $$",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_and_strings_are_data(world: World, hostile: str) -> None:
    """Event names, property paths and strings reach the SQL only quoted."""
    a = world.profile(world.track(U1, hostile, 1, **{hostile: hostile, "plain": hostile}))
    world.identify(U1, 1, **{hostile: hostile})
    world.sync()
    q = hostile.replace("\\", "\\\\").replace("'", "\\'")
    texts = [
        f"event('{q}').where(property('plain') = '{q}').count() >= 1",
        f"event('{q}').where(property('{q}').exists()).count() >= 1",
        f"trait('{q}') = '{q}'",
        f"event('Other').where(property('plain').contains('{q}')).count() = 0",
    ]
    for text in texts:
        assert world.members(text) == {a}, text
    assert world.rows(f"SELECT count(*) FROM {SCHEMA}.profile_merges")[0][0] >= 1


# --- the differential test against the real-time engine ---------------------------------------------


def _computation(id_: str, key: str, text: str, purpose: str) -> Computation:
    kind = "audience" if purpose == "audience" else "trait"
    return Computation(id_, key, kind, parse(text, purpose=purpose))  # type: ignore[arg-type]


EVENTS = ("Viewed", "Order Completed", "Logged In")
CATEGORIES = ("shoes", "bags", "hats", "socks")
WHERE = (
    "property('category') = 'shoes'",
    "property('category').one_of('bags', 'hats')",
    "property('price') > 20",
    "property('amount') >= 15",
    "property('amount') = 12.5",
    "property('flag') = true",
    "property('flag') != true",
    "property('category').contains('a')",
    "property('category').starts_with('s')",
    "property('price').absent()",
    "NOT property('label').ends_with('x')",
    "(property('price') < 10 OR property('category') = 'socks')",
    "property('tags') = 'red'",
    "property('tags').omits('e')",
    "property('tags').contains('l')",
)
WINDOWS = (
    "",
    "",
    ".within(1 days)",
    ".within(7 days)",
    ".within(30 days)",
    ".within(90 days)",
    ".within(36 hours)",
)
REDUCERS = (
    "count()",
    "unique(property('tags'))",
    "mode(property('tags'), 2)",
    "sum(property('price'))",
    "avg(property('amount'))",
    "min(property('price'))",
    "max(property('amount'))",
    "max(property('category') as string)",
    "first(property('category'))",
    "last(property('price'))",
    "unique(property('category')).count()",
    "mode(property('category'), 2)",
    "mode(property('label'), 1)",
    "unique(property('category'))",
)


def _stream(rng: random.Random) -> str:
    event = rng.choice(EVENTS)
    text = f"event('{event}')"
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        text += f".where({rng.choice(WHERE)})"
    return text + rng.choice(WINDOWS)


def _definitions(rng: random.Random) -> list[Computation]:
    """Random traits, then audiences over events, custom traits and the traits before them."""
    computations: list[Computation] = []
    for i in range(14):
        text = f"{_stream(rng)}.{rng.choice(REDUCERS)}"
        computations.append(_computation(f"t{i}", f"t{i}", text, "trait"))
    computations.append(_computation("t_page", "t_page", "event('Page Viewed').count()", "trait"))
    numeric = [c.key for c in computations if "count()" in c.definition.text]
    atoms: list[Callable[[], str]] = [
        lambda: f"{_stream(rng)}.count() >= {rng.choice((1, 2, 3))}",
        lambda: f"{_stream(rng)}.count() = 0",
        lambda: f"{_stream(rng)}.count() <= 1",
        lambda: f"{_stream(rng)}.sum(property('price')) > 50",
        lambda: "trait('plan') = 'pro'",
        lambda: f"trait('score') > {rng.choice((2, 5, 8))}",
        lambda: "trait('score').exists()",
        lambda: "trait('last_login').within_last(30 days)",
        lambda: f"trait('{rng.choice(numeric)}') >= 2",
        lambda: "event('Page Viewed').where(property('url').contains('pricing')).count() >= 1",
    ]
    for i in range(16):
        parts = [rng.choice(atoms)() for _ in range(rng.choice((1, 1, 2, 3)))]
        if rng.random() < 0.25:
            parts[0] = f"NOT ({parts[0]})"
        text = rng.choice((" AND ", " OR ")).join(f"({p})" for p in parts)
        if i > 10 and rng.random() < 0.5:  # an audience reading an earlier audience
            text = f"({text}) AND trait('a{rng.randrange(i)}') = {rng.choice(('true', 'false'))}"
        computations.append(_computation(f"a{i}", f"a{i}", text, "audience"))
    return computations


def _events(world: World, rng: random.Random) -> None:
    """Users, anonymous visitors who later identify (merges), traits, events over 120 days."""
    people = []
    for n in range(40):
        anonymous = {"anonymousId": f"anon-{n}"}
        roll = rng.random()
        if roll < 0.4:
            people.append({"userId": f"user-{n}"})
        elif roll < 0.6:
            people.append(anonymous)  # stays anonymous
        else:
            people.append(anonymous)
            people.append({"anonymousId": f"anon-{n}", "userId": f"user-{n}"})
    for person in people:
        if "userId" in person and rng.random() < 0.7:
            traits: dict[str, object] = {"plan": rng.choice(("pro", "free"))}
            if rng.random() < 0.7:
                traits["score"] = rng.choice((1, 3, 6, 9, "7", "4.5"))
            if rng.random() < 0.5:
                days = rng.randrange(0, 90)
                month = 2 if days < 28 else 1
                traits["last_login"] = f"2026-{month:02d}-{(days % 28) + 1:02d}T08:00:00Z"
            if rng.random() < 0.3:
                traits["email"] = f"{person['userId']}@example.com"
            world.identify(person, rng.uniform(0, 24 * 120), **traits)
    for _ in range(1500):
        person = rng.choice(people)
        hours = rng.uniform(0, 24 * 120)
        if rng.random() < 0.1:
            url = rng.choice(("https://x.io/pricing", "https://x.io/", "https://x.io/docs"))
            world.page(person, hours, url=url)
            continue
        props: dict[str, object] = {"category": rng.choice(CATEGORIES)}
        if rng.random() < 0.8:
            props["price"] = float(rng.choice((5, 12, 19.5, 25, 40)))
        if rng.random() < 0.6:
            props["amount"] = rng.choice(("12.5", "15", "30", "n/a"))
        if rng.random() < 0.5:
            props["flag"] = rng.random() < 0.5
        if rng.random() < 0.5:
            props["label"] = rng.choice(("ax", "b", "cx"))
        if rng.random() < 0.4:
            props["tags"] = rng.sample(["red", "blue", "gold", "teal"], rng.randrange(0, 3))
        world.track(person, rng.choice(EVENTS), hours, rng.choice(("web", "ios")), **props)


def _batch_values(world: World, computations: list[Computation]) -> dict[str, dict[str, object]]:
    by_key = {
        c.key: batch.Reference(c.kind, c.definition, c.include_anonymous) for c in computations
    }
    queries = {
        c.id: world.compile(
            c.definition,
            include_anonymous=c.include_anonymous,
            references={k: r for k, r in by_key.items() if k != c.key},
        )
        for c in computations
    }
    return batch.run(queries, world.rows)


@pytest.mark.parametrize(
    ("kind", "seed"),
    [
        ("duckdb", 1),
        ("duckdb", 2),
        ("duckdb", 3),
        pytest.param("postgres", 4, marks=pytest.mark.postgres),
    ],
)
def test_batch_equals_realtime_on_random_events_and_definitions(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, seed: int
) -> None:
    """The issue's requirement: a full recompute gives the real-time path's memberships and
    trait values — random users, merges, traits and events over 120 days, random
    definitions the real-time engine supports, through real Profiles Sync (DuckDB, and once
    PostgreSQL)."""
    engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    settings = {} if kind == "duckdb" else pg_settings(request.getfixturevalue("pg_database"))
    world = World.make(tmp_path, engine, kind, settings)
    rng = random.Random(seed)
    computations = _definitions(rng)
    _events(world, rng)
    world.sync()
    expected = world.realtime(computations)
    found = _batch_values(world, computations)
    assert sum(len(v) for v in expected.values()) > 50  # the test says something
    for computation in computations:
        want, got = expected[computation.id], found[computation.id]
        assert want.keys() == got.keys(), computation.definition.text
        for profile, value in want.items():
            assert close(value, got[profile]), (computation.definition.text, profile)
    engine.dispose()


# --- the warehouse's shape -----------------------------------------------------------------------


def test_events_and_properties_never_loaded_read_as_missing(world: World) -> None:
    """No table for an event nobody sent, no column for a property nobody set: a count of 0
    and a missing value, not an error."""
    a = world.profile(world.track(U1, "Viewed", 1, plan="x"))
    world.sync()
    assert world.members("event('Never Sent').count() = 0") == {a}
    assert world.members("event('Viewed').where(property('nope').absent()).count() = 1") == {a}
    assert world.members("event('Viewed').where(property('id') = 'x').count() >= 1") == set()
    assert world.batch("event('Never Sent').sum(property('x'))", purpose="trait") == {}


def test_excluded_and_ignored_sources(world: World) -> None:
    a = world.profile(world.track(U1, "Viewed", 1, source="web"))
    b = world.profile(world.track(U2, "Viewed", 1, source="ios"))
    world.sync()
    ios = world.sources["ios"]
    assert world.members(f"event('Viewed').sources(exclude: '{ios}').count() >= 1") == {a}
    definition = parse("event('Viewed').count() >= 1", purpose="audience")
    sql = world.compile(definition)
    assert {str(r[0]) for r in world.rows(sql)} == {a, b}
    loader_columns = batch.compile(
        definition,
        dialect="duckdb" if world.kind == "duckdb" else "postgresql",
        schema=SCHEMA,
        naming=naming_for("duckdb" if world.kind == "duckdb" else "postgres"),
        columns={t: dict(c) for t, c in _columns(world).items()},
        now=world.now.timestamp(),
        ignore_sources=[ios],
    )
    assert {str(r[0]) for r in world.rows(loader_columns)} == {a}


def _columns(world: World) -> dict[str, dict[str, str]]:
    loader = loader_for(world.warehouses.require(world.warehouse.id), world.tmp)
    try:
        return {t: dict(c) for t, c in loader.columns(SCHEMA).items()}
    finally:
        loader.close()


def test_standard_columns_match_the_warehouse_rows() -> None:
    """The columns the compiler never reads as properties are those ``rows.py`` keeps for
    Segment (plus Profiles Sync's two)."""
    assert rows.RESERVED_TRACK | {"segment_id", "event_source_id"} == batch._TRACK_STANDARD
    assert rows.RESERVED | {"segment_id", "event_source_id"} == batch._STANDARD
