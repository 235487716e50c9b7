"""``/segment/v1/functions``: Segment's Functions operations on the function store.

The same functions as ``/api/v1/functions`` (same store: names, code checks, the workspace's
limit, versions), in Segment's shapes: ``FunctionV1`` with ``displayName`` and
``resourceType`` (``SOURCE``, ``DESTINATION``, ``INSERT_DESTINATION``), settings as
``FunctionSettingV1`` (``sensitive``, ``STRING`` … ``TEXT_MAP``), versions as Segment's
``Version`` with string ids ``"1"``, ``"2"``…. As when one saves in Segment's editor, a
``code`` change is deployed at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableFunctions
from headwater.api.errors import ApiError
from headwater.api.functions import Store
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.sources import iso
from headwater.functions.store import MAX_VERSION, FunctionInfo, FunctionStore, FunctionVersion
from headwater.store.workspace import UNSET

router = APIRouter(prefix="/functions", tags=["segment functions"])

FunctionId = Annotated[str, Path(alias="functionId", description="The function's id or name.")]
Pagination = Annotated[Page, Depends(pagination)]

RESOURCE_TYPES = {"SOURCE": "source", "DESTINATION": "destination", "INSERT_DESTINATION": "insert"}
_KINDS = {kind: resource for resource, kind in RESOURCE_TYPES.items()}
_SETTING_TYPES = {"STRING": "string", "BOOLEAN": "boolean", "ARRAY": "array", "TEXT_MAP": "map"}
_SEGMENT_SETTING_TYPES = {ours: theirs for theirs, ours in _SETTING_TYPES.items()}


def _kind(resource_type: str) -> str:
    kind = RESOURCE_TYPES.get(resource_type)
    if kind is None:
        raise ApiError(
            422,
            "validation",
            f"resourceType: one of {', '.join(RESOURCE_TYPES)} (Headwater has no "
            f"{resource_type[:40]!r} functions)",
            "resourceType",
        )
    return kind


def _settings_in(raw: list[Any]) -> list[Any]:
    """Segment's ``FunctionSettingV1`` as the store's declaration; what is not one is left for
    the store to refuse, naming the setting."""
    out: list[Any] = []
    for item in raw:
        if isinstance(item, dict):
            item = {("secret" if k == "sensitive" else k): v for k, v in item.items()}
            if isinstance(item.get("type"), str):
                item["type"] = _SETTING_TYPES.get(item["type"], item["type"])
        out.append(item)
    return out


def function_json(function: FunctionInfo, code: str | None) -> dict[str, Any]:
    """Segment's ``FunctionV1``; a destination function's ``catalogId`` is the ``metadataId``
    that creates an instance of it."""
    shown: dict[str, Any] = {
        "id": function.id,
        "workspaceId": function.workspace_id,
        "resourceType": _KINDS[function.kind],
        "displayName": function.name,
        "description": function.description,
        "settings": [
            {
                "name": s.name,
                "label": s.label,
                "description": s.description,
                "type": _SEGMENT_SETTING_TYPES.get(s.type, s.type.upper()),
                "required": s.required,
                "sensitive": s.secret,
            }
            for s in function.settings
        ],
        "createdAt": iso(function.created_at),
        "isLatestVersion": function.deployed_version == function.latest_version,
    }
    if function.kind == "destination":
        shown["catalogId"] = function.destination_type
    if code is not None:
        shown["code"] = code
    return shown


def _with_code(store: FunctionStore, function: FunctionInfo) -> dict[str, Any]:
    return function_json(function, store.version(function.id, function.latest_version).code)


def _version_json(function: FunctionInfo, version: FunctionVersion) -> dict[str, Any]:
    """Segment's ``Version``."""
    return {
        "id": str(version.version),
        "code": version.code,
        "isDeployed": version.version == function.deployed_version,
        "createdAt": iso(version.created_at),
    }


def _version_number(version_id: str) -> int:
    """A version id is its number; anything else names no version."""
    usable = version_id.isascii() and version_id.isdigit()
    if not usable or not 1 <= int(version_id) <= MAX_VERSION:
        raise ApiError(404, "not_found", f"no version {version_id[:40]!r}: versions are 1, 2, …")
    return int(version_id)


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateFunctionBody(_Body):
    """Segment's ``CreateFunctionV1Input`` (``logoUrl`` is taken and not kept)."""

    code: StrictStr
    settings: list[Any] = []
    display_name: StrictStr
    logo_url: StrictStr | None = None
    resource_type: StrictStr
    description: StrictStr = ""


class UpdateFunctionBody(_Body):
    """Segment's ``UpdateFunctionV1Input``: what is left out (or null) is kept."""

    code: StrictStr | None = None
    settings: list[Any] | None = None
    display_name: StrictStr | None = None
    logo_url: StrictStr | None = None
    description: StrictStr | None = None


class RestoreBody(_Body):
    """Segment's ``RestoreFunctionVersionAlphaInput``."""

    version_id: StrictStr


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_functions(
    page: Pagination,
    store: Store,
    only: ReadableFunctions,
    resource_type: Annotated[
        str | None,
        Query(alias="resourceType", description=f"One of {', '.join(RESOURCE_TYPES)}."),
    ] = None,
) -> dict[str, Any]:
    kind = None if resource_type is None else _kind(resource_type)
    listed = [f for f in store.list() if kind in (None, f.kind) and (only is None or f.id in only)]
    found, out = paged(listed, page)
    return data(functions=[function_json(f, None) for f in found], pagination=out)


@router.post("", response_model=None)
def create_function(body: CreateFunctionBody, store: Store) -> dict[str, Any]:
    created = store.create(
        body.display_name,
        _kind(body.resource_type),
        "javascript",
        body.code,
        description=body.description,
        settings=_settings_in(body.settings),
    )
    return data(function=function_json(created, body.code))


@router.get("/{functionId}", response_model=None)
def get_function(function_id: FunctionId, store: Store) -> dict[str, Any]:
    return data(function=_with_code(store, store.require(function_id)))


@router.patch("/{functionId}", response_model=None)
def update_function(
    body: UpdateFunctionBody, function_id: FunctionId, store: Store
) -> dict[str, Any]:
    updated = store.update(
        function_id,
        name=UNSET if body.display_name is None else body.display_name,
        description=UNSET if body.description is None else body.description,
        settings=UNSET if body.settings is None else _settings_in(body.settings),
        code=UNSET if body.code is None else body.code,
        deploy=body.code is not None,
    )
    return data(function=_with_code(store, updated))


@router.delete("/{functionId}", response_model=None)
def delete_function(function_id: FunctionId, store: Store) -> dict[str, Any]:
    """Refused (409) while a source or destination runs it."""
    store.delete(store.require(function_id).id)
    return data(status="SUCCESS")


@router.get("/{functionId}/versions", response_model=None)
def list_function_versions(
    function_id: FunctionId, page: Pagination, store: Store
) -> dict[str, Any]:
    """Every version, newest first."""
    function = store.require(function_id)
    found, out = paged(store.versions(function.id), page)
    return data(versions=[_version_json(function, v) for v in found], pagination=out)


@router.get("/{functionId}/versions/{versionId}", response_model=None)
def get_function_version(
    function_id: FunctionId,
    version_id: Annotated[str, Path(alias="versionId", description="A version: 1, 2, …")],
    store: Store,
) -> dict[str, Any]:
    function = store.require(function_id)
    found = store.version(function.id, _version_number(version_id))
    return data(version=_version_json(function, found))


@router.post("/{functionId}/versions", response_model=None)
def restore_function_version(
    body: RestoreBody, function_id: FunctionId, store: Store
) -> dict[str, Any]:
    """A new version holding ``versionId``'s code, deployed (Segment's restore)."""
    number = _version_number(body.version_id)
    restored = store.restore(store.require(function_id).id, number, deploy=True)
    newest = store.version(restored.id, restored.latest_version)
    return data(version=_version_json(restored, newest))
