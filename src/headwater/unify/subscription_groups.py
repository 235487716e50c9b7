"""A space's email subscription groups (spec/unify-engage.md §18.3).

A group lets a user take some of a space's emails and not others: an email address has a state
per group (``subscriptions``) beside its own. A space has at most 25 groups; a name has at most
75 characters, no space at either end and none of Segment's unsupported characters
(``!@#$%^&*()_+-=[]{};':"\\|,.<>/?`` and the accented ``á é í ó ú à è ì ò ù ë ï ã``, in either
case); a description at most 500. Names are unique regardless of case, and an Identify's group
name or a CSV's ``[group_name]_subscription_status`` column finds its group regardless of case.

``headwater apply`` and the REST API both write through ``SubscriptionGroups``; every change bumps
the workspace's config version. Deleting a group keeps its users' preferences (Segment: "Engage
will still maintain the preferences of the group's end users"): the group's row stays, marked
deleted, with its states, and creating a group of that name again brings it back with them.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.workspace import BASE62, UNSET, Unset, WorkspaceStore, is_unicode
from headwater.unify.spaces import SpaceStore

MAX_GROUPS: Final = 25
MAX_NAME: Final = 75
MAX_DESCRIPTION: Final = 500
GROUP_ID_PREFIX: Final = "sgr_"
_ACCENTS: Final = "áéíóúàèìòùëïã"
UNSUPPORTED: Final = frozenset("!@#$%^&*()_+-=[]{};':\"\\|,.<>/?" + _ACCENTS + _ACCENTS.upper())


@dataclass(frozen=True)
class SubscriptionGroup:
    id: str
    space_id: str
    name: str
    description: str
    created_at: int
    updated_at: int


def group_key(name: str) -> str:
    """What a name is found by: the same for ``Newsletter`` and ``newsletter``."""
    return name.casefold()


def check_group_name(name: object, field: str = "name") -> str:
    """Segment's conventions for a group's name."""
    if not isinstance(name, str):
        raise InvalidError("must be a string", field)
    if not name.strip():
        raise InvalidError("must not be empty", field)
    if name != name.strip(" "):
        raise InvalidError("spaces aren't allowed at the beginning or end of the name", field)
    if len(name) > MAX_NAME:
        raise InvalidError(f"at most {MAX_NAME} characters, including spaces", field)
    if not is_unicode(name) or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidError("must not contain control characters or invalid Unicode", field)
    bad = "".join(dict.fromkeys(c for c in name if c in UNSUPPORTED))
    if bad:
        raise InvalidError(f"these characters aren't supported in a group name: {bad}", field)
    return name


def check_description(description: object, field: str = "description") -> str:
    if not isinstance(description, str):
        raise InvalidError("must be a string", field)
    if len(description) > MAX_DESCRIPTION:
        raise InvalidError(f"at most {MAX_DESCRIPTION} characters, including spaces", field)
    if not is_unicode(description) or "\x00" in description:
        raise InvalidError("must not contain NUL or invalid Unicode", field)
    return description


def new_group_id() -> str:
    return GROUP_ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(22))


def live_groups(conn: Connection, space_id: str) -> dict[str, SubscriptionGroup]:
    """The space's groups that are not deleted, by ``group_key``."""
    t = schema.unify_subscription_groups
    rows = conn.execute(sa.select(t).where(t.c.space_id == space_id, t.c.deleted_at.is_(None)))
    return {row.key: _group(row) for row in rows}


class SubscriptionGroups:
    """The workspace's subscription groups, on the workspace store's transactions."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace
        self._spaces = SpaceStore(workspace)

    def list(self, space: str) -> builtins.list[SubscriptionGroup]:
        """The space's groups, by name (regardless of case)."""
        space_id = self._spaces.require(space).id
        with self._ws.reading() as conn:
            return sorted(
                live_groups(conn, space_id).values(), key=lambda g: (g.name.casefold(), g.id)
            )

    def get(self, space: str, id_or_name: str) -> SubscriptionGroup | None:
        space_id = self._spaces.require(space).id
        with self._ws.reading() as conn:
            row = self._find(conn, space_id, id_or_name)
            return _group(row) if row is not None else None

    def require(self, space: str, id_or_name: str) -> SubscriptionGroup:
        found = self.get(space, id_or_name)
        if found is None:
            raise NotFoundError(f"the space has no subscription group {id_or_name!r}")
        return found

    def create(self, space: str, name: str, description: str = "") -> SubscriptionGroup:
        """A new group; a deleted group of that name comes back (with its users' states)."""
        check_group_name(name)
        check_description(description)
        space_id = self._spaces.require(space).id
        t = schema.unify_subscription_groups
        with self._ws.writing() as conn:
            self._lock(conn, space_id)
            key = group_key(name)
            current = conn.execute(
                sa.select(t).where(t.c.space_id == space_id, t.c.key == key)
            ).first()
            if current is not None and current.deleted_at is None:
                raise ConflictError(
                    f"the space already has a subscription group named {current.name!r}", "name"
                )
            if len(live_groups(conn, space_id)) >= MAX_GROUPS:
                raise ConflictError(
                    f"a space has at most {MAX_GROUPS} subscription groups; delete one first",
                    "name",
                )
            now = self._ws.now()
            values = {"name": name, "description": description, "updated_at": now}
            if current is not None:
                group_id = current.id
                conn.execute(t.update().where(t.c.id == group_id).values(deleted_at=None, **values))
            else:
                group_id = new_group_id()
                conn.execute(
                    t.insert().values(
                        id=group_id, space_id=space_id, key=key, created_at=now, **values
                    )
                )
            self._ws.bump(conn)
            return _group(self._row(conn, group_id))

    def update(
        self,
        space: str,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset = UNSET,
    ) -> SubscriptionGroup:
        """Rename a group (its users' states stay with it) or change its description."""
        if not isinstance(name, Unset):
            check_group_name(name)
        if not isinstance(description, Unset):
            check_description(description)
        space_id = self._spaces.require(space).id
        t = schema.unify_subscription_groups
        with self._ws.writing() as conn:
            self._lock(conn, space_id)
            row = self._require(conn, space_id, id_or_name)
            values: dict[str, Any] = {}
            if not isinstance(name, Unset) and name != row.name:
                key = group_key(name)
                other = conn.execute(
                    sa.select(t).where(t.c.space_id == space_id, t.c.key == key, t.c.id != row.id)
                ).first()
                if other is not None and other.deleted_at is None:
                    raise ConflictError(
                        f"the space already has a subscription group named {other.name!r}", "name"
                    )
                if other is not None:  # a deleted group of that name: this one replaces it
                    _forget(conn, space_id, other.id)
                values.update(name=name, key=key)
            if not isinstance(description, Unset) and description != row.description:
                values["description"] = description
            if values:
                conn.execute(
                    t.update().where(t.c.id == row.id).values(updated_at=self._ws.now(), **values)
                )
                self._ws.bump(conn)
            return _group(self._row(conn, row.id))

    def delete(self, space: str, id_or_name: str) -> None:
        """The group goes from the space; its users' states are kept (see the module)."""
        space_id = self._spaces.require(space).id
        t = schema.unify_subscription_groups
        with self._ws.writing() as conn:
            row = self._require(conn, space_id, id_or_name)
            now = self._ws.now()
            conn.execute(t.update().where(t.c.id == row.id).values(deleted_at=now, updated_at=now))
            self._ws.bump(conn)

    # --- internals ---------------------------------------------------------------------------

    def _lock(self, conn: Connection, space_id: str) -> None:
        """PostgreSQL: the space's row locked, so two creates cannot both pass the count."""
        sp = schema.spaces
        conn.execute(sa.select(sp.c.id).where(sp.c.id == space_id).with_for_update())

    def _find(self, conn: Connection, space_id: str, id_or_name: object) -> Row[Any] | None:
        if not isinstance(id_or_name, str) or not is_unicode(id_or_name) or "\x00" in id_or_name:
            return None
        t = schema.unify_subscription_groups
        live = sa.and_(t.c.space_id == space_id, t.c.deleted_at.is_(None))
        row = conn.execute(sa.select(t).where(live, t.c.id == id_or_name)).first()
        if row is None:
            row = conn.execute(sa.select(t).where(live, t.c.key == group_key(id_or_name))).first()
        return row

    def _require(self, conn: Connection, space_id: str, id_or_name: str) -> Row[Any]:
        row = self._find(conn, space_id, id_or_name)
        if row is None:
            raise NotFoundError(f"the space has no subscription group {id_or_name!r}")
        return row

    def _row(self, conn: Connection, group_id: str) -> Row[Any]:
        t = schema.unify_subscription_groups
        return conn.execute(sa.select(t).where(t.c.id == group_id)).one()


def _forget(conn: Connection, space_id: str, group_id: str) -> None:
    """A deleted group, with its users' states, gone for good."""
    g = schema.unify_group_subscriptions
    conn.execute(g.delete().where(g.c.space_id == space_id, g.c.group_id == group_id))
    conn.execute(
        schema.unify_subscription_groups.delete().where(
            schema.unify_subscription_groups.c.id == group_id
        )
    )


def _group(row: Row[Any]) -> SubscriptionGroup:
    return SubscriptionGroup(
        row.id, row.space_id, row.name, row.description or "", row.created_at, row.updated_at
    )
