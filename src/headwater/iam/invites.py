"""Invitations (§20.3): an owner invites an email with the grants the new member will hold; the
invite link (``/invite/<token>``) is answered once, and only its SHA-256 is kept. There is no
mail server: the owner passes the link on. A link lasts 7 days and works once; accepting it
creates the member with the invited grants in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa

from headwater.errors import ConflictError, NotFoundError
from headwater.iam.access import Grant
from headwater.iam.permissions import PermissionStore
from headwater.iam.users import UserInfo, UserStore, check_email, check_password, is_id
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, new_id

LIFETIME: Final = 7 * 86400  # seconds an invite link works
TOKEN_BYTES: Final = 32
MAX_TOKEN: Final = 100  # longer strings are no token of ours (never looked up)

Status = Literal["pending", "expired", "accepted"]


@dataclass(frozen=True)
class InviteInfo:
    id: str
    email: str
    grants: tuple[Grant, ...]
    created_by: str
    created_at: int
    expires_at: int
    accepted_at: int | None

    def status(self, now: int) -> Status:
        if self.accepted_at is not None:
            return "accepted"
        return "pending" if now < self.expires_at else "expired"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class InviteStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def create(
        self, email: object, grants: Sequence[Grant], *, created_by: str
    ) -> tuple[str, InviteInfo]:
        """A new invite and its link's token (returned here only). Inviting an address again
        replaces its open invite (Segment's "resend": the old link stops working)."""
        address = check_email(email)
        u, i = schema.iam_users, schema.iam_invites
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._workspace.now()
        invite = InviteInfo(new_id(), address, tuple(grants), created_by, now, now + LIFETIME, None)
        with self._workspace.writing() as conn:
            if conn.execute(sa.select(u.c.id).where(u.c.email == address)).first() is not None:
                raise ConflictError(f"{address} is a member of this workspace already", "email")
            conn.execute(i.delete().where(i.c.email == address, i.c.accepted_at.is_(None)))
            conn.execute(
                i.insert().values(
                    id=invite.id,
                    email=address,
                    token_sha256=digest(token),
                    grants=[_grant_json(g) for g in grants],
                    created_by=created_by,
                    created_at=now,
                    expires_at=invite.expires_at,
                    accepted_at=None,
                )
            )
        return token, invite

    def list(self) -> list[InviteInfo]:
        """Every invite not accepted yet (expired ones too, until revoked), newest first."""
        i = schema.iam_invites
        with self._workspace.reading() as conn:
            rows = conn.execute(
                sa.select(i).where(i.c.accepted_at.is_(None)).order_by(i.c.created_at.desc())
            )
            return [_info(r) for r in rows]

    def delete(self, invite_id: str) -> None:
        """Segment's "Revoke Invite": its link grants nothing from now on."""
        i = schema.iam_invites
        if not is_id(invite_id):
            raise NotFoundError(f"no invite has the id {invite_id!r}")
        with self._workspace.writing() as conn:
            done = conn.execute(i.delete().where(i.c.id == invite_id))
            if done.rowcount == 0:
                raise NotFoundError(f"no invite has the id {invite_id!r}")

    def find(self, token: str) -> InviteInfo | None:
        """The invite this link's token is, whatever its status; None for no invite."""
        if not token or len(token) > MAX_TOKEN:
            return None
        i = schema.iam_invites
        with self._workspace.reading() as conn:
            row = conn.execute(sa.select(i).where(i.c.token_sha256 == digest(token))).first()
        return None if row is None else _info(row)

    def accept(self, token: str, name: object, password: object) -> UserInfo:
        """The member the invite becomes, with its grants; a used, expired or revoked link is
        NotFoundError, and a link can be used only once even by two requests at a time."""
        checked = check_password(password)
        i = schema.iam_invites
        now = self._workspace.now()
        with self._workspace.atomic():
            invite = self.find(token)
            if invite is None or invite.status(now) != "pending":
                raise NotFoundError("this invite link is not valid any more")
            with self._workspace.writing() as conn:
                taken = conn.execute(
                    i.update()
                    .where(i.c.id == invite.id, i.c.accepted_at.is_(None))
                    .values(accepted_at=now)
                )
                if taken.rowcount != 1:
                    raise NotFoundError("this invite link is not valid any more")
            user = UserStore(self._workspace).create(invite.email, name, checked)
            PermissionStore(self._workspace).set("user", user.id, invite.grants)
        return user


def _grant_json(grant: Grant) -> dict[str, Any]:
    return {
        "roleId": grant.role_id,
        "resourceType": grant.resource_type,
        "resourceId": grant.resource_id,
        "labels": [list(label) for label in grant.labels],
    }


def _info(row: sa.Row) -> InviteInfo:  # type: ignore[type-arg]
    grants = tuple(
        Grant(
            str(g["roleId"]),
            g["resourceType"],
            g.get("resourceId"),
            tuple((str(k), str(v)) for k, v in g.get("labels") or []),
        )
        for g in row.grants or []
    )
    return InviteInfo(
        row.id,
        row.email,
        grants,
        row.created_by,
        int(row.created_at),
        int(row.expires_at),
        None if row.accepted_at is None else int(row.accepted_at),
    )
