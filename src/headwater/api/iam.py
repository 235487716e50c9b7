"""Identity and access management in the REST API, in the Public API's shapes (§15.4):
``/roles``, ``/users`` and ``/groups`` with their permissions, ``/invites``, ``/tokens``,
``/labels`` and the labels of a source or a space.

Every route here but a source's or a space's labels is the ``iam`` area, which only Workspace
Owners reach (api/areas.py), so only owners create tokens (A-API-4). A token's plaintext and a
generated password are in the answer that creates them and nowhere else, ever.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from headwater.api.auth import require_access
from headwater.api.errors import body_object
from headwater.api.sources import iso
from headwater.errors import InvalidError, NotFoundError
from headwater.iam.access import Grant, Principal
from headwater.iam.groups import GroupInfo, GroupStore
from headwater.iam.invites import InviteInfo, InviteStore
from headwater.iam.labels import LabeledType, LabelInfo, LabelStore
from headwater.iam.permissions import Holder, PermissionStore, permissions_json
from headwater.iam.resources import lookup
from headwater.iam.roles import ROLES
from headwater.iam.tokens import TokenInfo, TokenStore
from headwater.iam.users import UserInfo, UserStore, generate_password
from headwater.store.workspace import MAX_PAGE_SIZE, WorkspaceStore

router = APIRouter(tags=["access management"])

T = TypeVar("T")


def _workspace(request: Request) -> WorkspaceStore:
    store: WorkspaceStore = request.app.state.workspace_store
    return store


Workspace = Annotated[WorkspaceStore, Depends(_workspace)]
Caller = Annotated[Principal, Depends(require_access)]
Count = Annotated[int, Query(alias="pagination.count", ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[str | None, Query(alias="pagination.cursor")]


def _page(items: Sequence[T], count: int, cursor: str | None) -> tuple[Sequence[T], dict[str, Any]]:
    """One page of a short list (users, tokens, labels), with opaque offset cursors."""
    start = 0
    if cursor:
        try:
            start = int(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii"))
        except (ValueError, UnicodeError):
            raise InvalidError(
                "is not a cursor this server gave out", "pagination.cursor"
            ) from None
        if not 0 <= start <= len(items):
            raise InvalidError("is not a cursor this server gave out", "pagination.cursor")
    pagination: dict[str, Any] = {"current": _cursor(start), "totalEntries": len(items)}
    if start + count < len(items):
        pagination["next"] = _cursor(start + count)
    if start > 0:
        pagination["previous"] = _cursor(max(0, start - count))
    return items[start : start + count], pagination


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


# --- roles -----------------------------------------------------------------------------------


@router.get("/roles", response_model=None)
def list_roles(count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    roles, pagination = _page(list(ROLES.values()), count, cursor)
    shown = [{"id": r.id, "name": r.name, "description": r.description} for r in roles]
    return {"data": {"roles": shown, "pagination": pagination}}


# --- users -----------------------------------------------------------------------------------


def _user_json(user: UserInfo, grants: Sequence[Grant]) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "piiAccess": user.pii_access,
        "createdAt": iso(user.created_at),
        "permissions": permissions_json(grants),
    }


@router.get("/users", response_model=None)
def list_users(workspace: Workspace, count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    permissions = PermissionStore(workspace)
    users, pagination = _page(UserStore(workspace).list(), count, cursor)
    shown = [_user_json(u, permissions.grants("user", u.id)) for u in users]
    return {"data": {"users": shown, "pagination": pagination}}


@router.post("/users", status_code=201, response_model=None)
def create_user(workspace: Workspace, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """Add a team member. Without ``password`` one is generated and shown in this answer only;
    ``permissions`` (PermissionInputV1 items) default to none (Minimal Workspace Access)."""
    fields = body_object(body, {"email", "name", "password", "permissions"})
    permissions = PermissionStore(workspace)
    grants = permissions.grants_from_input(fields.get("permissions", []))
    given = fields.get("password")
    if given is not None and not isinstance(given, str):
        raise InvalidError("must be a string", "password")
    password = given if given is not None else generate_password()
    with workspace.atomic():
        user = UserStore(workspace).create(fields.get("email"), fields.get("name"), password)
        permissions.set("user", user.id, grants)
    data: dict[str, Any] = {"user": _user_json(user, grants)}
    if given is None:
        data["password"] = password
    return {"data": data}


UserId = Annotated[str, Path(alias="userId", description="The user's id.")]


@router.get("/users/{userId}", response_model=None)
def get_user(user_id: UserId, workspace: Workspace) -> dict[str, Any]:
    user = UserStore(workspace).require(user_id)
    grants = PermissionStore(workspace).grants("user", user.id)
    return {"data": {"user": _user_json(user, grants)}}


@router.delete("/users/{userId}", response_model=None)
def delete_user(user_id: UserId, workspace: Workspace) -> dict[str, Any]:
    UserStore(workspace).delete(user_id)
    return {"data": {"status": "SUCCESS"}}


@router.put("/users/{userId}/permissions", response_model=None)
def replace_user_permissions(
    user_id: UserId, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace the user's own permissions (its groups' stay) with PermissionInputV1 items."""
    user = UserStore(workspace).require(user_id)
    return _replace_permissions(workspace, "user", user.id, body)


@router.get("/users/{userId}/groups", response_model=None)
def list_user_groups(
    user_id: UserId, workspace: Workspace, count: Count = 200, cursor: Cursor = None
) -> dict[str, Any]:
    user = UserStore(workspace).require(user_id)
    groups, pagination = _page(GroupStore(workspace).groups_of(user.id), count, cursor)
    shown = [_group_json(g, ()) for g in groups]
    return {"data": {"userGroups": shown, "pagination": pagination}}


# --- invites ---------------------------------------------------------------------------------


def _invite_json(invite: InviteInfo, now: int) -> dict[str, Any]:
    return {
        "id": invite.id,
        "email": invite.email,
        "status": invite.status(now),
        "createdBy": invite.created_by,
        "createdAt": iso(invite.created_at),
        "expiresAt": iso(invite.expires_at),
        "permissions": permissions_json(invite.grants),
    }


@router.get("/invites", response_model=None)
def list_invites(workspace: Workspace, count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    """Invites not accepted yet: "pending", or "expired" (their links grant nothing)."""
    invites, pagination = _page(InviteStore(workspace).list(), count, cursor)
    now = workspace.now()
    return {"data": {"invites": [_invite_json(i, now) for i in invites], "pagination": pagination}}


@router.post("/invites", status_code=201, response_model=None)
def create_invite(
    workspace: Workspace, caller: Caller, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Invite ``email`` with ``permissions`` (PermissionInputV1 items; none: Minimal Workspace
    Access). The link's ``token`` and ``path`` (``/invite/<token>``) are in this answer only;
    inviting the same email again replaces its open invite."""
    fields = body_object(body, {"email", "permissions"})
    grants = PermissionStore(workspace).grants_from_input(fields.get("permissions", []))
    token, invite = InviteStore(workspace).create(
        fields.get("email"), grants, created_by=caller.email or caller.name
    )
    return {
        "data": {
            "invite": _invite_json(invite, workspace.now()),
            "token": token,
            "path": f"/invite/{token}",
        }
    }


@router.delete("/invites/{inviteId}", response_model=None)
def delete_invite(
    invite_id: Annotated[str, Path(alias="inviteId", description="The invite's id.")],
    workspace: Workspace,
) -> dict[str, Any]:
    """Revoke Invite: its link stops working."""
    InviteStore(workspace).delete(invite_id)
    return {"data": {"status": "SUCCESS"}}


# --- groups ----------------------------------------------------------------------------------

GroupId = Annotated[str, Path(alias="groupId", description="The group's id.")]


def _group_json(group: GroupInfo, grants: Sequence[Grant]) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "memberCount": group.member_count,
        "permissions": permissions_json(grants),
    }


@router.get("/groups", response_model=None)
def list_groups(workspace: Workspace, count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    permissions = PermissionStore(workspace)
    groups, pagination = _page(GroupStore(workspace).list(), count, cursor)
    shown = [_group_json(g, permissions.grants("group", g.id)) for g in groups]
    return {"data": {"userGroups": shown, "pagination": pagination}}


@router.post("/groups", status_code=201, response_model=None)
def create_group(workspace: Workspace, body: Annotated[Any, Body()]) -> dict[str, Any]:
    fields = body_object(body, {"name"})
    group = GroupStore(workspace).create(fields.get("name"))
    return {"data": {"userGroup": _group_json(group, ())}}


@router.get("/groups/{groupId}", response_model=None)
def get_group(group_id: GroupId, workspace: Workspace) -> dict[str, Any]:
    group = GroupStore(workspace).require(group_id)
    grants = PermissionStore(workspace).grants("group", group.id)
    return {"data": {"userGroup": _group_json(group, grants)}}


@router.patch("/groups/{groupId}", response_model=None)
def update_group(
    group_id: GroupId, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    fields = body_object(body, {"name"})
    group = GroupStore(workspace).rename(group_id, fields.get("name"))
    grants = PermissionStore(workspace).grants("group", group.id)
    return {"data": {"userGroup": _group_json(group, grants)}}


@router.delete("/groups/{groupId}", response_model=None)
def delete_group(group_id: GroupId, workspace: Workspace) -> dict[str, Any]:
    GroupStore(workspace).delete(group_id)
    return {"data": {"status": "SUCCESS"}}


@router.get("/groups/{groupId}/users", response_model=None)
def list_group_users(
    group_id: GroupId, workspace: Workspace, count: Count = 200, cursor: Cursor = None
) -> dict[str, Any]:
    members, pagination = _page(GroupStore(workspace).members(group_id), count, cursor)
    shown = [{"id": u.id, "name": u.name, "email": u.email} for u in members]
    return {"data": {"users": shown, "pagination": pagination}}


def _emails(body: object) -> list[Any]:
    fields = body_object(body, {"emails"})
    emails = fields.get("emails")
    if not isinstance(emails, list) or len(emails) > MAX_PAGE_SIZE:
        raise InvalidError(f"must be a list of at most {MAX_PAGE_SIZE} emails", "emails")
    return emails


@router.post("/groups/{groupId}/users", response_model=None)
def add_group_users(
    group_id: GroupId, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Add members by email: ``{"emails": [...]}``."""
    groups = GroupStore(workspace)
    groups.add_members(group_id, _emails(body))
    return {"data": {"userGroup": _group_json(groups.require(group_id), ())}}


@router.put("/groups/{groupId}/users", response_model=None)
def replace_group_users(
    group_id: GroupId, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Make these emails the group's only members."""
    groups = GroupStore(workspace)
    groups.add_members(group_id, _emails(body), replace=True)
    return {"data": {"userGroup": _group_json(groups.require(group_id), ())}}


@router.delete("/groups/{groupId}/users", response_model=None)
def remove_group_users(
    group_id: GroupId,
    workspace: Workspace,
    emails: Annotated[list[str], Query(description="The members' emails.")],
) -> dict[str, Any]:
    GroupStore(workspace).remove_members(group_id, emails)
    return {"data": {"status": "SUCCESS"}}


@router.put("/groups/{groupId}/permissions", response_model=None)
def replace_group_permissions(
    group_id: GroupId, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace the group's permissions with PermissionInputV1 items."""
    group = GroupStore(workspace).require(group_id)
    return _replace_permissions(workspace, "group", group.id, body)


def _replace_permissions(
    workspace: WorkspaceStore, holder: Holder, holder_id: str, body: Any
) -> dict[str, Any]:
    fields = body_object(body, {"permissions"})
    if "permissions" not in fields:
        raise InvalidError("is required", "permissions")
    permissions = PermissionStore(workspace)
    grants = permissions.grants_from_input(fields["permissions"])
    permissions.set(holder, holder_id, grants)
    return {"data": {"permissions": permissions_json(grants)}}


# --- tokens ----------------------------------------------------------------------------------


def _token_json(token: TokenInfo, grants: Sequence[Grant]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": token.id,
        "description": token.description,
        "piiAccess": token.pii_access,
        "createdBy": token.created_by,
        "createdAt": iso(token.created_at),
        "permissions": permissions_json(grants),
    }
    if token.last_used_at is not None:
        shown["lastUsedAt"] = iso(token.last_used_at)
    return shown


@router.get("/tokens", response_model=None)
def list_tokens(workspace: Workspace, count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    permissions = PermissionStore(workspace)
    tokens, pagination = _page(TokenStore(workspace).list(), count, cursor)
    shown = [_token_json(t, permissions.grants("token", t.id)) for t in tokens]
    return {"data": {"tokens": shown, "pagination": pagination}}


@router.post("/tokens", status_code=201, response_model=None)
def create_token(
    workspace: Workspace, caller: Caller, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """A Public API token with ``permissions`` (PermissionInputV1 items; an owner token holds
    ``workspace-owner`` on the WORKSPACE). Its plaintext is in this answer only."""
    fields = body_object(body, {"description", "permissions", "piiAccess"})
    pii = fields.get("piiAccess", False)
    if not isinstance(pii, bool):
        raise InvalidError("must be true or false", "piiAccess")
    permissions = PermissionStore(workspace)
    grants = permissions.grants_from_input(fields.get("permissions", []))
    with workspace.atomic():
        plaintext, token = TokenStore(workspace).create(
            fields.get("description"), created_by=caller.email or caller.name, pii_access=pii
        )
        permissions.set("token", token.id, grants)
    return {"data": {"token": {**_token_json(token, grants), "token": plaintext}}}


@router.delete("/tokens/{tokenId}", response_model=None)
def delete_token(
    token_id: Annotated[str, Path(alias="tokenId", description="The token's id.")],
    workspace: Workspace,
) -> dict[str, Any]:
    TokenStore(workspace).delete(token_id)
    return {"data": {"status": "SUCCESS"}}


# --- labels ----------------------------------------------------------------------------------


def _label_json(label: LabelInfo) -> dict[str, Any]:
    return {"key": label.key, "value": label.value, "description": label.description}


@router.get("/labels", response_model=None)
def list_labels(workspace: Workspace, count: Count = 200, cursor: Cursor = None) -> dict[str, Any]:
    labels, pagination = _page(LabelStore(workspace).list(), count, cursor)
    return {"data": {"labels": [_label_json(x) for x in labels], "pagination": pagination}}


@router.post("/labels", status_code=201, response_model=None)
def create_label(workspace: Workspace, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """``{"label": {key, value, description?}}``; key and value begin with a letter."""
    fields = body_object(body, {"label"})
    label = body_object(fields.get("label"), {"key", "value", "description"})
    description = label.get("description", "")
    if not isinstance(description, str):
        raise InvalidError("must be a string", "label.description")
    created = LabelStore(workspace).create(label.get("key"), label.get("value"), description)
    return {"data": {"label": _label_json(created)}}


@router.delete("/labels/{key}/{value}", response_model=None)
def delete_label(key: str, value: str, workspace: Workspace) -> dict[str, Any]:
    """Refused while a source, a space or a permission uses the label."""
    LabelStore(workspace).delete(key, value)
    return {"data": {"status": "SUCCESS"}}


IdOrName = Annotated[str, Path(alias="idOrName", description="The resource's id or name.")]


@router.put("/sources/{idOrName}/labels", response_model=None)
def replace_source_labels(
    id_or_name: IdOrName, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace the source's labels: ``{"labels": [{key, value}]}``, one value per key."""
    return _replace_labels(workspace, "SOURCE", id_or_name, body)


@router.put("/spaces/{idOrName}/labels", response_model=None)
def replace_space_labels(
    id_or_name: IdOrName, workspace: Workspace, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace the space's labels: ``{"labels": [{key, value}]}``, one value per key."""
    return _replace_labels(workspace, "SPACE", id_or_name, body)


def _replace_labels(
    workspace: WorkspaceStore, type_: LabeledType, id_or_name: str, body: object
) -> dict[str, Any]:
    fields = body_object(body, {"labels"})
    raw = fields.get("labels")
    if not isinstance(raw, list):
        raise InvalidError("must be a list of {key, value}", "labels")
    labels = []
    for i, item in enumerate(raw):
        label = body_object(item, {"key", "value", "description"})
        key, value = label.get("key"), label.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidError("key and value must be strings", f"labels.{i}")
        labels.append((key, value))
    resource = lookup(workspace.engine, type_, id_or_name)
    if resource is None:
        raise NotFoundError(f"no {type_.lower()} has the id or name {id_or_name!r}")
    kept = LabelStore(workspace).set_labels(type_, resource.id, labels)
    return {"data": {"labels": [{"key": k, "value": v} for k, v in kept]}}
