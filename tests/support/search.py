"""Search every byte of a data directory for a marker, the way an auditor would.

After a deletion, nothing of the subject may be found anywhere: not in a file's plain bytes,
not inside a gzip file (the archive), not inside a Parquet file's compressed pages (the data
lake), not in a SQLite or DuckDB file's free pages or its ``-wal``. Gzip and Parquet contents
are decompressed; every other file (databases, WALs, temp files) is read as raw bytes.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pyarrow.parquet as pq

_GZIP = b"\x1f\x8b"
_PARQUET = b"PAR1"


def find_marker(data_dir: Path, marker: str) -> list[str]:
    """Where ``marker`` occurs: each file's path relative to ``data_dir``, with how it was
    read (``raw``, ``gzip``, ``parquet``)."""
    needle = marker.encode()
    found: list[str] = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        name = str(path.relative_to(data_dir))
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # gone since the listing (a -shm file closed meanwhile)
            continue
        if needle in data:
            found.append(f"{name} (raw)")
        if data.startswith(_GZIP) and needle in _gunzip(data):
            found.append(f"{name} (gzip)")
        if data.startswith(_PARQUET) and data.endswith(_PARQUET) and needle in _parquet(path):
            found.append(f"{name} (parquet)")
    return found


def _gunzip(data: bytes) -> bytes:
    """Every member that decompresses, and whatever a torn last one gives."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        out = []
        decompressor = zlib.decompressobj(31)
        rest = data
        while rest:
            try:
                out.append(decompressor.decompress(rest))
            except zlib.error:
                break
            if not decompressor.eof:
                break
            rest = decompressor.unused_data
            decompressor = zlib.decompressobj(31)
        return b"".join(out)


def _parquet(path: Path) -> bytes:
    table = pq.read_table(path)
    parts = [str(table.schema).encode()]
    for column in table.columns:
        parts.extend(str(value).encode() for value in column.to_pylist())
    return b"\n".join(parts)
