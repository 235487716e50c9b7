"""User groups (§20.1): a set of members sharing policies. A member gets its groups' grants on
top of its own (``PermissionStore.effective_grants``); deleting a group drops its grants."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.errors import ConflictError, NotFoundError
from headwater.iam.users import UserInfo, UserStore, check_email, is_id
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, check_name, new_id


@dataclass(frozen=True)
class GroupInfo:
    id: str
    name: str
    member_count: int
    created_at: int


class GroupStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def create(self, name: object) -> GroupInfo:
        shown = check_name(name)
        g = schema.iam_groups
        with self._workspace.writing() as conn:
            if conn.execute(sa.select(g.c.id).where(g.c.name == shown)).first() is not None:
                raise ConflictError(f"a group named {shown!r} exists already", "name")
            group_id, now = new_id(), self._workspace.now()
            conn.execute(g.insert().values(id=group_id, name=shown, created_at=now))
        return GroupInfo(group_id, shown, 0, now)

    def list(self) -> list[GroupInfo]:
        g = schema.iam_groups
        with self._workspace.reading() as conn:
            rows = list(conn.execute(sa.select(g).order_by(g.c.name)))
            return [_info(conn, r) for r in rows]

    def require(self, group_id: str) -> GroupInfo:
        with self._workspace.reading() as conn:
            row = _row(conn, group_id)
            return _info(conn, row)

    def rename(self, group_id: str, name: object) -> GroupInfo:
        shown = check_name(name)
        g = schema.iam_groups
        with self._workspace.writing() as conn:
            row = _row(conn, group_id)
            taken = conn.execute(
                sa.select(g.c.id).where(g.c.name == shown, g.c.id != row.id)
            ).first()
            if taken is not None:
                raise ConflictError(f"a group named {shown!r} exists already", "name")
            conn.execute(g.update().where(g.c.id == row.id).values(name=shown))
            return _info(conn, _row(conn, group_id))

    def delete(self, group_id: str) -> None:
        g, m, p = schema.iam_groups, schema.iam_group_members, schema.iam_permissions
        with self._workspace.writing() as conn:
            row = _row(conn, group_id)
            conn.execute(m.delete().where(m.c.group_id == row.id))
            conn.execute(
                p.delete().where(p.c.principal_kind == "group", p.c.principal_id == row.id)
            )
            conn.execute(g.delete().where(g.c.id == row.id))

    def members(self, group_id: str) -> builtins.list[UserInfo]:
        m = schema.iam_group_members
        with self._workspace.reading() as conn:
            _row(conn, group_id)
            ids = set(
                conn.execute(sa.select(m.c.user_id).where(m.c.group_id == group_id)).scalars()
            )
        return [u for u in UserStore(self._workspace).list() if u.id in ids]

    def add_members(
        self, group_id: str, emails: Sequence[object], *, replace: bool = False
    ) -> None:
        """Add the users with these emails (all must be members of the workspace); ``replace``
        makes them the group's only members."""
        addresses = [check_email(e, f"emails.{i}") for i, e in enumerate(emails)]
        m, u = schema.iam_group_members, schema.iam_users
        with self._workspace.writing() as conn:
            _row(conn, group_id)
            query = sa.select(u.c.email, u.c.id).where(u.c.email.in_(addresses))
            found = {str(r.email): str(r.id) for r in conn.execute(query)}
            missing = [a for a in addresses if a not in found]
            if missing:
                raise NotFoundError(f"no user has the email {missing[0]}", "emails")
            if replace:
                conn.execute(m.delete().where(m.c.group_id == group_id))
            present = set(
                conn.execute(sa.select(m.c.user_id).where(m.c.group_id == group_id)).scalars()
            )
            rows = [
                {"group_id": group_id, "user_id": user_id}
                for user_id in dict.fromkeys(found[a] for a in addresses)
                if user_id not in present
            ]
            if rows:
                conn.execute(m.insert(), rows)

    def remove_members(self, group_id: str, emails: Sequence[object]) -> None:
        addresses = [check_email(e, f"emails.{i}") for i, e in enumerate(emails)]
        m, u = schema.iam_group_members, schema.iam_users
        with self._workspace.writing() as conn:
            _row(conn, group_id)
            ids = sa.select(u.c.id).where(u.c.email.in_(addresses))
            conn.execute(m.delete().where(m.c.group_id == group_id, m.c.user_id.in_(ids)))

    def groups_of(self, user_id: str) -> builtins.list[GroupInfo]:
        g, m = schema.iam_groups, schema.iam_group_members
        if not is_id(user_id):
            return []
        with self._workspace.reading() as conn:
            rows = list(
                conn.execute(
                    sa.select(g)
                    .join(m, m.c.group_id == g.c.id)
                    .where(m.c.user_id == user_id)
                    .order_by(g.c.name)
                )
            )
            return [_info(conn, r) for r in rows]


def _row(conn: Connection, group_id: str) -> sa.Row:  # type: ignore[type-arg]
    g = schema.iam_groups
    row = conn.execute(sa.select(g).where(g.c.id == group_id)).first() if is_id(group_id) else None
    if row is None:
        raise NotFoundError(f"no group has the id {group_id!r}")
    return row


def _info(conn: Connection, row: sa.Row) -> GroupInfo:  # type: ignore[type-arg]
    m = schema.iam_group_members
    count = conn.execute(
        sa.select(sa.func.count()).select_from(m).where(m.c.group_id == row.id)
    ).scalar_one()
    return GroupInfo(row.id, row.name, int(count), int(row.created_at))
