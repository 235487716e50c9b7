"""The principal behind a credential: an API token or a signed-in user, with its grants.

The REST API calls ``token_principal`` for a bearer token that is not the admin token; a
session layer calls ``user_principal`` for a signed-in user.
"""

from __future__ import annotations

from headwater.iam.access import Principal, is_owner
from headwater.iam.permissions import PermissionStore
from headwater.iam.tokens import TokenInfo, TokenStore
from headwater.iam.users import UserStore
from headwater.store.workspace import WorkspaceStore

# The admin token: the workspace's owner, with PII Access.
ADMIN = Principal(kind="admin", id="admin", name="Admin token", owner=True, pii_access=True)


def principal_of(workspace: WorkspaceStore, kind: str, principal_id: str) -> Principal | None:
    """The principal a web session signed in as, as it is now: a revoked token or a deleted
    user is no one."""
    if kind == "admin":
        return ADMIN
    if kind == "user":
        return user_principal(workspace, principal_id)
    if kind == "token":
        token = TokenStore(workspace).get(principal_id)
        return None if token is None else _of_token(workspace, token)
    return None


def token_principal(workspace: WorkspaceStore, plaintext: str) -> Principal | None:
    token = TokenStore(workspace).authenticate(plaintext)
    if token is None:
        return None
    return _of_token(workspace, token)


def _of_token(workspace: WorkspaceStore, token: TokenInfo) -> Principal:
    grants = PermissionStore(workspace).grants("token", token.id)
    owner = is_owner(grants)
    return Principal(
        kind="token",
        id=token.id,
        name=token.description,
        owner=owner,
        pii_access=owner or token.pii_access,
        grants=grants,
    )


def user_principal(workspace: WorkspaceStore, user_id: str) -> Principal | None:
    user = UserStore(workspace).get(user_id)
    if user is None:
        return None
    grants = PermissionStore(workspace).effective_grants(user.id)
    owner = is_owner(grants)
    return Principal(
        kind="user",
        id=user.id,
        name=user.name,
        email=user.email,
        owner=owner,
        pii_access=owner or user.pii_access,
        grants=grants,
    )
