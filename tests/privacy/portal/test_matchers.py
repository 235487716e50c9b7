"""The Privacy Portal's matchers: the 36 defaults, Similar by Dice > 0.7, synonyms, custom
matchers and their RE2-compatible patterns (A-PR-1, A-PR-2, A-PR-3)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.matchers import DEFAULT_MATCHERS, Matchers, check_matcher, dice
from headwater.store.workspace import WorkspaceStore


def test_the_36_default_matchers_are_8_red_and_28_yellow() -> None:
    assert len({m.name for m in DEFAULT_MATCHERS}) == 36
    assert sum(m.classification == "red" for m in DEFAULT_MATCHERS) == 8
    assert all(m.match_on == "key" for m in DEFAULT_MATCHERS)


def test_a_pr_1_ssn_is_red_and_e_mail_is_yellow_by_a_similar_match() -> None:
    matchers = Matchers()
    for key in ("ssn", "social security number", "properties.SSN", "socialSecurityNumber"):
        found = matchers.classify_key(key)
        assert found is not None and found.classification == "red", key
        assert found.matcher == "social security number"
    email = matchers.classify_key("properties.e-mail")
    assert email is not None
    assert (email.classification, email.matcher, email.how) == ("yellow", "email", "similar")
    assert matchers.classify_key("properties.email") == email.__class__(
        "yellow", "email", "default", "exact"
    )


def test_dice_is_godices_score_over_bigrams() -> None:
    assert dice("email", "email") == 1.0
    assert dice("night", "nacht") == pytest.approx(0.25)
    assert dice("a", "a") == 1.0 and dice("a", "b") == 0.0
    # Above 0.7 is similar, 0.7 itself is not: "address2" is an address, "username" no name.
    assert dice("address2", "address") > 0.7
    matchers = Matchers()
    assert matchers.classify_key("address2") is not None
    assert matchers.classify_key("username") is None
    assert matchers.classify_key("price") is None
    assert matchers.classify_key("items.$.sku") is None


def test_a_pr_2_sin_exact_matches_only_itself_and_its_synonyms() -> None:
    sin = check_matcher(
        {"name": "SIN", "classification": "RED", "matchOn": "KEY", "precision": "EXACT"}
    )
    matchers = Matchers([sin])
    found = matchers.classify_key("properties.SIN")
    assert found is not None
    assert (found.classification, found.matcher, found.matcher_type) == ("red", "SIN", "custom")
    assert matchers.classify_key("Social Insurance No.") is None
    with_synonym = check_matcher(
        {
            "name": "SIN",
            "classification": "RED",
            "matchOn": "KEY",
            "precision": "EXACT",
            "synonyms": ["Social Insurance No."],
        }
    )
    assert Matchers([with_synonym]).classify_key("Social Insurance No.") is not None
    # Similar: "Social Insurance Number" is near enough to the name "social insurance no".
    similar = check_matcher(
        {"name": "social insurance no", "classification": "RED", "precision": "SIMILAR"}
    )
    assert Matchers([similar]).classify_key("Social Insurance Number") is not None
    assert Matchers([similar]).classify_key("insurer") is None


def test_a_custom_matcher_overrides_the_default_of_the_same_name() -> None:
    red_email = check_matcher({"name": "email", "classification": "RED", "precision": "SIMILAR"})
    found = Matchers([red_email]).classify_key("traits.email")
    assert found is not None and (found.classification, found.matcher_type) == ("red", "custom")
    assert len(Matchers([red_email]).all) == 36


def test_a_value_matcher_searches_values_with_its_pattern() -> None:
    matcher = check_matcher(
        {
            "name": "Employee",
            "classification": "YELLOW",
            "matchOn": "VALUE",
            "pattern": "@acme\\.com$",
        }
    )
    matchers = Matchers([matcher])
    assert matchers.classify_value("jo@acme.com") is not None
    assert matchers.classify_value("jo@acme.co.uk") is None
    assert matchers.classify_value(12) is None
    assert matchers.classify_key("acme") is None  # a value matcher never looks at keys


@pytest.mark.parametrize(
    "pattern", ["(?=a)b", "(?!a)b", "(?<=a)b", "(?<!a)b", "(a)\\1", "(?<x>a)\\k<x>", "(a"]
)
def test_a_pr_3_lookaround_and_backreferences_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidError) as refused:
        check_matcher(
            {"name": "x", "classification": "RED", "matchOn": "VALUE", "pattern": pattern}
        )
    assert refused.value.field == "pattern"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"name": "", "classification": "RED"},
        {"name": "x"},
        {"name": "x", "classification": "GREEN"},
        {"name": "x", "classification": "RED", "matchOn": "VALUE"},
        {"name": "x", "classification": "RED", "pattern": "a"},
        {"name": "x", "classification": "RED", "synonyms": "a"},
        {"name": "x", "classification": "RED", "synonyms": [""]},
        {"name": "x", "classification": "RED", "precision": 3},
    ],
)
def test_unusable_matchers_are_refused(body: object) -> None:
    with pytest.raises(InvalidError):
        check_matcher(body)


def test_a_pr_2_the_101st_custom_matcher_is_refused(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    custom = CustomMatchers(store)
    before = store.config_version()
    for n in range(100):
        custom.create({"name": f"m{n}", "classification": "YELLOW"})
    assert store.config_version() > before  # the Inbox and masking reload
    with pytest.raises(InvalidError, match="at most 100"):
        custom.create({"name": "one too many", "classification": "YELLOW"})
    with pytest.raises(ConflictError):
        custom.update("m1", {"name": "M0", "classification": "RED"})
    custom.delete("m0")
    made = custom.create({"name": "SIN", "classification": "RED"})
    assert made.id.startswith("pm_") and custom.get("SIN") == made
    found = custom.matchers().classify_key("sin")
    assert found is not None and found.matcher == "SIN"
