"""``/api/v1/consent/categories`` and a destination's ``/encryption``: consent and HIPAA-style
field encryption (spec/protocols-privacy-api.md §12, §13).

Segment's Public API documents neither, so both use the ``{"data": …}`` / ``{"errors": …}``
envelopes of the rest of the API. A category's destinations are destination types (or their
catalog names, stored as types): a mapping covers every instance of the type. Generating keys
answers the private key once; only the public key is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request

from headwater.api.errors import body_object
from headwater.api.sources import store_of
from headwater.destinations.registry import type_named
from headwater.destinations.store import DestinationStore
from headwater.errors import InvalidError, UnknownDestinationType
from headwater.privacy.consent import ConsentCategories, ConsentCategory
from headwater.privacy.encryption import EncryptionSettings, FieldEncryption
from headwater.protocols.plans import add_consent_event_in
from headwater.store.workspace import UNSET, WorkspaceStore

router = APIRouter(tags=["privacy"])

CategoryId = Annotated[str, Path(alias="categoryId", description="The category's categoryId.")]
IdOrName = Annotated[str, Path(alias="idOrName", description="The destination's id or name.")]
JsonBody = Annotated[Any, Body()]
SUCCESS = {"data": {"status": "SUCCESS"}}


def categories_of(request: Request) -> ConsentCategories:
    workspace: WorkspaceStore = store_of(request)
    return ConsentCategories(workspace, on_first=add_consent_event_in)


Categories = Annotated[ConsentCategories, Depends(categories_of)]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def category_json(category: ConsentCategory) -> dict[str, Any]:
    return {
        "categoryId": category.category_id,
        "name": category.name,
        "destinations": list(category.destinations),
        "enabled": category.enabled,
        "createdAt": _iso(category.created_at),
        "updatedAt": _iso(category.updated_at),
    }


def destination_types(value: object, field: str = "destinations") -> list[str]:
    """Destination types, a catalog name standing for its type (one type: every instance)."""
    if not isinstance(value, list):
        raise InvalidError("must be a list of destination types", field)
    found: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidError("each destination must be a destination type", field)
        try:
            found.append(type_named(item))
        except UnknownDestinationType as exc:
            raise InvalidError(exc.message, field) from exc
    return found


def _bool(fields: dict[str, Any], name: str) -> Any:
    value = fields.get(name, UNSET)
    if value is not UNSET and not isinstance(value, bool):
        raise InvalidError("must be true or false", name)
    return value


# --- consent categories ----------------------------------------------------------------------


@router.get("/consent/categories", response_model=None)
def list_categories(categories: Categories) -> dict[str, Any]:
    return {"data": {"categories": [category_json(c) for c in categories.list()]}}


@router.post("/consent/categories", status_code=201, response_model=None)
def create_category(body: JsonBody, categories: Categories) -> dict[str, Any]:
    fields = body_object(body, {"categoryId", "name", "destinations", "enabled"})
    enabled = _bool(fields, "enabled")
    category = categories.create(
        fields.get("categoryId"),  # type: ignore[arg-type]  # checked by the store
        fields.get("name"),  # type: ignore[arg-type]
        destination_types(fields.get("destinations", [])),
        enabled=True if enabled is UNSET else enabled,
    )
    return {"data": {"category": category_json(category)}}


@router.get("/consent/categories/{categoryId}", response_model=None)
def get_category(category_id: CategoryId, categories: Categories) -> dict[str, Any]:
    return {"data": {"category": category_json(categories.require(category_id))}}


@router.patch("/consent/categories/{categoryId}", response_model=None)
def update_category(
    category_id: CategoryId, body: JsonBody, categories: Categories
) -> dict[str, Any]:
    """Rename, remap, or disable (``enabled: false`` stops enforcement, §12.1)."""
    fields = body_object(body, {"name", "destinations", "enabled"})
    category = categories.update(
        category_id,
        name=fields.get("name", UNSET),
        destinations=(
            destination_types(fields["destinations"]) if "destinations" in fields else UNSET
        ),
        enabled=_bool(fields, "enabled"),
    )
    return {"data": {"category": category_json(category)}}


@router.delete("/consent/categories/{categoryId}", response_model=None)
def delete_category(category_id: CategoryId, categories: Categories) -> dict[str, Any]:
    categories.delete(category_id)
    return SUCCESS


# --- field encryption ------------------------------------------------------------------------


def encryption_json(settings: EncryptionSettings) -> dict[str, Any]:
    return {
        "enabled": settings.enabled,
        "fields": list(settings.fields),
        "algorithm": "RSAES-OAEP-SHA256",
        "publicKey": settings.public_key,
    }


def _destination_id(request: Request, id_or_name: str) -> str:
    return DestinationStore(store_of(request)).require(id_or_name).id


@router.get("/destinations/{idOrName}/encryption", response_model=None)
def get_encryption(id_or_name: IdOrName, request: Request) -> dict[str, Any]:
    found = FieldEncryption(store_of(request)).get(_destination_id(request, id_or_name))
    return {"data": {"encryption": encryption_json(found)}}


@router.patch("/destinations/{idOrName}/encryption", response_model=None)
def update_encryption(id_or_name: IdOrName, body: JsonBody, request: Request) -> dict[str, Any]:
    """Choose the fields (keys matched exactly in context, traits, properties) or turn
    encryption on or off; both forward-looking."""
    fields = body_object(body, {"fields", "enabled"})
    destination_id = _destination_id(request, id_or_name)
    chosen = fields.get("fields", UNSET)
    if chosen is not UNSET and not isinstance(chosen, list):
        raise InvalidError("must be a list of field names", "fields")
    settings = FieldEncryption(store_of(request)).configure(
        destination_id, fields=chosen, enabled=_bool(fields, "enabled")
    )
    return {"data": {"encryption": encryption_json(settings)}}


@router.post("/destinations/{idOrName}/encryption/keys", response_model=None)
def generate_keys(id_or_name: IdOrName, request: Request) -> dict[str, Any]:
    """Generate (or regenerate) the key pair: the private key is in this answer only."""
    destination_id = _destination_id(request, id_or_name)
    encryption = FieldEncryption(store_of(request))
    private_key = encryption.generate_keys(destination_id)
    settings = encryption.get(destination_id)
    return {"data": {"encryption": encryption_json(settings), "privateKey": private_key}}
