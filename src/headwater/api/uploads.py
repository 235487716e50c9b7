"""``/api/v1/spaces/{idOrName}/profiles/uploads``: profile CSV uploads (§10.1).

``POST`` takes the file itself as the body (``Content-Type: text/csv``; the file's name in
``?fileName=`` or a ``Content-Disposition`` header), streamed to a temporary file while its size
is counted, then checked whole; a refused file gets a 4xx whose message is Segment's. An
accepted file answers ``202`` with the upload, and a thread of this process sends its rows as
Identify calls from the space's upload source, 500 (or about 500 KB) per ingest log record, the
upload's ``appendedRows`` counting them: ``GET …/uploads/{uploadId}`` follows it, ``GET
…/uploads`` is the Update History (30 days), ``GET …/uploads/template`` the CSV template.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi import Path as PathParam

from headwater.api.errors import ApiError
from headwater.api.spaces import Pagination, SpaceId, Spaces
from headwater.api.tracking_plans import _page_body
from headwater.errors import UploadRejected
from headwater.protocols.plans import page_of
from headwater.store.workspace import WorkspaceStore
from headwater.unify import csv_upload
from headwater.unify.csv_upload import Appender, Column, Upload, Uploads, upload_json
from headwater.unify.spaces import SpaceInfo

logger = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Checked = TypeVar("Checked")  # what an uploader's check of a file gives its sender

router = APIRouter(prefix="/spaces", tags=["spaces"])

UploadId = Annotated[str, PathParam(alias="uploadId", description="The upload's id.")]
ONE_AT_A_TIME = (
    "You can only upload one file at a time: another file is being sent to this space. Wait "
    "for it to finish (GET …/profiles/uploads), then try again."
)
# What browsers and tools send for a .csv file (Windows says Excel); multipart is answered apart.
CSV_TYPES = frozenset(
    {
        "",
        "text/csv",
        "application/csv",
        "text/x-csv",
        "application/x-csv",
        "text/plain",
        "application/octet-stream",
        "application/vnd.ms-excel",
    }
)


def use_appender(app: FastAPI, appender: Appender) -> None:
    """Give the upload routes the server's internal append path."""
    app.state.appender = appender


def _uploads(request: Request) -> Uploads:
    store: WorkspaceStore = request.app.state.workspace_store
    return Uploads(store)


def _file_name(request: Request, given: str | None) -> str:
    """The name the history shows: the last part of a path, as text any database stores."""
    name = given
    disposition = request.headers.get("content-disposition")
    if not name and disposition:
        message = Message()
        message["content-disposition"] = disposition
        found = message.get_param("filename", header="content-disposition")
        name = found if isinstance(found, str) else None
    if not name:
        return "upload.csv"
    name = os.path.basename(name.replace("\\", "/"))
    name = _CONTROL.sub("", name.encode("utf-8", "replace").decode("utf-8"))
    return name[-300:] or "upload.csv"


async def _spool(request: Request, into: Any) -> int:
    """Copy the body to ``into``; its size. Stops at 100 MB and one byte."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > csv_upload.MAX_BYTES:
        raise UploadRejected(csv_upload.TOO_LARGE, 413)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > csv_upload.MAX_BYTES:
            raise UploadRejected(csv_upload.TOO_LARGE, 413)
        await asyncio.to_thread(into.write, chunk)
    return size


@router.post(
    "/{idOrName}/profiles/uploads",
    status_code=202,
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The CSV file itself (at most 100 MB).",
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_profiles(
    request: Request,
    space_id: SpaceId,
    spaces: Spaces,
    file_name: Annotated[
        str | None, Query(alias="fileName", description="The file's name (must end in .csv).")
    ] = None,
) -> dict[str, Any]:
    """Upload a profiles CSV: one Identify call per row, once the whole file is checked."""
    space = await asyncio.to_thread(spaces.require, space_id)
    uploads = _uploads(request)

    def send(appender: Appender, upload: Upload, path: Path, checked: csv_upload.Checked) -> None:
        _send(uploads, appender, space, upload, path, checked.columns)

    upload = await receive(
        request,
        space,
        file_name,
        lambda path: _check(path, space),
        # checked again as it is recorded: another file may have started meanwhile
        lambda name, checked: accept(
            uploads, space, name, checked.rows, [c.header for c in checked.columns]
        ),
        send,
    )
    return {"data": {"upload": upload_json(upload)}}


async def receive(
    request: Request,
    space: SpaceInfo,
    given_name: str | None,
    check: Callable[[Path], Checked],
    accept: Callable[[str, Checked], Upload],
    send: Callable[[Appender, Upload, Path, Checked], None],
) -> Upload:
    """A CSV upload's way in, shared by the profile and subscription uploaders: the body
    spooled to a file and checked whole (Segment's messages, every refusal recorded in the
    history), the upload recorded, then its rows sent by a thread, which owns the file."""
    uploads = _uploads(request)
    appender: Appender | None = getattr(request.app.state, "appender", None)
    if appender is None:
        raise ApiError(503, "unavailable", "this process cannot append events; retry later")
    name = _file_name(request, given_name)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the file itself as the body (Content-Type: text/csv, its name in "
            "?fileName=), not a multipart form",
        )
    with tempfile.NamedTemporaryFile(
        prefix="headwater-upload-", suffix=".csv", delete=False
    ) as spool:
        path = Path(spool.name)
    started = False
    try:
        try:
            csv_upload.check_file_name(name)
            if content_type not in CSV_TYPES:
                raise UploadRejected(csv_upload.INVALID_FILE_TYPE, 415)
            if await asyncio.to_thread(uploads.busy, space.id):
                raise UploadRejected(ONE_AT_A_TIME, 409)
            with path.open("wb") as spooled:
                size = await _spool(request, spooled)
            if size == 0:
                raise UploadRejected(csv_upload.EMPTY_FILE)
            checked = await asyncio.to_thread(check, path)
            upload = await asyncio.to_thread(accept, name, checked)
        except UploadRejected as refused:
            await asyncio.to_thread(_refused, uploads, space.id, name, refused.message)
            raise ApiError(refused.status, "validation", refused.message) from None
        thread = threading.Thread(
            target=send,
            args=(appender, upload, path, checked),
            name=f"upload-{upload.id}",
            daemon=True,
        )
        thread.start()
        started = True
        return upload
    finally:
        if not started:
            path.unlink(missing_ok=True)


def _check(path: Path, space: SpaceInfo) -> csv_upload.Checked:
    with path.open("rb") as binary:
        return csv_upload.check(csv_upload.text_lines(binary), space.identity)


def _refused(uploads: Uploads, space_id: str, name: str, message: str) -> None:
    """A refused file is in the history too, with Segment's message."""
    upload = uploads.start(space_id, name)
    uploads.update(upload.id, status="failed", error=message)


def accept(
    uploads: Uploads, space: SpaceInfo, name: str, rows: int, columns: list[str], **start: Any
) -> Upload:
    """Record a checked file's upload, from the space's upload source; ``start``: what the
    uploader adds (a kind, a custom trait). Refused (409) if another file started meanwhile."""
    source_id = uploads.upload_source(space)
    try:
        upload = uploads.start(space.id, name, rows=rows, columns=columns, alone=True, **start)
    except csv_upload.Busy:
        raise UploadRejected(ONE_AT_A_TIME, 409) from None
    uploads.update(upload.id, source_id=source_id)
    found = uploads.get(space.id, upload.id)
    assert found is not None
    return found


def _send(
    uploads: Uploads,
    appender: Appender,
    space: SpaceInfo,
    upload: Upload,
    path: Path,
    columns: tuple[Column, ...],
) -> None:
    """Send the checked file's rows; the upload ends succeeded or failed, never processing."""
    source_id = upload.source_id or ""
    try:
        with path.open("rb") as binary:
            csv_upload.send_rows(
                csv_upload.text_lines(binary),
                columns,
                upload.id,
                lambda chunk: appender.append(space.workspace_id, source_id, chunk),
                lambda sent: uploads.update(upload.id, appended=sent),
            )
        uploads.update(upload.id, status="succeeded")
    except Exception:
        logger.exception("profile CSV upload %s failed", upload.id)
        try:
            uploads.update(upload.id, status="failed", error=csv_upload.FALLBACK)
        except Exception:
            logger.exception("profile CSV upload %s: cannot record the failure", upload.id)
    finally:
        path.unlink(missing_ok=True)


@router.get("/{idOrName}/profiles/uploads", response_model=None)
def list_uploads(
    request: Request, space_id: SpaceId, page: Pagination, spaces: Spaces
) -> dict[str, Any]:
    """The Update History: the space's uploads of the last 30 days, newest first."""
    space = spaces.require(space_id)
    cursor, count = page
    found = page_of(_uploads(request).history(space.id), cursor, count)
    return _page_body("uploads", found, cursor, upload_json)


@router.get("/{idOrName}/profiles/uploads/template", response_model=None)
def upload_template(space_id: SpaceId, spaces: Spaces) -> Response:
    """The CSV template: a header row of the space's identifier columns."""
    space = spaces.require(space_id)
    return Response(
        csv_upload.template(space.identity),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="{space.slug}-template.csv"'},
    )


@router.get("/{idOrName}/profiles/uploads/{uploadId}", response_model=None)
def get_upload(
    request: Request, space_id: SpaceId, upload_id: UploadId, spaces: Spaces
) -> dict[str, Any]:
    space = spaces.require(space_id)
    found = _uploads(request).get(space.id, upload_id)
    if found is None:
        raise ApiError(404, "not_found", f"space {space.name!r} has no upload {upload_id!r}")
    return {"data": {"upload": upload_json(found)}}
