"""The access decision on its own: labels (A-IAM-1), groups (A-IAM-4), additive roles, scopes."""

from __future__ import annotations

from headwater.iam.access import Grant, Principal, Resource
from headwater.iam.roles import AREAS, ROLES

A = Resource("SOURCE", "A", (("environment", "prod"), ("product", "car")))
B = Resource("SOURCE", "B", (("environment", "prod"), ("product", "truck")))
C = Resource("SOURCE", "C", (("environment", "dev"), ("product", "car")))


def _member(*grants: Grant) -> Principal:
    return Principal(kind="user", id="u", name="u", grants=grants)


def _readable(principal: Principal) -> set[str]:
    return {r.id for r in (A, B, C) if principal.allows("sources", False, r)}


def test_label_restricted_grants_cover_resources_carrying_all_their_labels() -> None:
    """A-IAM-1: Sally [environment:prod] → A, B; Bob [environment:prod, product:truck] → B;
    Jane [product:car] → A, C."""
    sally = _member(Grant("source-read-only", labels=(("environment", "prod"),)))
    bob = _member(Grant("source-read-only", labels=(("environment", "prod"), ("product", "truck"))))
    jane = _member(Grant("source-read-only", labels=(("product", "car"),)))
    assert _readable(sally) == {"A", "B"}
    assert _readable(bob) == {"B"}
    assert _readable(jane) == {"A", "C"}


def test_grants_of_two_groups_add_up() -> None:
    """A-IAM-4: Source Admin on brand:a (one group) and on brand:b (another): both brands."""
    user = _member(
        Grant("source-admin", labels=(("brand", "a"),)),
        Grant("source-admin", labels=(("brand", "b"),)),
    )
    brand_a = Resource("SOURCE", "1", (("brand", "a"),))
    brand_b = Resource("SOURCE", "2", (("brand", "b"), ("environment", "dev")))
    other = Resource("SOURCE", "3", (("brand", "c"),))
    assert user.allows("sources", True, brand_a)
    assert user.allows("sources", True, brand_b)
    assert not user.allows("sources", True, other)
    assert not user.allows("sources", False, other)


def test_highest_access_wins_and_read_only_never_writes() -> None:
    reader = _member(Grant("source-read-only"))
    assert reader.allows("sources", False, A)
    assert not reader.allows("sources", True, A)
    both = _member(Grant("source-read-only"), Grant("source-admin", "SOURCE", "A"))
    assert both.allows("sources", True, A)
    assert not both.allows("sources", True, B)
    assert both.allows("sources", False, B)


def test_a_specific_resource_grant_covers_only_that_resource_and_type() -> None:
    admin = _member(Grant("source-admin", "SOURCE", "A"))
    assert admin.allows("sources", True, A)
    assert not admin.allows("sources", True, B)
    assert not admin.allows("sources", True, Resource("SPACE", "A"))
    # Creating (no resource) needs all current and future sources.
    assert not admin.allows("sources", True)
    assert admin.allows("sources", False)
    assert _member(Grant("source-admin")).allows("sources", True)
    labelled = _member(Grant("source-admin", labels=(("environment", "prod"),)))
    assert not labelled.allows("sources", True)


def test_owners_may_do_everything_and_members_nothing() -> None:
    owner = Principal(kind="token", id="t", name="t", owner=True)
    member = _member(Grant("workspace-member"))
    for area in AREAS:
        for write in (False, True):
            assert owner.allows(area, write, A)
            assert not member.allows(area, write, A)
            assert not member.allows(area, write)


def test_only_owners_reach_workspace_settings_iam_and_audit() -> None:
    for role in ROLES.values():
        for area in ("workspace", "iam", "audit"):
            assert not role.can(area, write=False), (role.id, area)


def test_an_unknown_role_grants_nothing() -> None:
    assert not _member(Grant("no-such-role")).allows("sources", False)
