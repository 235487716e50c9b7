"""``/api/v1/spaces/{idOrName}/subscriptions/uploads``: subscription CSV uploads (§18.4).

As the profile CSV upload (``api/uploads.py``: the file as the body, ``?fileName=``, checked
whole, refused with Segment's message, sent from a thread as Identify calls from the space's
upload source, one file of a space at a time), with ``?customTrait=NAME``, a trait set to
``true`` on every profile of the file. ``POST …/subscription-groups/{group}/uploads`` is the
group uploader: group columns only. ``GET …/subscriptions/uploads`` is the Update History of
subscription uploads (30 days), each with ``errorRows``; ``GET …/uploads/{uploadId}/report`` the
error report (CSV); ``GET …/subscriptions/uploads/template`` and
``…/subscription-groups/{group}/uploads/template`` the templates.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from headwater.api.errors import ApiError
from headwater.api.spaces import Pagination, SpaceId, Spaces
from headwater.api.subscriptions import GroupId, Groups
from headwater.api.tracking_plans import _page_body
from headwater.api.uploads import UploadId, _uploads, accept, receive
from headwater.errors import InvalidError
from headwater.protocols.plans import page_of
from headwater.store.database import write_transaction
from headwater.store.workspace import check_name
from headwater.unify import csv_upload, subscription_upload
from headwater.unify.csv_upload import Appender, Upload, Uploads, upload_json
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.subscription_groups import SubscriptionGroup, group_key, live_groups

logger = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

router = APIRouter(prefix="/spaces", tags=["spaces"])

_BODY = {
    "requestBody": {
        "required": True,
        "description": "The CSV file itself (at most 100 MB).",
        "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
    }
}
FileName = Annotated[
    str | None, Query(alias="fileName", description="The file's name (must end in .csv).")
]
CustomTrait = Annotated[
    str | None,
    Query(alias="customTrait", description="A trait set to true on every profile of the file."),
]


@router.post(
    "/{idOrName}/subscriptions/uploads",
    status_code=202,
    response_model=None,
    openapi_extra=_BODY,
)
async def upload_subscriptions(
    request: Request,
    space_id: SpaceId,
    spaces: Spaces,
    file_name: FileName = None,
    custom_trait: CustomTrait = None,
) -> dict[str, Any]:
    """Upload a subscription CSV: one Identify call per row, once the whole file is checked."""
    return await _upload(request, space_id, spaces, file_name, custom_trait, None)


@router.post(
    "/{idOrName}/subscription-groups/{groupIdOrName}/uploads",
    status_code=202,
    response_model=None,
    openapi_extra=_BODY,
)
async def upload_group_subscribers(
    request: Request,
    space_id: SpaceId,
    group_id: GroupId,
    spaces: Spaces,
    groups: Groups,
    file_name: FileName = None,
    custom_trait: CustomTrait = None,
) -> dict[str, Any]:
    """The group uploader: group columns (``[group_name]_subscription_status``) only."""
    group = await asyncio.to_thread(groups.require, space_id, group_id)
    return await _upload(request, space_id, spaces, file_name, custom_trait, group)


async def _upload(
    request: Request,
    space_ref: str,
    spaces: SpaceStore,
    given_name: str | None,
    custom_trait: str | None,
    group: SubscriptionGroup | None,
) -> dict[str, Any]:
    space = await asyncio.to_thread(spaces.require, space_ref)
    if custom_trait is not None:
        try:
            check_name(custom_trait, "customTrait")
        except InvalidError as exc:
            raise ApiError(
                422, "validation", f"customTrait: {exc.message}", "customTrait"
            ) from None
    uploads = _uploads(request)
    engine = request.app.state.engine

    def send(
        appender: Appender, upload: Upload, path: Path, checked: subscription_upload.Checked
    ) -> None:
        _send(engine, uploads, appender, space, upload, path, checked)

    upload = await receive(
        request,
        space,
        given_name,
        lambda path: _check(request, path, space, group is not None),
        lambda name, checked: accept(
            uploads,
            space,
            name,
            checked.rows,
            list(checked.layout.headers),
            kind=subscription_upload.KIND,
            custom_trait=custom_trait,
        ),
        send,
    )
    return {"data": {"upload": _json(upload, 0)}}


def _check(
    request: Request, path: Path, space: SpaceInfo, only_groups: bool
) -> subscription_upload.Checked:
    with request.app.state.engine.connect() as conn:
        groups = live_groups(conn, space.id)
    with path.open("rb") as binary:
        return subscription_upload.check(
            csv_upload.text_lines(binary), space.identity, groups, only_groups=only_groups
        )


def _send(
    engine: Any,
    uploads: Uploads,
    appender: Appender,
    space: SpaceInfo,
    upload: Upload,
    path: Path,
    checked: subscription_upload.Checked,
) -> None:
    """Send the checked file's rows; the upload ends succeeded or failed, never processing."""
    source_id = upload.source_id or ""

    def report(rows: Any) -> None:
        with write_transaction(engine) as conn:
            subscription_upload.record_errors(conn, space.id, upload.id, rows)

    try:
        with path.open("rb") as binary:
            subscription_upload.send_rows(
                csv_upload.text_lines(binary),
                checked.layout,
                upload.id,
                lambda chunk: appender.append(space.workspace_id, source_id, chunk),
                lambda sent: uploads.update(upload.id, appended=sent),
                report,
                upload.custom_trait,
            )
        uploads.update(upload.id, status="succeeded")
    except Exception:
        logger.exception("subscription CSV upload %s failed", upload.id)
        try:
            uploads.update(upload.id, status="failed", error=csv_upload.FALLBACK)
        except Exception:
            logger.exception("subscription CSV upload %s: cannot record the failure", upload.id)
    finally:
        path.unlink(missing_ok=True)


def _json(upload: Upload, errors: int) -> dict[str, Any]:
    return {**upload_json(upload), "errorRows": errors}


def _counts(request: Request, uploads: list[Upload]) -> dict[str, int]:
    with request.app.state.engine.connect() as conn:
        return subscription_upload.error_count(conn, [u.id for u in uploads])


@router.get("/{idOrName}/subscriptions/uploads", response_model=None)
def list_uploads(
    request: Request, space_id: SpaceId, page: Pagination, spaces: Spaces
) -> dict[str, Any]:
    """The Update History of subscription uploads: the last 30 days, newest first."""
    space = spaces.require(space_id)
    cursor, count = page
    found = page_of(_uploads(request).history(space.id, subscription_upload.KIND), cursor, count)
    errors = _counts(request, list(found.items))
    return _page_body("uploads", found, cursor, lambda u: _json(u, errors.get(u.id, 0)))


@router.get("/{idOrName}/subscriptions/uploads/template", response_model=None)
def subscriptions_template(request: Request, space_id: SpaceId, spaces: Spaces) -> Response:
    """The CSV template: the identifier columns with the subscription status columns."""
    space = spaces.require(space_id)
    return _template(space, subscription_upload.template(space.identity))


@router.get("/{idOrName}/subscription-groups/{groupIdOrName}/uploads/template", response_model=None)
def group_template(
    space_id: SpaceId, group_id: GroupId, spaces: Spaces, groups: Groups
) -> Response:
    """The group uploader's template: the identifier columns and the group's column."""
    space = spaces.require(space_id)
    group = groups.require(space.id, group_id)
    text = subscription_upload.template(space.identity, [group], only_groups=True)
    return _template(space, text, f"-{group_key(group.name)}")


def _template(space: SpaceInfo, text: str, suffix: str = "") -> Response:
    return _csv(text, f"{space.slug}-subscriptions{suffix}-template.csv")


def _csv(text: str, name: str) -> Response:
    """A CSV download; its name as a header can carry it (ASCII, no quotes)."""
    shown = _UNSAFE.sub("_", name)
    return Response(
        text,
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="{shown}"'},
    )


def _subscription_upload(request: Request, space: SpaceInfo, upload_id: str) -> Upload:
    found = _uploads(request).get(space.id, upload_id)
    if found is None or found.kind != subscription_upload.KIND:
        raise ApiError(
            404, "not_found", f"space {space.name!r} has no subscription upload {upload_id!r}"
        )
    return found


@router.get("/{idOrName}/subscriptions/uploads/{uploadId}", response_model=None)
def get_upload(
    request: Request, space_id: SpaceId, upload_id: UploadId, spaces: Spaces
) -> dict[str, Any]:
    space = spaces.require(space_id)
    found = _subscription_upload(request, space, upload_id)
    return {"data": {"upload": _json(found, _counts(request, [found]).get(found.id, 0))}}


@router.get("/{idOrName}/subscriptions/uploads/{uploadId}/report", response_model=None)
def get_report(
    request: Request, space_id: SpaceId, upload_id: UploadId, spaces: Spaces
) -> Response:
    """The error report: the rows not applied, with ``row_number``, ``error_code`` and
    ``error_message`` after the file's columns (rows not in it were applied)."""
    space = spaces.require(space_id)
    found = _subscription_upload(request, space, upload_id)
    with request.app.state.engine.connect() as conn:
        text = subscription_upload.report_csv(conn, found.id, found.columns)
    return _csv(text, found.file_name.removesuffix(".csv") + "-errors.csv")
