"""``/api/v1/spaces``: Unify spaces, their sources, Profile API access tokens and Profiles Sync.

A space is addressed by its id (``spa_…``) or its name, as the Profile API's paths will be.
An access token is shown once, in the answer of the ``POST`` that makes it; afterwards only its
name and creation time are ever shown, and ``DELETE …/access-tokens/{name}`` revokes it at once.
The rules live in ``headwater.unify.spaces``, shared with ``headwater apply``.

``…/identity-settings`` is the space's identity settings: every identifier with all its fields
(``GET``'s answer is a ``PUT`` body that changes nothing); a ``PUT`` replaces the whole list, a
field left out of an identifier taking Segment's preset for its type. ``…/import`` copies
another space's settings. Changes apply to events resolved afterwards (A19).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from headwater.api.auth import ReadableSpaces
from headwater.api.errors import ApiError
from headwater.api.sources import _pagination, iso, source_json, store_of
from headwater.api.tracking_plans import _page_body
from headwater.protocols.plans import page_of
from headwater.store.workspace import UNSET, WorkspaceStore
from headwater.unify.settings import IdentitySettings, entry_of, settings_of
from headwater.unify.space_deletion import PENDING, SpaceDeletion, SpaceDeletions
from headwater.unify.spaces import AccessToken, SpaceInfo, SpaceStore

router = APIRouter(prefix="/spaces", tags=["spaces"])

SpaceId = Annotated[str, Path(alias="idOrName", description="The space's id or name.")]
Pagination = Annotated[tuple[str | None, int], Depends(_pagination)]
SUCCESS = {"data": {"status": "SUCCESS"}}


def spaces_of(request: Request) -> SpaceStore:
    """FastAPI dependency: the space store on the application's workspace store."""
    workspace: WorkspaceStore = store_of(request)
    return SpaceStore(workspace)


Spaces = Annotated[SpaceStore, Depends(spaces_of)]


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProfilesSyncBody(_Body):
    warehouse: StrictStr = Field(description="The warehouse's id or name.")
    schema_name: StrictStr | None = Field(
        default=None, alias="schema", description="Leave out for the space's slug."
    )


class CreateSpaceBody(_Body):
    name: StrictStr
    sourceIds: list[StrictStr] = Field(
        default_factory=list, description="The sources to connect, by id or name."
    )
    profilesSync: ProfilesSyncBody | None = None


class UpdateSpaceBody(_Body):
    name: StrictStr | None = None
    sourceIds: list[StrictStr] | None = Field(
        default=None, description="The complete set of connected sources, by id or name."
    )
    profilesSync: ProfilesSyncBody | None = Field(
        default=None, description="null turns Profiles Sync off."
    )


class ConnectSourceBody(_Body):
    sourceId: StrictStr = Field(description="The source's id or name.")


class CreateAccessTokenBody(_Body):
    name: StrictStr = Field(description="For example marketing_site/production.")
    piiAccess: StrictBool = Field(
        default=True,
        description="False: the Profile API masks Red and Yellow values (Privacy Portal).",
    )


class BlockedValueBody(_Body):
    value: StrictStr
    regex: StrictBool = Field(default=False, description="A pattern searched for in the value.")


class IdentifierBody(_Body):
    type: StrictStr = Field(description="Lowercase: user_id, email, … or a custom type.")
    limit: StrictInt | None = Field(
        default=None, description="Values per profile; left out: 1 for user_id, else 5."
    )
    period: Literal["ever", "weekly", "monthly", "annually"] | None = Field(
        default=None, description="The period the limit counts over; left out: ever."
    )
    priority: StrictInt | None = Field(
        default=None, description="1 ranks first; left out: after the ranked types."
    )
    blocked: list[BlockedValueBody] = Field(default_factory=list)
    key: StrictStr | None = Field(
        default=None, description="A custom identifier's trait or property key."
    )
    collection: Literal["users", "accounts"] | None = None


class IdentitySettingsBody(_Body):
    identifiers: list[IdentifierBody] = Field(description="The complete list.")


class ImportIdentityBody(_Body):
    fromSpace: StrictStr = Field(description="The id or name of the space to copy from.")


# --- answers ---------------------------------------------------------------------------------


def space_json(space: SpaceInfo) -> dict[str, Any]:
    sync = space.profiles_sync
    return {
        "id": space.id,
        "name": space.name,
        "slug": space.slug,
        "sourceIds": list(space.source_ids),
        "profilesSync": (
            None
            if sync is None
            else {
                "warehouseId": sync.warehouse_id,
                "warehouse": sync.warehouse_name,
                "schema": sync.schema,
            }
        ),
        "createdAt": iso(space.created_at),
        "updatedAt": iso(space.updated_at),
    }


def identity_json(space: SpaceInfo) -> dict[str, Any]:
    return {
        "data": {
            "spaceId": space.id,
            "identitySettings": {
                "identifiers": [entry_of(s, complete=True) for s in space.identity.identifiers]
            },
        }
    }


def _settings(body: IdentitySettingsBody) -> IdentitySettings:
    return settings_of([entry.model_dump() for entry in body.identifiers])


def token_json(token: AccessToken) -> dict[str, Any]:
    return {"name": token.name, "createdAt": iso(token.created_at), "piiAccess": token.pii_access}


def _sync(body: ProfilesSyncBody | None) -> tuple[str, str | None] | None:
    return None if body is None else (body.warehouse, body.schema_name)


# --- spaces ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_spaces(page: Pagination, spaces: Spaces, only: ReadableSpaces) -> dict[str, Any]:
    cursor, count = page
    listed = [s for s in spaces.list() if only is None or s.id in only]
    return _page_body("spaces", page_of(listed, cursor, count), cursor, space_json)


@router.post("", status_code=201, response_model=None)
def create_space(body: CreateSpaceBody, spaces: Spaces) -> dict[str, Any]:
    space = spaces.create(body.name, sources=body.sourceIds, profiles_sync=_sync(body.profilesSync))
    return {"data": {"space": space_json(space)}}


@router.get("/{idOrName}", response_model=None)
def get_space(space_id: SpaceId, spaces: Spaces) -> dict[str, Any]:
    return {"data": {"space": space_json(spaces.require(space_id))}}


@router.patch("/{idOrName}", response_model=None)
def update_space(space_id: SpaceId, body: UpdateSpaceBody, spaces: Spaces) -> dict[str, Any]:
    given = body.model_fields_set
    for name in ("name", "sourceIds"):
        if name in given and getattr(body, name) is None:
            raise ApiError(
                422, "validation", f"{name}: must not be null (leave it out to keep it)", name
            )
    space = spaces.update(
        space_id,
        name=body.name if body.name is not None else UNSET,
        sources=body.sourceIds if body.sourceIds is not None else UNSET,
        profiles_sync=_sync(body.profilesSync) if "profilesSync" in given else UNSET,
    )
    return {"data": {"space": space_json(space)}}


def _deletions(request: Request) -> SpaceDeletions:
    return SpaceDeletions(store_of(request), clock=request.app.state.clock)


def _deletion_json(deletion: SpaceDeletion, now: float) -> dict[str, Any]:
    return {
        "id": deletion.id,
        "spaceId": deletion.space_id,
        "space": deletion.space_name,
        "status": deletion.status,
        "cancellable": deletion.status == PENDING and now < deletion.starts_at,
        "requestedAt": iso(int(deletion.requested_at)),
        "startsAt": iso(int(deletion.starts_at)),
        "cancelledAt": None if deletion.cancelled_at is None else iso(int(deletion.cancelled_at)),
        "finishedAt": None if deletion.finished_at is None else iso(int(deletion.finished_at)),
    }


@router.delete("/{idOrName}", response_model=None)
def delete_space(space_id: SpaceId, request: Request) -> dict[str, Any]:
    """Delete the space five calendar days from now (§11): until then it works as before and
    `DELETE …/deletion` cancels; then its profiles, graph and Engage state go (not the data
    at its Engage destinations)."""
    deletion = _deletions(request).request(space_id)
    return {
        "data": {
            "status": "SUCCESS",
            "deletion": _deletion_json(deletion, request.app.state.clock()),
        }
    }


@router.get("/{idOrName}/deletion", response_model=None)
def get_space_deletion(space_id: SpaceId, request: Request) -> dict[str, Any]:
    """The space's latest deletion, or null."""
    deletion = _deletions(request).latest(space_id)
    now = request.app.state.clock()
    return {"data": {"deletion": None if deletion is None else _deletion_json(deletion, now)}}


@router.delete("/{idOrName}/deletion", response_model=None)
def cancel_space_deletion(space_id: SpaceId, request: Request) -> dict[str, Any]:
    """Cancel the space's deletion, within the five days ("Cancel deletion")."""
    deletion = _deletions(request).cancel(space_id)
    return {"data": {"deletion": _deletion_json(deletion, request.app.state.clock())}}


# --- sources ---------------------------------------------------------------------------------


@router.get("/{idOrName}/sources", response_model=None)
def list_sources(space_id: SpaceId, page: Pagination, spaces: Spaces) -> dict[str, Any]:
    cursor, count = page
    return _page_body(
        "sources", page_of(spaces.sources(space_id), cursor, count), cursor, source_json
    )


@router.post("/{idOrName}/sources", response_model=None)
def connect_source(space_id: SpaceId, body: ConnectSourceBody, spaces: Spaces) -> dict[str, Any]:
    """Connect a source (one already connected stays connected)."""
    spaces.connect_source(space_id, body.sourceId)
    return {"data": {"space": space_json(spaces.require(space_id))}}


@router.delete("/{idOrName}/sources", response_model=None)
def disconnect_source(
    space_id: SpaceId,
    spaces: Spaces,
    source_id: Annotated[str, Query(alias="sourceId", description="The source's id or name.")],
) -> dict[str, Any]:
    spaces.disconnect_source(space_id, source_id)
    return SUCCESS


# --- identity settings -----------------------------------------------------------------------


@router.get("/{idOrName}/identity-settings", response_model=None)
def get_identity_settings(space_id: SpaceId, spaces: Spaces) -> dict[str, Any]:
    """Every identifier of the space with all its fields (Segment's 11 defaults until set)."""
    return identity_json(spaces.require(space_id))


@router.put("/{idOrName}/identity-settings", response_model=None)
def put_identity_settings(
    space_id: SpaceId, body: IdentitySettingsBody, spaces: Spaces
) -> dict[str, Any]:
    """Replace the identity settings; events resolved from now on use them."""
    return identity_json(spaces.set_identity(space_id, _settings(body)))


@router.post("/{idOrName}/identity-settings/import", response_model=None)
def import_identity_settings(
    space_id: SpaceId, body: ImportIdentityBody, spaces: Spaces
) -> dict[str, Any]:
    """Copy another space's identity settings to this one (a copy: later changes to the other
    space do not follow)."""
    return identity_json(spaces.import_identity(space_id, body.fromSpace))


# --- access tokens ---------------------------------------------------------------------------


@router.get("/{idOrName}/access-tokens", response_model=None)
def list_access_tokens(space_id: SpaceId, page: Pagination, spaces: Spaces) -> dict[str, Any]:
    """The space's Profile API tokens: names and creation times, never the tokens."""
    cursor, count = page
    found = page_of(spaces.access_tokens(space_id), cursor, count)
    return _page_body("accessTokens", found, cursor, token_json)


@router.post("/{idOrName}/access-tokens", status_code=201, response_model=None)
def create_access_token(
    space_id: SpaceId, body: CreateAccessTokenBody, spaces: Spaces
) -> dict[str, Any]:
    """A new token, generated: this answer is the only time it is shown."""
    token, made = spaces.create_access_token(space_id, body.name, pii_access=body.piiAccess)
    return {"data": {"accessToken": {**token_json(made), "token": token}}}


@router.delete("/{idOrName}/access-tokens/{tokenName:path}", response_model=None)
def revoke_access_token(
    space_id: SpaceId,
    spaces: Spaces,
    token_name: Annotated[str, Path(alias="tokenName", description="The token's name.")],
) -> dict[str, Any]:
    """The token stops working now."""
    spaces.revoke_access_token(space_id, token_name)
    return SUCCESS
