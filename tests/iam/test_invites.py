"""Invites on SQLite and PostgreSQL (§20.3): the link's token kept as a digest, accepted once
into a member with the invited grants, refused when expired, used or revoked; inviting again
replaces the open invite; members' TOTP secrets."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.iam.access import Grant
from headwater.iam.invites import LIFETIME, InviteStore
from headwater.iam.permissions import PermissionStore
from headwater.iam.users import UserStore
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

READ_SOURCES = Grant("source-read-only")


@pytest.fixture
def workspace(engine: Engine, clock: Clock) -> WorkspaceStore:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    return store


def test_an_invite_becomes_a_member_with_its_grants_once(workspace: WorkspaceStore) -> None:
    invites = InviteStore(workspace)
    token, invite = invites.create("Ada@Example.com", [READ_SOURCES], created_by="owner")
    assert invite.email == "ada@example.com"
    with workspace.reading() as conn:
        stored = conn.execute(sa.select(schema.iam_invites)).one()
    assert token not in str(stored._mapping)  # only its digest is kept
    found = invites.find(token)
    assert found is not None and found.grants == (READ_SOURCES,)
    assert found.status(workspace.now()) == "pending"

    user = invites.accept(token, "Ada", "a long password")
    assert (user.email, user.name) == ("ada@example.com", "Ada")
    assert PermissionStore(workspace).grants("user", user.id) == (READ_SOURCES,)
    assert UserStore(workspace).verify_password("ada@example.com", "a long password") is not None
    assert invites.list() == []  # accepted invites are no longer open
    with pytest.raises(NotFoundError):
        invites.accept(token, "Eve", "another password")


def test_expired_revoked_and_unknown_links_grant_nothing(
    workspace: WorkspaceStore, clock: Clock
) -> None:
    invites = InviteStore(workspace)
    token, invite = invites.create("bob@example.com", [], created_by="owner")
    clock.advance(LIFETIME)
    found = invites.find(token)
    assert found is not None and found.status(workspace.now()) == "expired"
    with pytest.raises(NotFoundError):
        invites.accept(token, "Bob", "a long password")
    assert UserStore(workspace).list() == []

    token, invite = invites.create("bob@example.com", [], created_by="owner")
    invites.delete(invite.id)
    assert invites.find(token) is None
    with pytest.raises(NotFoundError):
        invites.accept(token, "Bob", "a long password")
    with pytest.raises(NotFoundError):
        invites.delete(invite.id)
    assert invites.find("x" * 500) is None


def test_inviting_again_replaces_the_open_invite(workspace: WorkspaceStore) -> None:
    invites = InviteStore(workspace)
    first, _ = invites.create("cy@example.com", [], created_by="owner")
    second, invite = invites.create("cy@example.com", [READ_SOURCES], created_by="owner")
    assert invites.find(first) is None
    assert [i.id for i in invites.list()] == [invite.id]
    invites.accept(second, "Cy", "a long password")
    with pytest.raises(ConflictError):  # a member already
        invites.create("CY@example.com", [], created_by="owner")


def test_bad_input_is_refused_and_leaves_the_link_usable(workspace: WorkspaceStore) -> None:
    invites = InviteStore(workspace)
    with pytest.raises(InvalidError):
        invites.create("not an email", [], created_by="owner")
    token, _ = invites.create("di@example.com", [], created_by="owner")
    with pytest.raises(InvalidError):
        invites.accept(token, "Di", "short")
    with pytest.raises(InvalidError):
        invites.accept(token, "x" * 500, "a long password")
    assert invites.accept(token, "Di", "a long password").email == "di@example.com"


def test_a_members_totp_secret_is_set_and_cleared(workspace: WorkspaceStore) -> None:
    users = UserStore(workspace)
    user = users.create("eve@example.com", "Eve", "a long password")
    assert users.totp_secret(user.id) is None
    users.set_totp_secret(user.id, "JBSWY3DPEHPK3PXP")
    assert users.totp_secret(user.id) == "JBSWY3DPEHPK3PXP"
    users.set_totp_secret(user.id, None)
    assert users.totp_secret(user.id) is None
    with pytest.raises(NotFoundError):
        users.set_totp_secret("nosuchuser", None)
