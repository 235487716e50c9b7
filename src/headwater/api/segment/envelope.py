"""What every ``/segment/v1`` operation shares with Segment's Public API: its media types,
the ``{"data": …}`` envelope and ``pagination`` in and out.

Segment's SDKs send ``Accept: application/json`` (TypeScript) or one of the versioned types
``application/vnd.segment.v1+json`` (``v1beta``, ``v1alpha``); Headwater has one version of
each operation, so all four are the same answer. Any other ``Accept`` is a 406 and any other
body type a 415, as Segment answers, so a client learns at once that it speaks another API.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request

from headwater.api.errors import ApiError
from headwater.errors import InvalidError
from headwater.store.workspace import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

JSON = "application/json"
MEDIA_TYPES = (
    "application/vnd.segment.v1+json",
    "application/vnd.segment.v1beta+json",
    "application/vnd.segment.v1alpha+json",
    JSON,
)
_ANY = ("*/*", "application/*")

T = TypeVar("T")


def data(**fields: Any) -> dict[str, Any]:
    """The envelope of every successful answer."""
    return {"data": fields}


# --- media types -----------------------------------------------------------------------------


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _refused(value: str) -> bool:
    """A media range given ``q=0`` is one the client refuses."""
    for parameter in value.split(";")[1:]:
        name, _, number = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(number) <= 0
            except ValueError:
                return False
    return False


def negotiate(request: Request) -> None:
    """FastAPI dependency: refuse what Segment's media types cannot answer (406) or carry
    (415)."""
    accept = request.headers.get("accept", "").strip()
    if accept:
        ranges = [r for r in accept.split(",") if r.strip() and not _refused(r)]
        if not any(_media_type(r) in (*MEDIA_TYPES, *_ANY) for r in ranges):
            raise ApiError(
                406,
                "not_acceptable",
                f"cannot answer with {accept[:200]!r}; accept one of: {', '.join(MEDIA_TYPES)}",
            )
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    content_type = request.headers.get("content-type")
    if has_body and _media_type(content_type or "") not in MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with Content-Type {MEDIA_TYPES[0]} or {JSON}",
        )


# --- pagination ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """``pagination`` of a list request: the cursor (None: the first page) and page size."""

    cursor: str | None
    count: int


def _count(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ApiError(
            400,
            "validation",
            f"pagination.count: must be a whole number from 1 to {MAX_PAGE_SIZE}",
            "pagination.count",
        )
    return int(raw)


def pagination(
    request: Request,
    count: Annotated[
        str | None,
        Query(
            alias="pagination.count",
            description=f"Page size, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}); "
            "`pagination[count]` is read too.",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            alias="pagination.cursor",
            description="From a previous answer's `pagination.next` or `previous`; "
            "`pagination[cursor]` is read too.",
        ),
    ] = None,
) -> Page:
    """FastAPI dependency: the ``pagination`` of a list request, in either spelling (the
    TypeScript SDK sends ``pagination[count]``, others ``pagination.count``)."""
    query = request.query_params
    if count is None:
        count = query.get("pagination[count]")
    if cursor is None:
        cursor = query.get("pagination[cursor]")
    return Page(cursor or None, DEFAULT_PAGE_SIZE if count is None else _count(count))


def bad_cursor() -> ApiError:
    return ApiError(
        400,
        "validation",
        "pagination.cursor: is not a cursor this server gave out",
        "pagination.cursor",
    )


@contextmanager
def cursor_checked() -> Iterator[None]:
    """Around a list an ``/api/v1`` function pages: a cursor its store cannot read is the 400
    every ``/segment/v1`` list gives."""
    try:
        yield
    except InvalidError as exc:
        if exc.field in ("cursor", "pagination.cursor"):
            raise bad_cursor() from None
        raise


def _encode(offset: int) -> str:
    raw = json.dumps({"offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_cursor() from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise bad_cursor()
    return offset


def paged(items: Sequence[T], page: Page) -> tuple[list[T], dict[str, Any]]:
    """One page of a list the server holds whole (the catalog, an instance list) and its
    ``pagination``: ``next`` absent on the last page, ``previous`` on the first."""
    offset = _decode(page.cursor) if page.cursor else 0
    end = offset + page.count
    out: dict[str, Any] = {"current": page.cursor or _encode(0)}
    if end < len(items):
        out["next"] = _encode(end)
    if offset > 0:
        out["previous"] = _encode(max(0, offset - page.count))
    out["totalEntries"] = len(items)
    return list(items[offset:end]), out
