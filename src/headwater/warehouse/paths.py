"""Every file path the warehouses make from what users typed, made here by one set of rules.

User text reaches the file system three ways: names (a warehouse's name in its default DuckDB
file ``warehouse-<name>.duckdb``, a track event's name in the lake's ``segment_type=<event>``
and ``schemas/<source>/<event>.json``), paths in settings (DuckDB's ``path``, a lake's
``location``), and ids (a source id in lake keys, a warehouse id in the lake's seen-ids file).

* A name is one path segment, never a directory: ``name_segment`` keeps it as it is when that
  is a safe segment — so every name that worked keeps its file — and otherwise replaces ``/``
  and control characters and adds ``~`` and 12 hex digits of the name's SHA-256. ``bounded``
  does the same for length alone (the lake's table names). Segments stay within
  ``MAX_SEGMENT_BYTES``, under the file systems' 255 with room for the ``.wal``, ``-journal``
  and temporary names that DuckDB, SQLite and the lake add.
* A name kept as it is never ends like a hashed one (``~`` or ``__`` and 12 hex digits; such a
  name is hashed too), so two names never share a file: the same name always gives the same
  segment, different ones different segments.
* A path setting: relative paths are inside the data directory, and a ``..`` segment is
  refused anywhere (``check_path`` for settings, a 4xx; ``resolve_path`` again when opening,
  for settings stored before the check). Absolute paths are the operator's choice (another
  disk, a mounted volume) and are kept; only the admin token or the config file can set them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Final

from headwater.errors import UnsafePathError

MAX_SEGMENT_BYTES: Final = 240  # NAME_MAX (255) less room for suffixes others add
HASH_CHARS: Final = 12

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_SAFE_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def bounded(text: str, max_bytes: int, *, mark: str = "~") -> str:
    """``text`` when it fits in ``max_bytes`` (UTF-8) and does not end like a bounded name;
    else as much of it as fits with ``mark`` and a hash of the whole text."""
    size = _size(text)
    if size is not None and size <= max_bytes and not _looks_hashed(text, mark):
        return text
    return _hashed(text, text, max_bytes, mark)


def name_segment(name: str, *, prefix: str = "", suffix: str = "") -> str:
    """One path segment for a file named after ``name``: ``prefix + name + suffix`` when that
    is safe, else a readable form of ``name`` with a hash of it (see the module's rules)."""
    whole = prefix + name + suffix
    size = _size(whole)
    if (
        size is not None
        and size <= MAX_SEGMENT_BYTES
        and _plain_segment(whole)
        and not _looks_hashed(name, "~")
    ):
        return whole
    readable = _UNSAFE.sub("_", name)
    if not prefix and readable.startswith("."):
        readable = "_" + readable[1:]  # no hidden files, no "." or ".."
    budget = MAX_SEGMENT_BYTES - len(_utf8(prefix + suffix))
    return prefix + _hashed(readable, name, budget, "~") + suffix


def key_segment(text: str) -> str:
    """An id as one segment of a file path or object key: itself when made of letters,
    digits, ``_``, ``-`` and ``.`` (not first), else percent-encoded (the archive's rule for
    source ids, so both name a source alike); bounded like any segment."""
    if not _SAFE_KEY.fullmatch(text):
        text = "".join(chr(b) if b in _SAFE_KEY_BYTES else f"%{b:02X}" for b in text.encode())
    return bounded(text, MAX_SEGMENT_BYTES)


def check_path(text: str, what: str) -> str:
    """``text`` when it can name a file or directory for ``what``; UnsafePathError (a
    ValueError, so settings models turn it into a 4xx) saying what to fix. Reads no disk."""
    if not text:
        raise UnsafePathError(f"{what} must not be empty")
    if _CONTROL.search(text) or _size(text) is None:
        raise UnsafePathError(f"{what} must not contain control characters or lone surrogates")
    if ".." in PurePosixPath(text).parts:
        raise UnsafePathError(
            f"{what} {text!r} must not contain '..': give a path inside the data directory "
            "(relative) or an absolute one"
        )
    return text


def resolve_path(root: Path, text: str, what: str) -> Path:
    """The file or directory a path setting names: a relative one inside ``root``, an
    absolute one as given. UnsafePathError for what ``check_path`` refuses."""
    path = Path(check_path(text, what))
    return path if path.is_absolute() else root / path


def _plain_segment(segment: str) -> bool:
    return (
        segment not in ("", ".", "..")
        and not segment.startswith(".")
        and _UNSAFE.search(segment) is None
    )


def _looks_hashed(text: str, mark: str) -> bool:
    """True when ``text`` ends like ``_hashed`` output: ``mark`` and HASH_CHARS hex digits."""
    cut = len(text) - HASH_CHARS
    return (
        cut >= len(mark)
        and text[cut - len(mark) : cut] == mark
        and all(c in "0123456789abcdef" for c in text[cut:])
    )


def _hashed(readable: str, original: str, max_bytes: int, mark: str) -> str:
    digest = hashlib.sha256(_utf8(original)).hexdigest()[:HASH_CHARS]
    room = max(0, max_bytes - len(mark) - HASH_CHARS)
    start = _utf8(readable)[:room].decode("utf-8", "ignore")  # no half characters
    return start + mark + digest


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _size(text: str) -> int | None:
    """UTF-8 length; None for text no file system can hold (a lone surrogate)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None
