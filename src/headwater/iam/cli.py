"""``headwater users`` and ``headwater tokens``: team members and Public API tokens, straight
in the state database (like ``headwater apply``), so the first Workspace Owner can be made
before any token exists. A generated password and a token are printed once, never again.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from headwater.errors import InvalidError
from headwater.iam.access import Grant
from headwater.iam.permissions import PermissionStore
from headwater.iam.roles import ROLES, Role
from headwater.iam.tokens import TokenInfo, TokenStore
from headwater.iam.users import UserInfo, UserStore, generate_password
from headwater.store.workspace import WorkspaceStore


def find_role(reference: str) -> Role:
    """A role by id (``source-admin``) or name (``Source Admin``), in any case."""
    wanted = reference.strip().lower()
    for role in ROLES.values():
        if wanted in (role.id, role.name.lower()):
            return role
    raise InvalidError(f"no role {reference!r}; roles: {', '.join(ROLES)}", "role")


def _grants(roles: Sequence[str]) -> list[Grant]:
    """Each role over the whole workspace (all current and future resources)."""
    return [Grant(find_role(r).id) for r in roles]


def add_user(
    workspace: WorkspaceStore,
    email: str,
    roles: Sequence[str],
    *,
    name: str | None = None,
    password: str | None = None,
    out: TextIO | None = None,
) -> UserInfo:
    """Add a member with ``roles``; without ``password`` one is generated and printed once."""
    out = out or sys.stdout
    grants = _grants(roles)
    shown = password is None
    password = password if password is not None else generate_password()
    with workspace.atomic():
        user = UserStore(workspace).create(email, name, password)
        PermissionStore(workspace).set("user", user.id, grants)
    names = ", ".join(ROLES[g.role_id].name for g in grants)
    out.write(f"added {user.email} ({user.id}) as {names}\n")
    if shown:
        out.write(f"password (shown once): {password}\n")
    return user


def list_users(workspace: WorkspaceStore, *, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    permissions = PermissionStore(workspace)
    users = UserStore(workspace).list()
    for user in users:
        roles = sorted(
            {
                ROLES[g.role_id].name
                for g in permissions.effective_grants(user.id)
                if g.role_id in ROLES
            }
        )
        out.write(f"{user.email:<40} {user.name:<24} {', '.join(roles) or '-'}\n")
    if not users:
        out.write("no users\n")


def create_token(
    workspace: WorkspaceStore,
    roles: Sequence[str],
    description: str,
    *,
    pii_access: bool = False,
    out: TextIO | None = None,
) -> TokenInfo:
    """A Public API token with ``roles``; the token is printed once."""
    out = out or sys.stdout
    grants = _grants(roles)
    with workspace.atomic():
        plaintext, token = TokenStore(workspace).create(
            description, created_by="headwater tokens create", pii_access=pii_access
        )
        PermissionStore(workspace).set("token", token.id, grants)
    out.write(f"created token {token.id} ({token.description}); it is shown once:\n")
    out.write(f"{plaintext}\n")
    return token
