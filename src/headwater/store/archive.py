"""The archive: every accepted event, per source, in hourly gzip NDJSON files.

Replay, warehouses and the data lake read history from here rather than from the event log,
which only keeps records until every consumer has passed them. Layout, under the archive
directory (``<data dir>/archive``)::

    <source_id>/<YYYY-MM-DD>/<HH>.ndjson.gz      one file per hour of ``receivedAt`` (UTC)

Each flush appends one gzip member holding one JSON line per event; a multi-member gzip file
is a valid gzip file, so ``gzip.open`` (or ``zcat``) reads it whole. The writer fsyncs before
the consumer runner commits the log offset, so an archived event is durable before the log may
forget it. A crash mid-write leaves a torn last member: readers stop at it, and the next write
moves it aside (``<HH>.ndjson.gz.<offset>.torn``) before appending, so earlier members stay
intact. The events in a torn member come back anyway: their log offsets were never committed.
Damage in the middle of a file (a bad disk block) would also cut off the intact members after
it, whose offsets were committed; so every intact member found in the tail set aside is
appended back to the hour file at once. What remains only in the ``.torn`` file is undecodable;
it is kept ``TORN_RETENTION_DAYS`` for a look, then purged (or earlier, with its hour).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
import shutil
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

import msgspec
from isal import igzip

from headwater.errors import RecordError
from headwater.store.record import decode_processed
from headwater.timestamps import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

GROUP = "archive"
DEFAULT_RETENTION_DAYS = 90
TORN_RETENTION_DAYS = 7

_GZIP_WBITS = 31  # zlib: gzip header and trailer, CRC checked at each member's end
_MEMBER_START = b"\x1f\x8b\x08"  # gzip magic and the deflate method: how every member starts
_READ_CHUNK = 1 << 20
_MAX_OUTPUT = 1 << 22  # bound the memory one decompress call may take
_HOUR = timedelta(hours=1)
_KNOWN_FILES = 10_000
_HOUR_FILE = re.compile(r"(\d{2})\.ndjson\.gz")
_DATE_DIR = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

_decode = msgspec.json.Decoder().decode
# ISA-L's level 1 (isal.igzip writes ordinary gzip members): on varied events about 3 times
# faster than zlib's fastest level (itself 2.5 times faster than the default 6), for files a
# little smaller than that level's. Compression was the archive's largest cost per event,
# and every event of the processed stream passes through it.
COMPRESSLEVEL = 1


class ArchiveWriter:
    """Log consumer handler: ``writer(records)`` with (partition, offset, payload) tuples."""

    def __init__(self, archive_dir: Path | str, *, compresslevel: int = COMPRESSLEVEL) -> None:
        self._dir = Path(archive_dir)
        self._level = compresslevel
        # (inode, size) of each file after our last write: if the file still looks like
        # that, nobody has written since and its tail needs no check.
        self._known: dict[Path, tuple[int, int]] = {}

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        lines: dict[tuple[str, str, str], list[msgspec.Raw | bytes]] = defaultdict(list)
        for partition, offset, payload in records:
            try:
                record = decode_processed(payload)
            except RecordError as exc:
                logger.error("archive: skipping log record %d/%d: %s", partition, offset, exc)
                continue
            if record.events:
                # Every event of a record arrived (its receivedAt) in the minute, and so the
                # hour, of the record's received_at: coalesced requests share their minute.
                day, hour = _hour_of(record.received_at)
                lines[(record.source_id, day, hour)].extend(record.events)
        for (source, day, hour), batch in lines.items():
            path = self._dir / _dir_name(source) / day / f"{hour}.ndjson.gz"
            batch.append(b"")
            member = igzip.compress(b"\n".join(batch), compresslevel=self._level, mtime=0)
            self._append(path, member)

    def _append(self, path: Path, member: bytes) -> None:
        fd, created = _open_locked(path)
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            known = self._known.pop(path, None)
            if known != (stat.st_ino, size):
                # Check what we have not written ourselves: from our last end if the file is
                # the one we wrote and has only grown, else from the start.
                start = known[1] if known and known[0] == stat.st_ino and known[1] <= size else 0
                good = _complete_end(path, start)
                if good < size:
                    aside = _set_aside(path, fd, good, size)
                    os.ftruncate(fd, good)
                    size = good + _salvage(aside, fd)
            _write_all(fd, member)
            os.fsync(fd)
            if created:
                _fsync_dir(path.parent)
            if len(self._known) >= _KNOWN_FILES:
                self._known.clear()  # past hours are rarely written again; forget them
            self._known[path] = (stat.st_ino, size + len(member))
        finally:
            os.close(fd)  # also releases the lock


_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_NEVER = datetime(1, 1, 1, tzinfo=UTC)


def hour_key(hour_start: datetime) -> str:
    return hour_start.strftime("%Y-%m-%dT%H")


@dataclass(frozen=True)
class ArchiveMember:
    """One flush of the archive writer: its events, and where in its hour file it ends."""

    hour: datetime
    key: str  # the hour file, as ``YYYY-MM-DDTHH``
    end: int
    events: list[dict[str, Any]]


def _events(lines: list[bytes], path: Path) -> list[dict[str, Any]]:
    found = []
    for line in lines:
        try:
            event = _decode(line)
        except msgspec.DecodeError:
            logger.warning("archive: skipping a line that is not JSON in %s", path)
            continue
        if isinstance(event, dict):
            found.append(event)
    return found


class Archive:
    """Reads, lists and purges the archive; the one interface replay and warehouses use."""

    def __init__(self, archive_dir: Path | str) -> None:
        self._dir = Path(archive_dir)

    def sources(self) -> list[str]:
        """Ids of the sources that have archived events."""
        if not self._dir.is_dir():
            return []
        return sorted(unquote(p.name) for p in self._dir.iterdir() if p.is_dir())

    def read(self, source_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Events with ``start <= receivedAt < end``, oldest hour first, in file order.

        A messageId repeated by the log's at-least-once delivery is given once. Copies of one
        event always share its ``receivedAt`` and so its hour file, so repeats are looked for
        within each file, which keeps memory to one hour's ids on reads of any length.
        Naive datetimes are taken as UTC.
        """
        start, end = _as_utc(start), _as_utc(end)
        for hour_start, path in self._hour_files(source_id, start, end):
            whole = start <= hour_start and hour_start + _HOUR <= end
            seen: set[Any] = set()
            for line in _read_lines(path):
                try:
                    event = _decode(line)
                except msgspec.DecodeError:
                    logger.warning("archive: skipping a line that is not JSON in %s", path)
                    continue
                if not isinstance(event, dict):
                    continue
                if not whole:
                    at = parse_timestamp(event.get("receivedAt")) or hour_start
                    if not start <= at < end:
                        continue
                message_id = event.get("messageId")
                if isinstance(message_id, str | int):
                    if message_id in seen:
                        continue
                    seen.add(message_id)
                yield event

    def members(
        self,
        source_id: str,
        since: datetime,
        *,
        done: Mapping[str, int] | None = None,
        until: datetime | None = None,
    ) -> Iterator[ArchiveMember]:
        """The intact members of the hour files from ``since``'s hour on, oldest hour first.

        ``done`` maps an hour key (``YYYY-MM-DDTHH``) to the offset read up to before: reading
        resumes there, so a reader that keeps the ``end`` of each member it finished (warehouse
        syncs) reads each event once, including events appended late to an older hour. A member
        still being written is not given until it is complete.
        """
        done = done or {}
        start = _as_utc(since).replace(minute=0, second=0, microsecond=0)
        for hour_start, path in self._hour_files(source_id, start, _as_utc(until or _FAR)):
            key = hour_key(hour_start)
            with open(path, "rb") as f:
                f.seek(done.get(key, 0))
                lines: list[bytes] = []
                partial = b""
                for data, end in _members(f):
                    if end < 0:
                        found = (partial + data).split(b"\n")
                        partial = found.pop()
                        lines.extend(line for line in found if line)
                        continue
                    if partial:
                        lines.append(partial)
                    yield ArchiveMember(hour_start, key, end, _events(lines, path))
                    lines, partial = [], b""

    def purge(
        self,
        older_than_days: int | None = DEFAULT_RETENTION_DAYS,
        *,
        now: datetime | None = None,
        torn_days: int = TORN_RETENTION_DAYS,
    ) -> int:
        """Remove hour files wholly older than the retention (None: unlimited, keep them),
        and torn tails set aside more than ``torn_days`` ago; return how many hour files
        went."""
        moment = _as_utc(now or datetime.now(UTC))
        cutoff = moment - timedelta(days=older_than_days) if older_than_days is not None else _NEVER
        torn_cutoff = (moment - timedelta(days=torn_days)).timestamp()
        if not self._dir.is_dir():
            return 0
        removed = 0
        for source_dir in sorted(p for p in self._dir.iterdir() if p.is_dir()):
            for day_dir in sorted(source_dir.iterdir()):
                day = _parse_day(day_dir.name)
                if day is None or not day_dir.is_dir():
                    continue
                _purge_torn(day_dir, torn_cutoff)
                day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                if day_start >= cutoff:
                    continue
                for path in sorted(day_dir.iterdir()):
                    hour = _HOUR_FILE.match(path.name)  # also matches its .torn copies
                    if hour is None:
                        continue
                    if day_start + timedelta(hours=int(hour.group(1)) + 1) <= cutoff:
                        _unlink_locked(path)
                        removed += path.name.endswith(".ndjson.gz")
                _remove_if_empty(day_dir)
            _remove_if_empty(source_dir)
        return removed

    def remove_days(self, source_id: str, first: date, last: date) -> int:
        """Remove one source's day directories from ``first`` to ``last`` (UTC, inclusive),
        torn tails included (§11: a source's data is deleted a whole day at a time); return
        how many hour files went. Repeating it after a crash removes what is left."""
        source_dir = self._dir / _dir_name(source_id)
        if not source_dir.is_dir():
            return 0
        removed = 0
        for day_dir in sorted(source_dir.iterdir()):
            day = _parse_day(day_dir.name)
            if day is None or not day_dir.is_dir() or not first <= day <= last:
                continue
            for path in sorted(day_dir.iterdir()):
                if _HOUR_FILE.match(path.name) is None:
                    continue
                _unlink_locked(path)
                removed += path.name.endswith(".ndjson.gz")
            _remove_if_empty(day_dir)
            _fsync_dir(source_dir)
        _remove_if_empty(source_dir)
        return removed

    def remove_all(self) -> None:
        """Remove every source's archive (a workspace's purge, §11)."""
        if not self._dir.is_dir():
            return
        for source_dir in sorted(p for p in self._dir.iterdir() if p.is_dir()):
            self.remove_days(unquote(source_dir.name), date.min, date.max)
            if source_dir.is_dir():  # anything else left in it (not an hour file)
                shutil.rmtree(source_dir, ignore_errors=True)

    def _hour_files(
        self, source_id: str, start: datetime, end: datetime
    ) -> Iterator[tuple[datetime, Path]]:
        source_dir = self._dir / _dir_name(source_id)
        if not source_dir.is_dir():
            return
        first, last = start.date(), end.date()
        for day_dir in sorted(source_dir.iterdir()):
            day = _parse_day(day_dir.name)
            if day is None or not first <= day <= last:
                continue
            for path in sorted(day_dir.iterdir()):
                hour = _HOUR_FILE.fullmatch(path.name)
                if hour is None:
                    continue
                hour_start = datetime(day.year, day.month, day.day, int(hour.group(1)), tzinfo=UTC)
                if hour_start + _HOUR > start and hour_start < end:
                    yield hour_start, path


# --- file format ------------------------------------------------------------------------------


def _members(f: BinaryIO, *, quiet: bool = False) -> Iterator[tuple[bytes, int]]:
    """Decompress member by member: ``(data, -1)`` chunks, then ``(b"", end)`` per member.

    Stops at a truncated or corrupt member (logging it unless ``quiet``); the last ``end``
    seen is where the intact part of the file ends.
    """
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    position = f.tell()  # file offset of the first byte of `pending`
    while chunk := f.read(_READ_CHUNK):
        pending = chunk
        while pending:
            try:
                data = decompressor.decompress(pending, _MAX_OUTPUT)
            except zlib.error as exc:
                if not quiet:
                    logger.warning(
                        "archive: corrupt gzip data in %s at %d: %s",
                        getattr(f, "name", "?"),
                        position,
                        exc,
                    )
                return
            if data:
                yield data, -1
            if decompressor.eof:
                rest = decompressor.unused_data
                position += len(pending) - len(rest)
                yield b"", position
                decompressor = zlib.decompressobj(_GZIP_WBITS)
            else:
                rest = decompressor.unconsumed_tail
                position += len(pending) - len(rest)
            pending = rest


def _read_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file's intact members and of the complete lines of a torn last one."""
    partial = b""
    with open(path, "rb") as f:
        for data, end in _members(f):
            if end >= 0:  # a member ends with its last line, newline or not
                if partial:
                    yield partial
                partial = b""
                continue
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            yield from (line for line in lines if line)


def _complete_end(path: Path, start: int) -> int:
    """Offset where the last intact member that starts at or after ``start`` ends."""
    good = start
    with open(path, "rb") as f:
        f.seek(start)
        for _, end in _members(f):
            if end >= 0:
                good = end
    return good


def _set_aside(path: Path, fd: int, good: int, size: int) -> Path:
    """Copy a torn tail next to the file before it is cut off, so no byte is destroyed."""
    aside = path.with_name(f"{path.name}.{good}.torn")
    logger.warning(
        "archive: %s has %d bytes of torn data after offset %d; moved to %s",
        path,
        size - good,
        good,
        aside.name,
    )
    with open(aside, "wb") as out:
        offset = good
        while offset < size:
            chunk = os.pread(fd, min(_READ_CHUNK, size - offset), offset)
            if not chunk:
                break
            out.write(chunk)
            offset += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(path.parent)
    return aside


def _salvage(aside: Path, fd: int) -> int:
    """Append to ``fd`` every run of intact members found in a torn tail; bytes appended.

    The tail starts with the member that did not decode; later members start wherever the
    gzip magic leads to a member whose CRC checks out.
    """
    salvaged = 0
    with open(aside, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start = data.find(_MEMBER_START, 1)
        while start != -1:
            f.seek(start)
            end = start
            for _, member_end in _members(f, quiet=True):
                if member_end >= 0:
                    end = member_end
            if end > start:
                _write_all(fd, data[start:end])
                salvaged += end - start
            start = data.find(_MEMBER_START, max(end, start + 1))
    if salvaged:
        os.fsync(fd)
        logger.warning("archive: salvaged %d bytes of intact members from %s", salvaged, aside.name)
    return salvaged


def _purge_torn(day_dir: Path, cutoff: float) -> None:
    """Remove the torn tails set aside before ``cutoff`` (their intact part was salvaged)."""
    for path in day_dir.glob("*.torn"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _open_locked(path: Path) -> tuple[int, bool]:
    """An O_APPEND descriptor holding the file's lock, and whether the file is new.

    Other archive processes may append to the same hour file, and ``purge`` takes the lock
    before it unlinks one; a file unlinked while we waited for its lock is opened again, so
    nothing is written to a file that is gone. The descriptor is readable so that a torn
    tail can be set aside.
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
    while True:
        created = False
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            _make_dirs(path.parent)
            try:
                fd = os.open(path, flags | os.O_CREAT, 0o644)
            except FileNotFoundError:  # purge removed the emptied directory meanwhile
                continue
            created = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return fd, created
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _unlink_locked(path: Path) -> None:
    """Unlink a file once no writer is appending to it (see ``_open_locked``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """Create missing directories and make each new entry durable in its parent."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or already gone)
        directory.rmdir()


# --- names ------------------------------------------------------------------------------------


def _hour_of(received_at: str) -> tuple[str, str]:
    """(``YYYY-MM-DD``, ``HH``) of a receivedAt (UTC), read from the stored form."""
    if len(received_at) == 24 and received_at[10] == "T" and received_at[23] == "Z":
        return received_at[:10], received_at[11:13]
    parsed = parse_timestamp(received_at)
    stored = format_timestamp(parsed if parsed is not None else datetime.now(UTC))
    return stored[:10], stored[11:13]


def _dir_name(source_id: str) -> str:
    """A source id as a directory name: itself, or percent-encoded when it is not path-safe."""
    if _SAFE_NAME.fullmatch(source_id):
        return source_id
    return "".join(chr(b) if b in _SAFE_BYTES else f"%{b:02X}" for b in source_id.encode())


def _parse_day(name: str) -> date | None:
    match = _DATE_DIR.fullmatch(name)
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
