"""Subscription CSV upload (spec/unify-engage.md §18.4, §10.2): a file of contacts and their
subscription states becomes one internal Identify call per row, carrying the states in
``context.messaging_subscriptions``, so identity resolution sets them like any Identify's.

A file's columns are the space's identifier columns (``user_id``, ``anonymous_id``, ``email``,
``phone``, … as the profile CSV reads them, ``csv_upload``), ``email_subscription_status`` (with
an ``email`` column), ``sms_subscription_status`` and ``whatsapp_subscription_status`` (with a
``phone`` column) and, for each email subscription group of the space,
``[group_name]_subscription_status`` (the group found regardless of case). Any other column is
Segment's "Extraneous columns" refusal. The group uploader (``only_groups``) takes group columns
and no channel ones. The file is checked whole first with the profile CSV's rules that Segment
lists for this uploader (a ``.csv`` of at most 100 MB and 1,000,000 rows, parsable, no empty or
duplicate header); each refusal has Segment's message.

Rows are sent in order (CHUNK_ROWS per ingest log record), so a later row's state wins over an
earlier one's; a blank status sets nothing, so it never overwrites. A row that cannot be used
goes to the upload's error report instead of the log, with Segment's code: ``INVALID_EMAIL``,
``INVALID_PHONE`` (a contact that is none, or a status with no contact),
``INVALID_SUBSCRIPTION_STATUS``, ``SYSTEM_ERROR`` (the row could not be sent). Identity
resolution adds the rows whose state it refuses (``UNABLE_TO_SUBSCRIBE``,
``GLOBAL_STATE_NOT_SUBSCRIBED``, ``CONFIGURATION_ERROR`` for a group deleted meanwhile): it
knows a row by its ``messageId`` (``<upload id>-<row number>``) and the upload's source. The
report is the file's columns, then ``row_number``, ``error_code`` and ``error_message``; rows
not in it were applied.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater import reasons
from headwater.errors import InvalidError, UploadRejected
from headwater.store import schema
from headwater.unify import csv_upload
from headwater.unify.csv_upload import Column
from headwater.unify.settings import IdentitySettings
from headwater.unify.subscription_groups import SubscriptionGroup, group_key
from headwater.unify.subscriptions import (
    MESSAGES,
    Channel,
    contact_key,
    key_error,
    parse_status,
)

KIND: Final = "subscriptions"  # unify_csv_uploads.kind
SUFFIX: Final = "_subscription_status"
STATUS_COLUMNS: Final[dict[str, Channel]] = {
    "email_subscription_status": "EMAIL",
    "sms_subscription_status": "SMS",
    "whatsapp_subscription_status": "WHATSAPP",
}
CONTACT_COLUMN: Final[dict[Channel, str]] = {"EMAIL": "email", "SMS": "phone", "WHATSAPP": "phone"}
REPORT_COLUMNS: Final = ("row_number", "error_code", "error_message")

# Segment's message (§18.4), exactly; the others are the profile CSV's.
EXTRANEOUS: Final = (
    "This file has columns that do not match the identifiers in your identity resolution "
    "configuration."
)
GROUPS_ONLY: Final = (
    "The subscription group CSV upload only honors group subscriptions, so "
    "sms_subscription_status, whatsapp_subscription_status, and email_subscription_status "
    "aren't allowed."
)
NO_GROUP_COLUMN: Final = (
    "This file has no [group_name]_subscription_status column: name a subscription group of "
    "the space in one."
)


def needs_contact(header: str, contact: str) -> str:
    return (
        f"The column {header} sets the subscription states of the {contact} column's "
        f"contacts: add a {contact} column (it must be an identifier of the space)."
    )


_ROLES: Final[dict[str, csv_upload.Role]] = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "email": "email",
}


class Layout(NamedTuple):
    """What each column of a checked file is: ``identifiers`` (their positions and the profile
    CSV's columns), ``statuses`` (position, channel) and ``groups`` (position, group)."""

    headers: tuple[str, ...]
    identifiers: tuple[tuple[int, Column], ...]
    statuses: tuple[tuple[int, Channel], ...]
    groups: tuple[tuple[int, SubscriptionGroup], ...]


class Checked(NamedTuple):
    layout: Layout
    rows: int


def template(
    settings: IdentitySettings,
    groups: Sequence[SubscriptionGroup] = (),
    *,
    only_groups: bool = False,
) -> str:
    """Segment's "Download Template": the space's identifier columns, with
    ``email_subscription_status`` next to ``email`` and the SMS and WhatsApp columns next to
    ``phone`` (the group uploader's: each given group's column next to ``email``)."""
    headers: list[str] = []
    for type_ in csv_upload.identifier_types(settings):
        headers.append(type_)
        if type_ == "email":
            if not only_groups:
                headers.append("email_subscription_status")
            headers += [g.name + SUFFIX for g in groups]
        elif type_ == "phone" and not only_groups:
            headers += ["sms_subscription_status", "whatsapp_subscription_status"]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(headers)
    return out.getvalue()


def layout_of(
    headers: Sequence[str],
    settings: IdentitySettings,
    groups: Mapping[str, SubscriptionGroup],
    *,
    only_groups: bool = False,
) -> Layout:
    """Check the header row and say what each column is. ``groups``: the space's, by
    ``group_key``."""
    if any(h == "" for h in headers):
        raise UploadRejected(csv_upload.EMPTY_HEADER)
    if len(set(headers)) != len(headers):
        raise UploadRejected(csv_upload.DUPLICATE_HEADERS)
    identifiers = set(csv_upload.identifier_types(settings))
    id_columns: list[tuple[int, Column]] = []
    statuses: list[tuple[int, Channel]] = []
    group_columns: list[tuple[int, SubscriptionGroup]] = []
    for i, header in enumerate(headers):
        if header in identifiers:
            id_columns.append((i, Column(header, _ROLES.get(header, "external"))))
        elif header in STATUS_COLUMNS:
            if only_groups:
                raise UploadRejected(GROUPS_ONLY)
            statuses.append((i, STATUS_COLUMNS[header]))
        elif header.endswith(SUFFIX) and group_key(header[: -len(SUFFIX)]) in groups:
            group_columns.append((i, groups[group_key(header[: -len(SUFFIX)])]))
        else:
            raise UploadRejected(EXTRANEOUS)
    present = {column.header for _, column in id_columns}
    for i, channel in statuses:
        if CONTACT_COLUMN[channel] not in present:
            raise UploadRejected(needs_contact(headers[i], CONTACT_COLUMN[channel]))
    if group_columns and "email" not in present:
        raise UploadRejected(needs_contact(headers[group_columns[0][0]], "email"))
    if only_groups and not group_columns:
        raise UploadRejected(NO_GROUP_COLUMN)
    if not id_columns:
        raise UploadRejected(csv_upload.MISSING_IDENTIFIER)
    return Layout(tuple(headers), tuple(id_columns), tuple(statuses), tuple(group_columns))


def check(
    lines: Iterable[str],
    settings: IdentitySettings,
    groups: Mapping[str, SubscriptionGroup],
    *,
    only_groups: bool = False,
) -> Checked:
    """Read a whole file (text lines, newlines kept) and check it, keeping only a count.
    Raises ``UploadRejected`` with Segment's message; a row's own problems are not the file's
    (they go in the error report as the rows are sent)."""
    rows = csv_upload.read_rows(lines)
    headers = next(rows, None)
    while headers == []:
        headers = next(rows, None)
    if headers is None:
        raise UploadRejected(csv_upload.EMPTY_FILE)
    if headers[0].startswith("\ufeff"):
        headers[0] = headers[0][1:]
    width = len(headers)
    count = 0
    layout: Layout | None = None
    for row in rows:
        if csv_upload.is_blank(row):
            continue
        if len(row) > width:
            raise UploadRejected(csv_upload.PARSING_ERROR)
        if layout is None:
            layout = layout_of(headers, settings, groups, only_groups=only_groups)
        count += 1
        if count > csv_upload.MAX_ROWS:
            raise UploadRejected(csv_upload.TOO_MANY_ROWS)
        if sum(map(len, row)) > csv_upload.MAX_IDENTIFY_BYTES // 8:
            size = len(msgspec.json.encode(row))
            if size > csv_upload.MAX_IDENTIFY_BYTES - 1024:
                raise UploadRejected(
                    f"Row {count} is too large: as an Identify call it would be over {size} "
                    f"bytes, and a call may be at most {csv_upload.MAX_IDENTIFY_BYTES}."
                )
    if layout is None:
        raise UploadRejected(csv_upload.EMPTY_FILE)
    return Checked(layout, count)


# --- rows --------------------------------------------------------------------------------------


class RowError(NamedTuple):
    """One line of an error report."""

    row_number: int
    code: str
    message: str
    cells: list[str]


def _cells(layout: Layout, row: Sequence[str]) -> list[str]:
    return [row[i] if i < len(row) else "" for i in range(len(layout.headers))]


def identify_of(
    layout: Layout,
    row: Sequence[str],
    message_id: str,
    anonymous_prefix: str,
    custom_trait: str | None = None,
) -> dict[str, Any]:
    """The Identify call of one row, or ``InvalidError`` whose ``field`` is the error code.

    Its identifiers as the profile CSV makes them; an item per channel whose status cell is
    not blank (an EMAIL item also for any group cell that is not), statuses as written."""
    cells = _cells(layout, row)
    contacts: dict[str, str] = {}
    for i, column in layout.identifiers:
        if column.header in ("email", "phone") and cells[i] != "":
            channel: Channel = "EMAIL" if column.header == "email" else "SMS"
            try:
                contact_key(channel, cells[i])
            except InvalidError:
                raise InvalidError(MESSAGES[key_error(channel)], key_error(channel)) from None
            contacts[column.header] = cells[i]
    items: dict[Channel, dict[str, Any]] = {}
    for i, channel in layout.statuses:
        _status(cells[i])
        if cells[i].strip() == "":
            continue
        contact = contacts.get(CONTACT_COLUMN[channel])
        if contact is None:
            raise InvalidError(MESSAGES[key_error(channel)], key_error(channel))
        items[channel] = {"key": contact, "type": channel, "status": cells[i]}
    for i, group in layout.groups:
        _status(cells[i])
        if cells[i].strip() == "":
            continue
        email = contacts.get("email")
        if email is None:
            raise InvalidError(MESSAGES[reasons.INVALID_EMAIL], reasons.INVALID_EMAIL)
        item = items.setdefault("EMAIL", {"key": email, "type": "EMAIL"})
        item.setdefault("groups", []).append({"name": group.name, "status": cells[i]})
    columns = [column for _, column in layout.identifiers]
    values = [cells[i] for i, _ in layout.identifiers]
    message = csv_upload.identify_of(columns, values, message_id, anonymous_prefix)
    if custom_trait is not None:
        message["traits"][custom_trait] = True
    if items:
        message["context"]["messaging_subscriptions"] = [
            items[c] for c in ("EMAIL", "SMS", "WHATSAPP") if c in items
        ]
    message["context"]["library"] = {"name": "headwater-subscriptions-upload", "version": "1"}
    return message


def _status(cell: str) -> None:
    try:
        parse_status(cell)
    except InvalidError:
        code = reasons.INVALID_SUBSCRIPTION_STATUS
        raise InvalidError(MESSAGES[code], code) from None


def send_rows(
    lines: Iterable[str],
    layout: Layout,
    upload_id: str,
    append: Callable[[Sequence[Mapping[str, Any]]], object],
    progress: Callable[[int], None],
    report: Callable[[Sequence[RowError]], None],
    custom_trait: str | None = None,
) -> int:
    """Send every usable row as an Identify, in order, ``CHUNK_ROWS`` (or about
    ``CHUNK_BYTES``) per call of ``append``; ``progress`` with the rows sent so far, ``report``
    with the rows that cannot be sent. When ``append`` fails, that chunk's
    rows and every later one are reported ``SYSTEM_ERROR`` and the failure raised. The rows
    sent."""
    rows = csv_upload.read_rows(lines)
    while next(rows, None) == []:  # up to the header
        pass
    chunk: list[tuple[int, list[str], dict[str, Any]]] = []
    errors: list[RowError] = []
    size = sent = number = 0
    failure: Exception | None = None
    overhead = 400 + sum(len(h) + 6 for h in layout.headers)

    def flush() -> None:
        nonlocal chunk, errors, size, sent, failure
        if chunk and failure is None:
            try:
                append([message for _, _, message in chunk])
                sent += len(chunk)
            except Exception as exc:
                failure = exc
        if failure is not None:
            code = reasons.SYSTEM_ERROR
            errors += [RowError(n, code, MESSAGES[code], cells) for n, cells, _ in chunk]
        if errors:
            report(sorted(errors))
        chunk, errors, size = [], [], 0
        progress(sent)

    for row in rows:
        if csv_upload.is_blank(row):
            continue
        number += 1
        cells = _cells(layout, row)
        try:
            message = identify_of(
                layout, row, f"{upload_id}-{number}", f"{upload_id}-", custom_trait
            )
        except InvalidError as refused:
            errors.append(RowError(number, refused.field or "", refused.message, cells))
        else:
            chunk.append((number, cells, message))
            size += overhead + sum(map(len, row))
        if len(chunk) + len(errors) >= csv_upload.CHUNK_ROWS or size >= csv_upload.CHUNK_BYTES:
            flush()
    flush()
    if failure is not None:
        raise failure
    return sent


# --- the error report --------------------------------------------------------------------------


def record_errors(conn: Connection, space_id: str, upload_id: str, rows: Iterable[RowError]) -> int:
    """Add rows to an upload's report; a row already in it keeps its first error."""
    values = [
        {
            "upload_id": upload_id,
            "row_number": r.row_number,
            "space_id": space_id,
            "code": r.code,
            "message": r.message,
            "cells": list(r.cells),
        }
        for r in rows
    ]
    if not values:
        return 0
    t = schema.unify_upload_errors
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(t)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(t)
    result = conn.execute(
        stmt.on_conflict_do_nothing(index_elements=["upload_id", "row_number"]), values
    )
    return int(result.rowcount or 0)


def error_count(conn: Connection, upload_ids: Sequence[str]) -> dict[str, int]:
    """How many rows each upload's report holds."""
    if not upload_ids:
        return {}
    t = schema.unify_upload_errors
    rows = conn.execute(
        sa.select(t.c.upload_id, sa.func.count())
        .where(t.c.upload_id.in_(list(upload_ids)))
        .group_by(t.c.upload_id)
    )
    return {row[0]: int(row[1]) for row in rows}


def report_csv(conn: Connection, upload_id: str, columns: Sequence[str]) -> str:
    """The error report: the upload's columns, then ``row_number``, ``error_code`` and
    ``error_message``, one line per row not applied, in row order."""
    t = schema.unify_upload_errors
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*columns, *REPORT_COLUMNS])
    rows = conn.execute(
        sa.select(t.c.row_number, t.c.code, t.c.message, t.c.cells)
        .where(t.c.upload_id == upload_id)
        .order_by(t.c.row_number)
    )
    for row in rows:
        cells = list(row.cells or [])[: len(columns)]
        cells += [""] * (len(columns) - len(cells))
        writer.writerow([*cells, row.row_number, row.code, row.message])
    return out.getvalue()


def cells_of(columns: Sequence[str], event: Mapping[str, Any]) -> list[str]:
    """A row's cells read back from the Identify call it became (for a refusal made by
    identity resolution)."""
    traits = _object(event.get("traits"))
    context = _object(event.get("context"))
    external = {
        e.get("type"): e.get("id") for e in context.get("externalIds") or () if isinstance(e, dict)
    }
    items = {
        str(item.get("type", "")).upper(): item
        for item in context.get("messaging_subscriptions") or ()
        if isinstance(item, dict)
    }
    groups = {
        group_key(str(g.get("name", ""))): g.get("status")
        for g in items.get("EMAIL", {}).get("groups") or ()
        if isinstance(g, dict)
    }
    cells: list[str] = []
    for header in columns:
        value: object
        if header == "user_id":
            value = event.get("userId")
        elif header == "anonymous_id":
            value = event.get("anonymousId")
        elif header == "email":
            value = traits.get("email")
        elif header in STATUS_COLUMNS:
            value = items.get(STATUS_COLUMNS[header], {}).get("status")
        elif header.endswith(SUFFIX) and header not in external:
            value = groups.get(group_key(header[: -len(SUFFIX)]))
        else:
            value = external.get(header)
        cells.append(value if isinstance(value, str) else "")
    return cells


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
