"""Policies: the grants a user, a group or an API token holds (§20.1), in Segment's
``PermissionInputV1`` shape at the edges: ``{roleId, resources: [{id, type, labels?}]}``.

A user's access is the union of its own grants and its groups' (roles are additive). A grant
names the whole workspace (optionally narrowed by labels: all current and future resources
carrying them) or one source, space, warehouse or function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.errors import InvalidError, NotFoundError
from headwater.iam.access import Grant, Label
from headwater.iam.labels import check_label, missing_labels
from headwater.iam.resources import lookup
from headwater.iam.roles import RESOURCE_TYPES, ROLES, ResourceType
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore

Holder = Literal["user", "group", "token"]
MAX_PERMISSIONS: Final = 200
MAX_LABELS: Final = 20


def parse_permissions(raw: object, field: str = "permissions") -> list[tuple[str, list[Any]]]:
    """``PermissionInputV1`` items as (roleId, resources), checked for shape only."""
    if not isinstance(raw, list):
        raise InvalidError("must be a list of {roleId, resources}", field)
    if len(raw) > MAX_PERMISSIONS:
        raise InvalidError(f"must hold at most {MAX_PERMISSIONS} items", field)
    parsed: list[tuple[str, list[Any]]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"roleId", "resources"}:
            raise InvalidError("must be an object {roleId, resources}", f"{field}.{i}")
        role_id, resources = item.get("roleId"), item.get("resources")
        if not isinstance(role_id, str) or role_id not in ROLES:
            raise InvalidError(
                f"unknown role; GET /api/v1/roles lists them ({', '.join(ROLES)})",
                f"{field}.{i}.roleId",
            )
        if not isinstance(resources, list) or not resources or len(resources) > MAX_PERMISSIONS:
            raise InvalidError(
                f"must be a list of 1 to {MAX_PERMISSIONS} resources", f"{field}.{i}.resources"
            )
        parsed.append((role_id, resources))
    return parsed


class PermissionStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def grants_from_input(self, raw: object, field: str = "permissions") -> list[Grant]:
        """Grants from ``PermissionInputV1`` items: roles known, resources existing, labels
        existing and only on workspace-level grants of roles that take them."""
        grants: list[Grant] = []
        for i, (role_id, resources) in enumerate(parse_permissions(raw, field)):
            role = ROLES[role_id]
            for j, resource in enumerate(resources):
                at = f"{field}.{i}.resources.{j}"
                grants.append(self._grant(role_id, role.scope, role.labels, resource, at))
        return grants

    def _grant(
        self, role_id: str, scope: ResourceType, takes_labels: bool, resource: object, at: str
    ) -> Grant:
        if not isinstance(resource, Mapping) or set(resource) - {"id", "type", "labels"}:
            raise InvalidError("must be an object {id, type, labels?}", at)
        type_ = resource.get("type")
        if type_ not in RESOURCE_TYPES:
            raise InvalidError(f"must be one of {', '.join(RESOURCE_TYPES)}", f"{at}.type")
        if type_ not in ("WORKSPACE", scope):
            raise InvalidError(
                f"the role {ROLES[role_id].name} applies to WORKSPACE or {scope}", f"{at}.type"
            )
        raw_labels = resource.get("labels") or []
        if not isinstance(raw_labels, list) or len(raw_labels) > MAX_LABELS:
            raise InvalidError(f"must be a list of at most {MAX_LABELS} labels", f"{at}.labels")
        labels: list[Label] = []
        for k, label in enumerate(raw_labels):
            if not isinstance(label, Mapping) or set(label) - {"key", "value", "description"}:
                raise InvalidError("must be an object {key, value}", f"{at}.labels.{k}")
            labels.append(check_label(label.get("key"), label.get("value"), f"{at}.labels.{k}"))
        if labels and (type_ != "WORKSPACE" or not takes_labels):
            raise InvalidError(
                "labels narrow only workspace-level grants of Source and Unify/Engage roles",
                f"{at}.labels",
            )
        if type_ == "WORKSPACE":
            with self._workspace.reading() as conn:
                missing = missing_labels(conn, labels)
            if missing:
                raise NotFoundError(f"no label {missing[0][0]}:{missing[0][1]}", f"{at}.labels")
            return Grant(role_id, "WORKSPACE", None, tuple(sorted(set(labels))))
        reference = resource.get("id")
        if not isinstance(reference, str) or not reference:
            raise InvalidError(f"name the {type_.lower()} by its id", f"{at}.id")
        found = lookup(self._workspace.engine, type_, reference)
        if found is None:
            raise NotFoundError(f"no {type_.lower()} has the id or name {reference!r}", f"{at}.id")
        return Grant(role_id, type_, found.id)

    def set(self, holder: Holder, holder_id: str, grants: Sequence[Grant]) -> None:
        """Replace the holder's grants."""
        p = schema.iam_permissions
        with self._workspace.writing() as conn:
            conn.execute(
                p.delete().where(p.c.principal_kind == holder, p.c.principal_id == holder_id)
            )
            self._insert(conn, holder, holder_id, grants)

    def add(self, holder: Holder, holder_id: str, grants: Sequence[Grant]) -> None:
        with self._workspace.writing() as conn:
            self._insert(conn, holder, holder_id, grants)

    def _insert(
        self, conn: Connection, holder: Holder, holder_id: str, grants: Sequence[Grant]
    ) -> None:
        if grants:
            conn.execute(
                schema.iam_permissions.insert(),
                [
                    {
                        "principal_kind": holder,
                        "principal_id": holder_id,
                        "role_id": g.role_id,
                        "resource_type": g.resource_type,
                        "resource_id": g.resource_id,
                        "labels": [list(label) for label in g.labels],
                    }
                    for g in grants
                ],
            )

    def remove_all(self, holder: Holder, holder_id: str) -> None:
        p = schema.iam_permissions
        with self._workspace.writing() as conn:
            conn.execute(
                p.delete().where(p.c.principal_kind == holder, p.c.principal_id == holder_id)
            )

    def grants(self, holder: Holder, holder_id: str) -> tuple[Grant, ...]:
        """The holder's own grants (for a user, not its groups')."""
        with self._workspace.reading() as conn:
            return _grants(conn, [(holder, holder_id)])

    def effective_grants(self, user_id: str) -> tuple[Grant, ...]:
        """A user's grants and those of every group it belongs to."""
        m = schema.iam_group_members
        with self._workspace.reading() as conn:
            groups = conn.execute(sa.select(m.c.group_id).where(m.c.user_id == user_id))
            holders: list[tuple[Holder, str]] = [("user", user_id)]
            holders += [("group", str(g)) for g in groups.scalars()]
            return _grants(conn, holders)


def _grants(conn: Connection, holders: Sequence[tuple[Holder, str]]) -> tuple[Grant, ...]:
    p = schema.iam_permissions
    condition = sa.or_(
        *(sa.and_(p.c.principal_kind == kind, p.c.principal_id == id_) for kind, id_ in holders)
    )
    rows = conn.execute(sa.select(p).where(condition).order_by(p.c.id))
    return tuple(
        Grant(
            r.role_id,
            r.resource_type,
            r.resource_id,
            tuple((str(k), str(v)) for k, v in (r.labels or [])),
        )
        for r in rows
    )


def permissions_json(grants: Sequence[Grant]) -> list[dict[str, Any]]:
    """Grants in ``PermissionV1``'s shape: one entry per role, its resources listed."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for g in grants:
        resource: dict[str, Any] = {"id": g.resource_id or "", "type": g.resource_type}
        if g.labels:
            resource["labels"] = [{"key": k, "value": v} for k, v in g.labels]
        by_role.setdefault(g.role_id, []).append(resource)
    return [
        {"roleId": role_id, "roleName": ROLES[role_id].name, "resources": resources}
        for role_id, resources in by_role.items()
        if role_id in ROLES
    ]
