"""``/api/v1/sources``: sources and their write keys, in the style of Segment's Public API.

Bodies and answers use the Public API's camelCase and ``{"data": …}`` envelope; lists page
with ``pagination.count`` / ``pagination.cursor``. A source is addressed by id or by name
(use the id when the name contains ``/``). The rules themselves live in the workspace store,
shared with ``headwater apply``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableSources
from headwater.api.changes import NoNulls
from headwater.api.errors import ApiError
from headwater.protocols.plans import PlanStore
from headwater.store.workspace import (
    DEFAULT_PAGE_SIZE,
    FIRST_PAGE,
    MAX_PAGE_SIZE,
    UNSET,
    SourceInfo,
    WorkspaceStore,
)
from headwater.timestamps import format_timestamp

router = APIRouter(prefix="/sources", tags=["sources"])

DEFAULT_GRACE_SECONDS = 86400
MAX_GRACE_SECONDS = 90 * 86400

# Store field names → the names API callers sent.
_FIELDS = {
    "write_key": "writeKey",
    "grace_seconds": "graceSeconds",
    "cursor": "pagination.cursor",
    "count": "pagination.count",
}


def api_field(field: str | None) -> str | None:
    return None if field is None else _FIELDS.get(field, field)


def store_of(request: Request) -> WorkspaceStore:
    """FastAPI dependency: the application's workspace store."""
    store: WorkspaceStore = request.app.state.workspace_store
    return store


def source_json(source: SourceInfo) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "slug": source.slug,
        "workspaceId": source.workspace_id,
        "enabled": source.enabled,
        "writeKeys": list(source.write_keys),
        "settings": dict(source.settings),
        "createdAt": iso(source.created_at),
        "updatedAt": iso(source.updated_at),
    }


def iso(epoch: int) -> str:
    """An epoch-seconds time as the API shows times."""
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


# --- bodies (and answer shapes, for the OpenAPI document) ------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateSourceBody(_Body):
    name: StrictStr
    slug: StrictStr | None = None
    enabled: StrictBool = True
    settings: dict[str, Any] | None = None
    write_key: StrictStr | None = Field(
        default=None, description="Leave out to get a random 32-character key."
    )


class UpdateSourceBody(_Body, NoNulls):
    # Leaving a field out keeps it; null is refused (there is no "no name").
    name: StrictStr | None = None
    slug: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = Field(default=None, description="Replaces the settings.")


class RotateWriteKeyBody(_Body):
    grace_seconds: StrictInt = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the current keys keep working (0: they stop now).",
    )
    write_key: StrictStr | None = Field(
        default=None, description="The new key; leave out to get a random one."
    )


class SourceOut(BaseModel):
    id: str
    name: str
    slug: str
    workspaceId: str
    enabled: bool
    writeKeys: list[str]
    settings: dict[str, Any]
    createdAt: str
    updatedAt: str


class _SourceData(BaseModel):
    source: SourceOut


class SourceEnvelope(BaseModel):
    data: _SourceData


class PaginationOut(BaseModel):
    current: str
    next: str | None = Field(default=None, description="Absent on the last page.")
    previous: str | None = Field(default=None, description="Absent on the first page.")
    totalEntries: int


class _SourcesData(BaseModel):
    sources: list[SourceOut]
    pagination: PaginationOut


class SourcesEnvelope(BaseModel):
    data: _SourcesData


class _WriteKeysData(BaseModel):
    writeKey: str
    writeKeys: list[str]
    expiresAt: dict[str, str] = Field(description="When each key in its grace period stops.")
    source: SourceOut


class WriteKeysEnvelope(BaseModel):
    data: _WriteKeysData


class _StatusData(BaseModel):
    status: str


class StatusEnvelope(BaseModel):
    data: _StatusData


# --- routes ----------------------------------------------------------------------------------

IdOrName = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]
Store = Annotated[WorkspaceStore, Depends(store_of)]


def _pagination(
    request: Request,
    count: Annotated[
        int | None,
        Query(
            alias="pagination.count",
            ge=1,
            le=MAX_PAGE_SIZE,
            description=f"Page size, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(alias="pagination.cursor", description="From a previous page's answer."),
    ] = None,
) -> tuple[str | None, int]:
    # Some clients send `pagination[count]`; accept that spelling too.
    query = request.query_params
    if count is None and "pagination[count]" in query:
        raw = query["pagination[count]"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise ApiError(
                422,
                "validation",
                f"pagination.count: must be a whole number from 1 to {MAX_PAGE_SIZE}",
                "pagination.count",
            )
        count = int(raw)
    if cursor is None:
        cursor = query.get("pagination[cursor]")
    return cursor or None, count or DEFAULT_PAGE_SIZE


@router.get("", response_model=None, responses={200: {"model": SourcesEnvelope}})
def list_sources(
    page: Annotated[tuple[str | None, int], Depends(_pagination)],
    store: Store,
    only: ReadableSources,
) -> dict[str, Any]:
    cursor, count = page
    sources, next_cursor, total = store.list_sources(cursor=cursor, count=count, only=only)
    pagination: dict[str, Any] = {"current": cursor or FIRST_PAGE}
    if next_cursor is not None:
        pagination["next"] = next_cursor
    previous = store.previous_cursor(cursor, count, only)
    if previous is not None:
        pagination["previous"] = previous
    pagination["totalEntries"] = total
    return {"data": {"sources": [source_json(s) for s in sources], "pagination": pagination}}


@router.post("", status_code=201, response_model=None, responses={201: {"model": SourceEnvelope}})
def create_source(body: CreateSourceBody, store: Store) -> dict[str, Any]:
    source = store.create_source(
        body.name,
        slug=body.slug,
        write_key=body.write_key,
        enabled=body.enabled,
        settings=body.settings,
    )
    return {"data": {"source": source_json(source)}}


@router.get("/{idOrName}", response_model=None, responses={200: {"model": SourceEnvelope}})
def get_source(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    source = store.get_source(id_or_name)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")
    return {"data": {"source": source_json(source)}}


@router.patch("/{idOrName}", response_model=None, responses={200: {"model": SourceEnvelope}})
def update_source(
    body: UpdateSourceBody,
    id_or_name: IdOrName,
    store: Store,
) -> dict[str, Any]:
    source = store.update_source(
        id_or_name,
        name=body.name if body.name is not None else UNSET,
        slug=body.slug if body.slug is not None else UNSET,
        enabled=body.enabled if body.enabled is not None else UNSET,
        settings=body.settings if body.settings is not None else UNSET,
    )
    return {"data": {"source": source_json(source)}}


@router.delete("/{idOrName}", response_model=None, responses={200: {"model": StatusEnvelope}})
def delete_source(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    store.delete_source(id_or_name)
    return {"data": {"status": "SUCCESS"}}


@router.post(
    "/{idOrName}/write-keys", response_model=None, responses={200: {"model": WriteKeysEnvelope}}
)
def rotate_write_key(
    id_or_name: IdOrName,
    store: Store,
    body: RotateWriteKeyBody | None = None,
) -> dict[str, Any]:
    """Add a write key; the current ones keep working for ``graceSeconds`` (default a day)."""
    body = body or RotateWriteKeyBody()
    key, source = store.rotate_write_key(id_or_name, body.grace_seconds, new_key=body.write_key)
    expiring = {
        k.key: iso(k.expires_at) for k in store.write_keys(source.id) if k.expires_at is not None
    }
    return {
        "data": {
            "writeKey": key,
            "writeKeys": list(source.write_keys),
            "expiresAt": expiring,
            "source": source_json(source),
        }
    }


@router.delete(
    "/{idOrName}/write-keys/{key}",
    response_model=None,
    responses={200: {"model": SourceEnvelope}},
)
def revoke_write_key(key: str, id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """Stop a write key now (a source keeps at least one: rotate to replace the last)."""
    source = store.revoke_write_key(id_or_name, key)
    return {"data": {"source": source_json(source)}}


# --- schema settings (Protocols) -------------------------------------------------------------


def _schema_settings_json(source_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"sourceId": source_id, "settings": settings}}


@router.get("/{idOrName}/settings", response_model=None)
def get_schema_settings(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """The source's schema settings (Protocols), as Segment's Public API shows them."""
    source = store.get_source(id_or_name)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")
    return _schema_settings_json(source.id, PlanStore(store).schema_settings(source.id))


@router.patch("/{idOrName}/settings", response_model=None)
def update_schema_settings(
    id_or_name: IdOrName, store: Store, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Segment's `PATCH /sources/{id}/settings`: `track`, `identify` and `group` change field
    by field; a forwarding field left out turns that forwarding off."""
    if not isinstance(body, dict):
        raise ApiError(422, "validation", "the body must be a JSON object")
    source = store.get_source(id_or_name)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")
    settings = PlanStore(store).update_schema_settings(source.id, body)
    return _schema_settings_json(source.id, settings)
