"""IAM's stores on SQLite and PostgreSQL: labels (A-IAM-2), users and their passwords, tokens
kept as digests, permissions from PermissionInputV1 and a user's groups (A-IAM-4)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.iam.access import Grant, Resource
from headwater.iam.labels import LabelStore
from headwater.iam.permissions import PermissionStore
from headwater.iam.principals import token_principal, user_principal
from headwater.iam.resources import find_resource
from headwater.iam.tokens import TokenStore
from headwater.iam.users import UserStore
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore


@pytest.fixture
def workspace(engine: Engine) -> WorkspaceStore:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    return store


@pytest.mark.parametrize(
    ("key", "value"),
    [("1env", "prod"), ("env", ""), ("", "prod"), ("env", "1prod"), ("en v", "p"), ("e", "p:q")],
)
def test_malformed_labels_are_refused(workspace: WorkspaceStore, key: str, value: str) -> None:
    """A-IAM-2: ``1env:prod`` and ``env:`` are refused."""
    with pytest.raises(InvalidError):
        LabelStore(workspace).create(key, value)


def test_labels_in_use_stay_and_one_value_per_key(workspace: WorkspaceStore) -> None:
    """A-IAM-2: deleting environment:prod while a source carries it is refused; a resource
    with two values for one key is refused."""
    labels = LabelStore(workspace)
    assert [(x.key, x.value) for x in labels.list()] == [
        ("environment", "dev"),
        ("environment", "prod"),
    ]
    labels.create("product", "car", "cars")
    with pytest.raises(ConflictError):
        labels.create("product", "car")
    web = workspace.create_source("web")
    labels.set_labels("SOURCE", web.id, [("environment", "prod"), ("product", "car")])
    with pytest.raises(ConflictError):
        labels.set_labels("SOURCE", web.id, [("environment", "prod"), ("environment", "dev")])
    with pytest.raises(NotFoundError):
        labels.set_labels("SOURCE", web.id, [("product", "truck")])
    assert labels.labels_of("SOURCE", web.id) == (("environment", "prod"), ("product", "car"))
    with pytest.raises(ConflictError):
        labels.delete("environment", "prod")
    labels.delete("environment", "dev")  # unused
    with pytest.raises(NotFoundError):
        labels.delete("environment", "dev")
    # A label a permission names is in use too.
    user = UserStore(workspace).create("sally@example.com", "Sally", "correct horse")
    permissions = PermissionStore(workspace)
    grants = permissions.grants_from_input(
        [
            {
                "roleId": "source-admin",
                "resources": [
                    {"type": "WORKSPACE", "labels": [{"key": "product", "value": "car"}]}
                ],
            }
        ]
    )
    permissions.set("user", user.id, grants)
    labels.set_labels("SOURCE", web.id, [])
    with pytest.raises(ConflictError):
        labels.delete("product", "car")
    permissions.set("user", user.id, [])
    labels.delete("product", "car")
    # Once the source is gone its labels no longer count.
    labels.set_labels("SOURCE", web.id, [("environment", "prod")])
    workspace.delete_source(web.id)
    labels.delete("environment", "prod")


def test_users_have_argon2_hashes_and_unique_emails(workspace: WorkspaceStore) -> None:
    users = UserStore(workspace)
    user = users.create("Sally@Example.com", "Sally", "correct horse")
    assert user.email == "sally@example.com"
    with pytest.raises(ConflictError):
        users.create("SALLY@example.com", "Other", "battery staple")
    with pytest.raises(InvalidError):
        users.create("not-an-email", "X", "long enough")
    with pytest.raises(InvalidError):
        users.create("short@example.com", "X", "short")
    with workspace.reading() as conn:
        stored = conn.execute(sa.select(schema.iam_users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert users.verify_password("SALLY@example.com", "correct horse") == user
    assert users.verify_password("sally@example.com", "wrong horse") is None
    assert users.verify_password("bob@example.com", "correct horse") is None
    users.delete(user.id)
    assert users.get(user.id) is None
    with pytest.raises(NotFoundError):
        users.delete(user.id)


def test_tokens_are_kept_as_digests_and_carry_their_grants(workspace: WorkspaceStore) -> None:
    tokens = TokenStore(workspace)
    plaintext, info = tokens.create("ci", created_by="owner@example.com")
    assert plaintext.startswith("hwp_")
    with workspace.reading() as conn:
        row = conn.execute(sa.select(schema.api_tokens)).one()
    assert plaintext not in str(tuple(row))
    permissions = PermissionStore(workspace)
    permissions.set("token", info.id, [Grant("tracking-plan-read-only")])
    principal = token_principal(workspace, plaintext)
    assert principal is not None and principal.kind == "token" and principal.name == "ci"
    assert not principal.owner and not principal.pii_access
    assert principal.allows("tracking_plans", False)
    assert not principal.allows("tracking_plans", True)
    assert tokens.list()[0].last_used_at is not None
    assert token_principal(workspace, plaintext[:-1] + "x") is None
    tokens.delete(info.id)
    assert token_principal(workspace, plaintext) is None
    assert permissions.grants("token", info.id) == ()


def test_a_user_has_its_groups_grants(workspace: WorkspaceStore) -> None:
    """A-IAM-4 through the stores: two groups, Source Admin on brand:a and on brand:b."""
    labels = LabelStore(workspace)
    for brand in ("a", "b", "c"):
        labels.create("brand", brand)
    sources = {}
    for brand in ("a", "b", "c"):
        sources[brand] = workspace.create_source(f"site-{brand}")
        labels.set_labels("SOURCE", sources[brand].id, [("brand", brand)])
    user = UserStore(workspace).create("jane@example.com", "Jane", "correct horse")
    permissions = PermissionStore(workspace)
    with workspace.writing() as conn:
        for brand in ("a", "b"):
            conn.execute(
                schema.iam_groups.insert().values(id=f"g{brand}", name=brand, created_at=0)
            )
            conn.execute(
                schema.iam_group_members.insert().values(group_id=f"g{brand}", user_id=user.id)
            )
    for brand in ("a", "b"):
        grants = permissions.grants_from_input(
            [
                {
                    "roleId": "source-admin",
                    "resources": [
                        {"type": "WORKSPACE", "labels": [{"key": "brand", "value": brand}]}
                    ],
                }
            ]
        )
        permissions.set("group", f"g{brand}", grants)
    principal = user_principal(workspace, user.id)
    assert principal is not None and principal.email == "jane@example.com"
    reachable = {
        brand
        for brand, source in sources.items()
        if principal.allows("sources", True, find_resource(workspace.engine, "SOURCE", source.name))
    }
    assert reachable == {"a", "b"}


def test_permission_input_is_checked(workspace: WorkspaceStore) -> None:
    permissions = PermissionStore(workspace)
    web = workspace.create_source("web")
    [grant] = permissions.grants_from_input(
        [{"roleId": "source-admin", "resources": [{"type": "SOURCE", "id": "web"}]}]
    )
    assert grant == Grant("source-admin", "SOURCE", web.id)
    assert find_resource(workspace.engine, "SOURCE", web.id) == Resource("SOURCE", web.id)
    refused: list[object] = [
        "nope",
        [{"roleId": "no-such-role", "resources": [{"type": "WORKSPACE"}]}],
        [{"roleId": "source-admin", "resources": []}],
        [{"roleId": "source-admin", "resources": [{"type": "SPACE", "id": "x"}]}],
        [{"roleId": "source-admin", "resources": [{"type": "SOURCE", "id": "missing"}]}],
        [
            {
                "roleId": "source-admin",
                "resources": [
                    {
                        "type": "SOURCE",
                        "id": web.id,
                        "labels": [{"key": "environment", "value": "prod"}],
                    }
                ],
            }
        ],
        [
            {
                "roleId": "function-admin",
                "resources": [
                    {"type": "WORKSPACE", "labels": [{"key": "environment", "value": "prod"}]}
                ],
            }
        ],
        [
            {
                "roleId": "source-admin",
                "resources": [{"type": "WORKSPACE", "labels": [{"key": "brand", "value": "none"}]}],
            }
        ],
    ]
    for raw in refused:
        with pytest.raises((InvalidError, NotFoundError)):
            permissions.grants_from_input(raw)
