"""Deleting a subject's events from the archive's hour files (``Target("archive", "archive")``).

An hour file holding the subject is rewritten without its events: every gzip member is copied
as it is unless its decompressed bytes hold one of the subject's ids, in which case it is
recompressed without the subject's lines and padded back to its old length (a gzip ``FEXTRA``
field, then empty members if needed). Member ends therefore never move, so the offsets that
warehouse syncs and the data lake keep per hour file (``Archive.members(done=…)``) stay valid.

The new file is written beside the old one (``<HH>.ndjson.gz.erasing``), fsynced, and moved
over it with ``os.replace``, then the directory is fsynced: a crash leaves the old file or the
new one, and a temp file left by a crash is removed by the next run. The rewrite holds the hour
file's lock (the one ``ArchiveWriter`` appends under), so no append lands in the old inode
after it was read; a writer that waited for the lock sees the old file unlinked and opens the
new one.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from isal import igzip

from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.store.archive import (
    _DATE_DIR,
    _HOUR_FILE,
    COMPRESSLEVEL,
    _dir_name,
    _fsync_dir,
    _members,
    _write_all,
)

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".erasing"
# More ids than this and a bytes search per id costs more than decoding every line.
_MAX_NEEDLES = 64
_MAX_XLEN = 0xFFFF
_EMPTY_MEMBER = 22  # header 10, XLEN 2, an empty final deflate block 2, CRC and size 8
_JSON_PLAIN = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\"), ord("/")}
_decode = msgspec.json.Decoder().decode


class ArchiveEraser:
    """Rewrites the hour files of the erasure's sources (all when it names none).

    ``pending(created_at)``, when given, says whether events received before the regulation
    may still be on their way to the archive (the archive consumer group is behind): the
    eraser then reports ``Progress`` rather than finishing before they land.
    """

    def __init__(
        self, archive_dir: Path | str, *, pending: Callable[[float], bool] | None = None
    ) -> None:
        self._dir = Path(archive_dir)
        self._pending = pending

    @property
    def target(self) -> Target:
        return Target("archive", "archive", "Archive")

    def erase(self, erasure: Erasure) -> Progress | None:
        if self._pending is not None and self._pending(erasure.created_at):
            return Progress("the archive has not yet written every event received before it")
        subjects = erasure.subjects
        if not subjects:
            return None
        needles = _needles(subjects)
        for path in self._files(erasure.source_ids):
            if path.name.endswith(".torn"):
                _erase_torn(path, needles)
            else:
                erase_file(path, subjects, needles)
        return None

    def _files(self, source_ids: frozenset[str] | None) -> Iterator[Path]:
        if not self._dir.is_dir():
            return
        if source_ids is None:
            source_dirs = sorted(p for p in self._dir.iterdir() if p.is_dir())
        else:
            source_dirs = [self._dir / _dir_name(s) for s in sorted(source_ids)]
        for source_dir in source_dirs:
            if not source_dir.is_dir():
                continue
            for day_dir in sorted(source_dir.iterdir()):
                if not _DATE_DIR.fullmatch(day_dir.name) or not day_dir.is_dir():
                    continue
                for path in sorted(day_dir.iterdir()):
                    if path.name.endswith(TEMP_SUFFIX):
                        path.unlink(missing_ok=True)  # a crash's leftover: the old file stands
                    elif path.name.endswith(".torn") or _HOUR_FILE.fullmatch(path.name):
                        yield path


def _needles(subjects: Subjects) -> list[bytes] | None:
    """The ids as they appear inside a JSON string, or None when a line must be decoded to
    tell (too many ids, or one that JSON may write escaped)."""
    values = [
        *subjects.user_ids,
        *subjects.anonymous_ids,
        *subjects.object_ids,
    ]
    if len(values) > _MAX_NEEDLES:
        return None
    needles = []
    for value in values:
        raw = value.encode()
        if not raw or any(b not in _JSON_PLAIN for b in raw):
            return None
        needles.append(raw)
    return needles


def _holds(data: bytes, needles: list[bytes] | None) -> bool:
    return needles is None or any(n in data for n in needles)


def erase_file(path: Path, subjects: Subjects, needles: list[bytes] | None) -> int:
    """Rewrite one hour file without the subject's events; return how many went."""
    fd = _open_locked(path)
    if fd is None:
        return 0
    try:
        removed, plan, end, size = _scan(fd, path, subjects, needles)
        # A torn tail (a crash mid-append) is left for the writer to set aside, unless what
        # can be read of it holds the subject: its events were never committed as archived.
        keep_tail = end == size or not _holds(_partial(os.pread(fd, size - end, end)), needles)
        if not plan and keep_tail:
            return 0
        temp = path.with_name(path.name + TEMP_SUFFIX)
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            position = 0
            for start, stop, replacement in plan:
                _copy(fd, out, position, start)
                _write_all(out, replacement)
                position = stop
            _copy(fd, out, position, size if keep_tail else end)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(temp, path)
        _fsync_dir(path.parent)
        logger.info("archive: removed %d events of an erased subject from %s", removed, path)
        return removed
    finally:
        os.close(fd)  # releases the lock; a waiting writer finds the old inode unlinked


def _scan(
    fd: int, path: Path, subjects: Subjects, needles: list[bytes] | None
) -> tuple[int, list[tuple[int, int, bytes]], int, int]:
    """(events removed, ``(start, end, replacement)`` per member to replace, where the intact
    members end, the file's size)."""
    size = os.fstat(fd).st_size
    plan: list[tuple[int, int, bytes]] = []
    removed = 0
    start = 0
    chunks: list[bytes] = []
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        for data, end in _members(f, quiet=True):
            if end < 0:
                chunks.append(data)
                continue
            body = b"".join(chunks)
            chunks = []
            if _holds(body, needles):
                kept, gone = _without(body, subjects, needles)
                if gone:
                    removed += gone
                    plan.append((start, end, _padded(kept, end - start, path)))
            start = end
    return removed, plan, start, size


def _without(body: bytes, subjects: Subjects, needles: list[bytes] | None) -> tuple[bytes, int]:
    kept: list[bytes] = []
    gone = 0
    for line in body.split(b"\n"):
        if not line:
            continue
        if _holds(line, needles):
            try:
                event = _decode(line)
            except msgspec.DecodeError:
                event = None  # unreadable to every reader; it may be the subject's
                if needles is not None:
                    gone += 1
                    continue
            if isinstance(event, dict) and subjects.matches(event):
                gone += 1
                continue
        kept.append(line)
    return (b"\n".join(kept) + b"\n" if kept else b""), gone


def _padded(body: bytes, size: int, path: Path) -> bytes:
    """``body`` as gzip members exactly ``size`` bytes long in all."""
    member = igzip.compress(body, compresslevel=COMPRESSLEVEL, mtime=0)
    if len(member) + 2 > size:
        member = igzip.compress(body, compresslevel=3, mtime=0)
    if len(member) + 2 > size:
        raise OSError(f"archive: {path}: a member without the subject does not fit its place")
    remaining = size - len(member)
    fillers: list[bytes] = []
    while remaining > _MAX_XLEN + 2:
        take = min(_EMPTY_MEMBER + _MAX_XLEN, remaining - 2)
        fillers.append(_filler(take))
        remaining -= take
    return b"".join([_with_extra(member, remaining - 2), *fillers])


def _with_extra(member: bytes, xlen: int) -> bytes:
    """The member with an ``FEXTRA`` field of ``xlen`` bytes (a subfield ``HW`` of zeros)."""
    flags = member[3] | 0x04
    extra = b"HW" + struct.pack("<H", xlen - 4) + bytes(xlen - 4) if xlen >= 4 else bytes(xlen)
    return (
        member[:3] + bytes([flags]) + member[4:10] + struct.pack("<H", xlen) + extra + member[10:]
    )


def _filler(size: int) -> bytes:
    """An empty gzip member of ``size`` bytes (22 to 65,557)."""
    xlen = size - _EMPTY_MEMBER
    header = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff"
    extra = b"HW" + struct.pack("<H", xlen - 4) + bytes(xlen - 4) if xlen >= 4 else bytes(xlen)
    return header + struct.pack("<H", xlen) + extra + b"\x03\x00" + bytes(8)


def _partial(tail: bytes) -> bytes:
    """A torn tail's raw bytes and what of it can be decompressed."""
    out = [tail]
    for data, _ in _members(io.BytesIO(tail), quiet=True):
        out.append(data)
    return b"".join(out)


def _erase_torn(path: Path, needles: list[bytes] | None) -> None:
    """A torn tail set aside (``.torn``) is kept only for a look (its intact members were
    salvaged into the hour file): one that may hold the subject goes whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if _holds(_partial(data), needles):
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)


def _copy(source: int, out: int, start: int, stop: int) -> None:
    while start < stop:
        chunk = os.pread(source, min(1 << 20, stop - start), start)
        if not chunk:
            raise OSError("archive: an hour file shrank while it was locked")
        _write_all(out, chunk)
        start += len(chunk)


def _open_locked(path: Path) -> int | None:
    """A descriptor holding the hour file's append lock, or None when the file is gone."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
