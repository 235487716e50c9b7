"""``/api/v1/spaces/{idOrName}/subscription-groups`` and ``…/messaging-subscriptions/batch``:
Engage's user subscriptions (spec/unify-engage.md §18).

A subscription group is addressed by its id (``sgr_…``) or its name (any case); the rules are
``headwater.unify.subscription_groups``', shared with ``headwater apply``. Deleting a group
keeps its users' preferences (creating it again brings them back).

``POST …/messaging-subscriptions/batch`` is the Public API's "Batch Query Messaging
Subscriptions for Space": ``{"subscriptions": [{"key", "type"}]}`` (at most 1,000), answered
with each vector's state in ``successes`` (``status`` left out when it has none, its groups,
``updatedAt``) and each key that is no contact in ``failures`` with its code.

``PUT …/messaging-subscriptions`` is its "Replace Messaging Subscriptions in Spaces", the
synchronous write: ``{"subscriptions": [{"key", "type", "status", "groups": [{"name",
"status"}]}]}`` (at most 1,000), each item applied at once, whole or not at all, with an
Identify's rules (``headwater.unify.subscription_replace``); the answer gives each applied
item's state as the batch query does in ``successes``, and each refused one in ``failures``
with its codes. Otherwise states are set by identity resolution, from an Identify's
``context.messaging_subscriptions`` or a subscription CSV.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from headwater import reasons
from headwater.api.errors import ApiError
from headwater.api.sources import iso, store_of
from headwater.api.spaces import SUCCESS, Pagination, SpaceId, Spaces
from headwater.api.tracking_plans import _page_body
from headwater.errors import InvalidError
from headwater.protocols.plans import page_of
from headwater.store.database import write_transaction
from headwater.store.workspace import UNSET, WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.subscription_groups import SubscriptionGroup, SubscriptionGroups, live_groups
from headwater.unify.subscription_replace import replace
from headwater.unify.subscriptions import (
    MESSAGES,
    Channel,
    State,
    contact_key,
    key_error,
    parse_channel,
    read_states,
    render_status,
)

router = APIRouter(prefix="/spaces", tags=["spaces"])

GroupId = Annotated[str, Path(alias="groupIdOrName", description="The group's id or name.")]
MAX_BATCH = 1_000


def groups_of(request: Request) -> SubscriptionGroups:
    """FastAPI dependency: the subscription groups on the application's workspace store."""
    workspace: WorkspaceStore = store_of(request)
    return SubscriptionGroups(workspace)


Groups = Annotated[SubscriptionGroups, Depends(groups_of)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateGroupBody(_Body):
    name: StrictStr = Field(description="At most 75 characters; see the naming conventions.")
    description: StrictStr = Field(default="", description="At most 500 characters.")


class UpdateGroupBody(_Body):
    name: StrictStr | None = None
    description: StrictStr | None = None


class VectorBody(_Body):
    key: StrictStr = Field(description="The email address or phone number.")
    type: StrictStr = Field(description="EMAIL, SMS or WHATSAPP.")


class BatchQueryBody(_Body):
    subscriptions: list[VectorBody] = Field(description=f"At most {MAX_BATCH}.")


class GroupStatusBody(_Body):
    name: StrictStr = Field(description="The subscription group's name.")
    status: StrictStr = Field(description="SUBSCRIBED, UNSUBSCRIBED or DID_NOT_SUBSCRIBE.")


class SubscriptionBody(_Body):
    key: StrictStr = Field(description="The email address or phone number.")
    type: StrictStr = Field(description="EMAIL, SMS or WHATSAPP.")
    status: StrictStr | None = Field(
        default=None, description="SUBSCRIBED, UNSUBSCRIBED or DID_NOT_SUBSCRIBE."
    )
    groups: list[GroupStatusBody] | None = Field(default=None, description="EMAIL only.")


class ReplaceBody(_Body):
    subscriptions: list[SubscriptionBody] = Field(description=f"At most {MAX_BATCH}.")


def group_json(group: SubscriptionGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "createdAt": iso(group.created_at),
        "updatedAt": iso(group.updated_at),
    }


def _millis(at: int) -> str:
    return format_timestamp(datetime.fromtimestamp(at / 1000, UTC))


# --- subscription groups -------------------------------------------------------------------------


@router.get("/{idOrName}/subscription-groups", response_model=None)
def list_groups(space_id: SpaceId, page: Pagination, groups: Groups) -> dict[str, Any]:
    """The space's email subscription groups, by name (at most 25)."""
    cursor, count = page
    found = page_of(groups.list(space_id), cursor, count)
    return _page_body("subscriptionGroups", found, cursor, group_json)


@router.post("/{idOrName}/subscription-groups", status_code=201, response_model=None)
def create_group(space_id: SpaceId, body: CreateGroupBody, groups: Groups) -> dict[str, Any]:
    """A new group (a deleted one of that name comes back with its users' preferences)."""
    group = groups.create(space_id, body.name, body.description)
    return {"data": {"subscriptionGroup": group_json(group)}}


@router.get("/{idOrName}/subscription-groups/{groupIdOrName}", response_model=None)
def get_group(space_id: SpaceId, group_id: GroupId, groups: Groups) -> dict[str, Any]:
    return {"data": {"subscriptionGroup": group_json(groups.require(space_id, group_id))}}


@router.patch("/{idOrName}/subscription-groups/{groupIdOrName}", response_model=None)
def update_group(
    space_id: SpaceId, group_id: GroupId, body: UpdateGroupBody, groups: Groups
) -> dict[str, Any]:
    """Rename a group (its users' states stay with it) or change its description."""
    given = body.model_fields_set
    for name in ("name", "description"):
        if name in given and getattr(body, name) is None:
            raise ApiError(
                422, "validation", f"{name}: must not be null (leave it out to keep it)", name
            )
    group = groups.update(
        space_id,
        group_id,
        name=body.name if body.name is not None else UNSET,
        description=body.description if body.description is not None else UNSET,
    )
    return {"data": {"subscriptionGroup": group_json(group)}}


@router.delete("/{idOrName}/subscription-groups/{groupIdOrName}", response_model=None)
def delete_group(space_id: SpaceId, group_id: GroupId, groups: Groups) -> dict[str, Any]:
    """The group goes; its users' preferences are kept."""
    groups.delete(space_id, group_id)
    return SUCCESS


# --- states ------------------------------------------------------------------------------------


@router.post("/{idOrName}/messaging-subscriptions/batch", response_model=None)
def batch_query(
    request: Request, space_id: SpaceId, body: BatchQueryBody, spaces: Spaces
) -> dict[str, Any]:
    """The subscription states of these contact vectors."""
    space = spaces.require(space_id)
    if len(body.subscriptions) > MAX_BATCH:
        raise ApiError(
            422, "validation", f"subscriptions: at most {MAX_BATCH} a request", "subscriptions"
        )
    asked: list[tuple[VectorBody, Channel, str]] = []
    failures: list[dict[str, Any]] = []
    for vector in body.subscriptions:
        try:
            channel = parse_channel(vector.type)
        except InvalidError as exc:
            code = reasons.INVALID_SUBSCRIPTION_TYPE
            failures.append(_failure(vector, code, exc.message))
            continue
        try:
            asked.append((vector, channel, contact_key(channel, vector.key)))
        except InvalidError:
            code = key_error(channel)
            failures.append(_failure(vector, code, MESSAGES[code]))
    with request.app.state.engine.connect() as conn:
        states = read_states(conn, space.id, [(channel, key) for _, channel, key in asked])
        groups = {g.id: g for g in live_groups(conn, space.id).values()}
    successes = [
        _state_json(vector.key, states[(channel, key)], groups) for vector, channel, key in asked
    ]
    return {"data": {"successes": successes, "failures": failures, "errors": []}}


@router.put("/{idOrName}/messaging-subscriptions", response_model=None)
def replace_states(
    request: Request, space_id: SpaceId, body: ReplaceBody, spaces: Spaces
) -> dict[str, Any]:
    """Set these contact vectors' states now; the states written, or why not."""
    space = spaces.require(space_id)
    if len(body.subscriptions) > MAX_BATCH:
        raise ApiError(
            422, "validation", f"subscriptions: at most {MAX_BATCH} a request", "subscriptions"
        )
    clock: Callable[[], float] = getattr(request.app.state, "clock", time.time)
    items = [item.model_dump(exclude_none=True) for item in body.subscriptions]
    with write_transaction(request.app.state.engine) as conn:
        outcomes = replace(conn, space.id, items, round(clock() * 1000))
        groups = {g.id: g for g in live_groups(conn, space.id).values()}
    successes, failures = [], []
    for outcome in outcomes:
        sent = outcome.sent
        if outcome.state is not None:
            successes.append(_state_json(sent["key"], outcome.state, groups))
            continue
        errors = [{"code": r.code, "message": MESSAGES[r.code]} for r in outcome.refused]
        failures.append({"key": sent["key"], "type": sent["type"], "errors": errors})
    return {"data": {"successes": successes, "failures": failures}}


def _state_json(key: str, state: State, groups: Mapping[str, SubscriptionGroup]) -> dict[str, Any]:
    """A vector's state as the Public API gives it (``status`` left out when it has none)."""
    found: dict[str, Any] = {"key": key, "type": state.channel}
    if state.status is not None and state.updated_at is not None:
        found["status"] = render_status(state.status, "api")
        found["updatedAt"] = _millis(state.updated_at)
    held = [h for h in state.groups.values() if h.group_id in groups]
    if state.channel == "EMAIL":
        found["groups"] = [
            {
                "id": h.group_id,
                "name": groups[h.group_id].name,
                "status": render_status(h.status, "api"),
                "updatedAt": _millis(h.updated_at),
            }
            for h in sorted(held, key=lambda h: groups[h.group_id].name)
        ]
    return found


def _failure(vector: VectorBody, code: str, message: str) -> dict[str, Any]:
    return {"key": vector.key, "type": vector.type, "errors": [{"code": code, "message": message}]}
