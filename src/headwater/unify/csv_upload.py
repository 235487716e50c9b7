"""Profile CSV upload (spec/unify-engage.md §10.1): a file of profiles and traits becomes one
internal Identify call per row, which goes through the whole pipeline like any event.

The file is checked whole before any row is sent, in the order a user meets Segment's rules,
each refusal with Segment's exact message: a ``.csv`` name; at most 100 MB; not empty (a
header and a row); parsable (UTF-8, no row longer than the header); at most 299 columns; no
empty header; no leading, trailing or consecutive spaces in a header; no duplicate header
(headers are case-sensitive); only the allowed characters in headers; an identifier column,
unless ``anonymous_id`` is configured; at most 1,000,000 rows. The checks read the file as a
stream of lines (``check``), so a 100 MB file is never held in memory; the sending reads it
again, ``CHUNK_ROWS`` rows (or about 500 KB) per ingest log record.

A row becomes an Identify: the ``user_id`` and ``anonymous_id`` columns its ``userId`` and
``anonymousId``, the ``email`` column ``traits.email``, every other identifier column of the
space's settings a ``context.externalIds`` element (where the extractor reads every
configured type), every other column a custom trait named by its header, as a string; blank
cells are left out. A row without a ``userId`` or ``anonymousId`` (the Spec needs one) gets an
``anonymousId`` made from its identifiers, the same for the same identifiers whichever file
they come in, so uploading a file again adds no identifier to a profile.
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal, NamedTuple, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import UploadRejected
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import BASE62, WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.settings import IdentitySettings
from headwater.unify.spaces import SpaceInfo, SpaceStore

MAX_BYTES: Final = 100 * 1024 * 1024
MAX_ROWS: Final = 1_000_000
MAX_COLUMNS: Final = 299
CHUNK_ROWS: Final = 500  # rows per ingest log record, at most
CHUNK_BYTES: Final = 500 * 1024  # and about the Tracking API's batch size, at most
MAX_IDENTIFY_BYTES: Final = 32 * 1024  # the Tracking API's limit on one message
HISTORY_SECONDS: Final = 30 * 86_400  # Update History: the last 30 days
STALE_SECONDS: Final = 300  # a processing upload without progress this long has died

# Segment's messages (§10.1), exactly.
INVALID_FILE_TYPE: Final = (
    "You can upload only .csv files. Change your file format, then try again."
)
EMPTY_FILE: Final = "This file contains no data. Add data to your CSV, then try again."
PARSING_ERROR: Final = (
    "We encountered an issue while parsing your CSV file. Validate the CSV file and try again."
)
FALLBACK: Final = "Something went wrong. Try again later."
EMPTY_HEADER: Final = (
    "This file contains empty header(s). Remove the empty header(s), then try again."
)
TOO_MANY_ROWS: Final = "Too many rows. You can upload up to 1000000 rows."
TOO_MANY_COLUMNS: Final = "Your CSV file is exceeding the limit of 299 columns."
TOO_LARGE: Final = "Files can be up to 100 MB."
SPACES: Final = (
    "This file contains leading, trailing or consecutive spaces. Remove leading, trailing or "
    "consecutive spaces, then try again."
)
DUPLICATE_HEADERS: Final = (
    "This file contains duplicate header(s). Remove duplicate header(s), then try again."
)
INVALID_CHARACTERS: Final = (
    "This file contains invalid character(s). Remove invalid character(s), then try again."
)
MISSING_IDENTIFIER: Final = (
    "This file is missing an identifier column and does not have `anonymous_id` configured. "
    "Add an identifier column or add `anonymous_id` in your identity resolution "
    "configuration, then try again."
)

# The allowed characters of the docs' list: English letters, digits, the space (single, inside
# a header), these specials and these accented letters (some written with combining marks,
# which are allowed as such).
_SPECIALS = "!@#$%^&*()_+-=[]{}:\\|.`~<>/?"
_ACCENTED = (
    "àáâäǎæãåāçćčċďðḍèéêëěẽēėęğġgg͟hħḥh̤ìíîïǐĩīıįķk͟hłļľl̥ṁm̐òóôöǒœøõōřṛr̥ɽßşșśšṣs̤s̱sțťþṭt̤ʈ"
    "ùúûüǔũūűůŵýŷÿźžżẓz̤ÀÁÂÄǍÆÃÅĀÇĆČĊĎÐḌÈÉÊËĚẼĒĖĘĞĠGG͟HĦḤH̤ÌÍÎÏǏĨĪIĮĶK͟HŁĻĽL̥ṀM̐ÒÓÔÖǑŒØÕŌŘṚR̥Ɍ"
    "SẞŚŠŞȘṢS̤S̱ȚŤÞṬT̤ƮÙÚÛÜǓŨŪŰŮŴÝŶŸŹŽŻẒZ"
)
ALLOWED: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 " + _SPECIALS + _ACCENTED
)

Role = Literal["userId", "anonymousId", "email", "external", "trait"]


class Column(NamedTuple):
    header: str
    role: Role


class Checked(NamedTuple):
    """A file that passed every check: its columns and how many rows it has."""

    columns: tuple[Column, ...]
    rows: int


def check_file_name(name: str) -> None:
    if not name.lower().endswith(".csv"):
        raise UploadRejected(INVALID_FILE_TYPE, 415)


def identifier_types(settings: IdentitySettings) -> list[str]:
    """The identifier columns a space's file may have: its user identifiers, by priority."""
    users = [s.type for s in settings.identifiers if s.collection == "users"]
    return settings.priority_order(users)


def template(settings: IdentitySettings) -> str:
    """Segment's "Download Template": a header row of the space's identifier columns."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(identifier_types(settings))
    return out.getvalue()


def columns_of(headers: Sequence[str], settings: IdentitySettings) -> tuple[Column, ...]:
    """Check the header row (Segment's order) and give each column its role."""
    if len(headers) > MAX_COLUMNS:
        raise UploadRejected(TOO_MANY_COLUMNS)
    if any(h == "" for h in headers):
        raise UploadRejected(EMPTY_HEADER)
    if any(h != h.strip(" ") or "  " in h for h in headers):
        raise UploadRejected(SPACES)
    if len(set(headers)) != len(headers):
        raise UploadRejected(DUPLICATE_HEADERS)
    if any(c not in ALLOWED for h in headers for c in h):
        raise UploadRejected(INVALID_CHARACTERS)
    identifiers = set(identifier_types(settings))
    if not identifiers.intersection(headers) and settings.get("anonymous_id") is None:
        raise UploadRejected(MISSING_IDENTIFIER)
    columns = []
    for header in headers:
        role: Role
        if header == "user_id":
            role = "userId"
        elif header == "anonymous_id":
            role = "anonymousId"
        elif header == "email" and "email" in identifiers:
            role = "email"
        elif header in identifiers:
            role = "external"
        else:
            role = "trait"
        columns.append(Column(header, role))
    return tuple(columns)


def read_rows(lines: Iterable[str]) -> Iterator[list[str]]:
    """The CSV's records; every failure to read it is Segment's parsing error."""
    reader = csv.reader(lines, strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError):
            raise UploadRejected(PARSING_ERROR) from None
        yield row


def is_blank(row: Sequence[str]) -> bool:
    return all(cell == "" for cell in row)


def check(lines: Iterable[str], settings: IdentitySettings) -> Checked:
    """Read a whole file (text lines, newlines kept) and check it; nothing is kept but a
    count. Raises ``UploadRejected`` with Segment's message."""
    rows = read_rows(lines)
    headers = next(rows, None)
    while headers == []:  # blank lines before the header
        headers = next(rows, None)
    if headers is None:
        raise UploadRejected(EMPTY_FILE)
    if headers[0].startswith("\ufeff"):  # Excel's byte order mark
        headers[0] = headers[0][1:]
    width = len(headers)
    count = 0
    columns: tuple[Column, ...] | None = None
    for row in rows:
        if is_blank(row):
            continue
        if len(row) > width:
            raise UploadRejected(PARSING_ERROR)
        if columns is None:  # the header's checks come after "no data" only
            columns = columns_of(headers, settings)
        count += 1
        if count > MAX_ROWS:
            raise UploadRejected(TOO_MANY_ROWS)
        if sum(map(len, row)) > MAX_IDENTIFY_BYTES // 8:
            size = len(msgspec.json.encode(identify_of(columns, row, "m", "a")))
            if size > MAX_IDENTIFY_BYTES - 1024:
                raise UploadRejected(
                    f"Row {count} is too large: as an Identify call it would be {size} bytes, "
                    f"and a call may be at most {MAX_IDENTIFY_BYTES}. Split its traits."
                )
    if columns is None:
        raise UploadRejected(EMPTY_FILE)
    return Checked(columns, count)


def identify_of(
    columns: Sequence[Column], row: Sequence[str], message_id: str, anonymous_prefix: str
) -> dict[str, Any]:
    """The Identify call of one row (blank cells left out)."""
    message: dict[str, Any] = {"type": "identify", "messageId": message_id}
    traits: dict[str, Any] = {}
    external: list[dict[str, str]] = []
    for column, value in zip(columns, row, strict=False):
        if value == "":
            continue
        role = column.role
        if role == "trait":
            traits[column.header] = value
        elif role == "email":
            traits["email"] = value
        elif role == "external":
            external.append(
                {"id": value, "type": column.header, "collection": "users", "encoding": "none"}
            )
        else:
            message[role] = value
    if "userId" not in message and "anonymousId" not in message:
        message["anonymousId"] = _anonymous_id(anonymous_prefix, traits.get("email"), external)
    message["traits"] = traits
    context: dict[str, Any] = {"library": {"name": "headwater-csv-upload", "version": "1"}}
    if external:
        context["externalIds"] = external
    message["context"] = context
    return message


def _anonymous_id(prefix: str, email: str | None, external: list[dict[str, str]]) -> str:
    """The same for the same identifiers; a fresh one for a row without any."""
    ids = sorted((e["type"], e["id"]) for e in external)
    if email is not None:
        ids.append(("email", email))
    if not ids:
        return prefix + secrets.token_hex(16)
    digest = hashlib.sha256(msgspec.json.encode(sorted(ids))).hexdigest()
    return "csv_" + digest[:32]


def text_lines(binary: IO[bytes]) -> io.TextIOWrapper[IO[bytes]]:
    """A binary file as the CSV reader takes it: UTF-8 (a byte order mark kept for ``check``
    to drop), universal newlines left to the reader."""
    return io.TextIOWrapper(binary, encoding="utf-8", errors="strict", newline="")


# --- sending ----------------------------------------------------------------------------------


class Appender(Protocol):
    """``ingest.internal.InternalAppend``: one ingest log record per call."""

    def append(
        self,
        workspace_id: str,
        source_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        forwarded_from: str = "",
    ) -> list[str]: ...


def send_rows(
    lines: Iterable[str],
    columns: Sequence[Column],
    upload_id: str,
    append: Callable[[Sequence[Mapping[str, Any]]], object],
    progress: Callable[[int], None],
) -> int:
    """Send every row as an Identify, ``CHUNK_ROWS`` (or about ``CHUNK_BYTES``) per call of
    ``append``; ``progress`` after each with the rows sent so far. The rows sent."""
    rows = read_rows(lines)
    while next(rows, None) == []:  # up to the header
        pass
    chunk: list[dict[str, Any]] = []
    size = sent = number = 0
    # A row's size as JSON, roughly: its cells, its headers, quotes and punctuation.
    overhead = 300 + sum(len(c.header) + 6 for c in columns)
    for row in rows:
        if is_blank(row):
            continue
        number += 1
        chunk.append(identify_of(columns, row, f"{upload_id}-{number}", f"{upload_id}-"))
        size += overhead + sum(map(len, row))
        if len(chunk) == CHUNK_ROWS or size >= CHUNK_BYTES:
            append(chunk)
            sent += len(chunk)
            chunk, size = [], 0
            progress(sent)
    if chunk:
        append(chunk)
        sent += len(chunk)
        progress(sent)
    return sent


# --- the upload source and the Update History ---------------------------------------------------

UPLOAD_ID_PREFIX: Final = "upl_"


def new_upload_id() -> str:
    return UPLOAD_ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(22))


@dataclass(frozen=True)
class Upload:
    id: str
    space_id: str
    file_name: str
    status: str  # processing, succeeded, failed
    error: str | None
    rows: int
    appended: int
    columns: list[str]
    source_id: str | None
    created_at: int
    updated_at: int
    kind: str = "profiles"  # or "subscriptions" (headwater.unify.subscription_upload)
    custom_trait: str | None = None


class Busy(Exception):
    """Another upload of the space is being sent."""


class Uploads:
    """A workspace's profile CSV uploads: the source they send from and their history."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace
        self._spaces = SpaceStore(workspace)

    @property
    def engine(self) -> Engine:
        return self._ws.engine

    def now(self) -> int:
        return self._ws.now()

    def upload_source(self, space: SpaceInfo) -> str:
        """The space's upload source (Segment's "Engage output source"): made on the first
        upload, connected to the space on every one (so a source list changed since cannot
        leave it out)."""
        us = schema.unify_upload_sources
        with self._ws.reading() as conn:
            known = conn.execute(
                sa.select(us.c.source_id).where(us.c.space_id == space.id)
            ).scalar_one_or_none()
        source = self._ws.get_source(known) if known is not None else None
        if source is None:
            taken = {s.name for s in self._ws.all_sources()}
            base = name = f"{space.name} (profiles CSV upload)"[:200]
            n = 1
            while name in taken:
                n += 1
                name = f"{base[:190]} {n}"
            source = self._ws.create_source(name)
            with self._ws.writing() as conn:
                conn.execute(us.delete().where(us.c.space_id == space.id))
                conn.execute(us.insert().values(space_id=space.id, source_id=source.id))
        if source.id not in space.source_ids:
            self._spaces.connect_source(space.id, source.id)
        return source.id

    def start(
        self,
        space_id: str,
        file_name: str,
        *,
        rows: int = 0,
        columns: Sequence[str] = (),
        alone: bool = False,
        kind: str = "profiles",
        custom_trait: str | None = None,
    ) -> Upload:
        """Record an upload; ``alone``: only if no other of the space is being sent (else
        ``Busy``), checked in the same transaction, so two files sent at once cannot both
        pass."""
        now = self.now()
        upload = Upload(
            new_upload_id(),
            space_id,
            file_name[:300],
            "processing",
            None,
            rows,
            0,
            list(columns),
            None,
            now,
            now,
            kind,
            custom_trait,
        )
        with write_transaction(self.engine) as conn:
            if alone:
                # PostgreSQL: the space's row locked, so a second start waits for this one's
                # commit and then sees its upload (SQLite's write lock already does that).
                sp = schema.spaces
                conn.execute(sa.select(sp.c.id).where(sp.c.id == space_id).with_for_update())
                if self._busy(conn, space_id):
                    raise Busy(space_id)
            conn.execute(
                schema.unify_csv_uploads.insert().values(
                    id=upload.id,
                    space_id=space_id,
                    file_name=upload.file_name,
                    status=upload.status,
                    error=None,
                    rows=rows,
                    appended=0,
                    columns=list(columns),
                    source_id=None,
                    created_at=now,
                    updated_at=now,
                    kind=kind,
                    custom_trait=custom_trait,
                )
            )
        return upload

    def update(self, upload_id: str, **values: Any) -> None:
        t = schema.unify_csv_uploads
        with write_transaction(self.engine) as conn:
            conn.execute(
                t.update().where(t.c.id == upload_id).values(updated_at=self.now(), **values)
            )

    def busy(self, space_id: str) -> bool:
        """Whether an upload of the space is being sent (one file at a time)."""
        with self.engine.connect() as conn:
            return self._busy(conn, space_id)

    def _busy(self, conn: Connection, space_id: str) -> bool:
        t = schema.unify_csv_uploads
        found = conn.execute(
            sa.select(t.c.id).where(
                t.c.space_id == space_id,
                t.c.status == "processing",
                t.c.updated_at >= self.now() - STALE_SECONDS,
            )
        ).first()
        return found is not None

    def get(self, space_id: str, upload_id: str) -> Upload | None:
        t = schema.unify_csv_uploads
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.space_id == space_id, t.c.id == upload_id)
            ).first()
        return self._upload(row) if row is not None else None

    def history(self, space_id: str, kind: str | None = None) -> list[Upload]:
        """The space's uploads of the last 30 days (of one kind, if given), newest first."""
        t = schema.unify_csv_uploads
        select = sa.select(t).where(
            t.c.space_id == space_id, t.c.created_at >= self.now() - HISTORY_SECONDS
        )
        if kind is not None:
            select = select.where(t.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(select.order_by(t.c.created_at.desc(), t.c.id.desc())).all()
        return [self._upload(row) for row in rows]

    def purge(self) -> int:
        """Uploads past the 30 days go, with their error reports."""
        t, errors = schema.unify_csv_uploads, schema.unify_upload_errors
        old = t.c.created_at < self.now() - HISTORY_SECONDS
        with write_transaction(self.engine) as conn:
            conn.execute(
                errors.delete().where(errors.c.upload_id.in_(sa.select(t.c.id).where(old)))
            )
            gone = conn.execute(t.delete().where(old))
            return gone.rowcount or 0

    def _upload(self, row: Any) -> Upload:
        status, error = row.status, row.error
        if status == "processing" and row.updated_at < self.now() - STALE_SECONDS:
            # The process sending it stopped: what was sent stays sent, the rest never will be.
            status = "failed"
            error = f"{FALLBACK} (the server stopped while sending this file)"
        return Upload(
            row.id,
            row.space_id,
            row.file_name,
            status,
            error,
            int(row.rows),
            int(row.appended),
            list(row.columns or ()),
            row.source_id,
            int(row.created_at),
            int(row.updated_at),
            row.kind or "profiles",
            row.custom_trait,
        )


def upload_json(upload: Upload) -> dict[str, Any]:
    def iso(epoch: int) -> str:
        return format_timestamp(datetime.fromtimestamp(epoch, UTC))

    return {
        "id": upload.id,
        "kind": upload.kind,
        "fileName": upload.file_name,
        "status": upload.status,
        "error": upload.error,
        "rows": upload.rows,
        "appendedRows": upload.appended,
        "columns": upload.columns,
        "customTrait": upload.custom_trait,
        "sourceId": upload.source_id,
        "createdAt": iso(upload.created_at),
        "updatedAt": iso(upload.updated_at),
    }
