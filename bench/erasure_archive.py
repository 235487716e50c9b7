"""How long deleting one subject from the archive takes: ``--gigabytes`` of hour files on disk.

    python bench/erasure_archive.py [--gigabytes 1] [--keep DIR]

Writes an archive the way ``ArchiveWriter`` does (gzip members of varied track and identify
events, ISA-L level 1, 500 events a member, 10 sources, 24 hours a day) until it holds the size
asked for, with the subject's events in one hour file in fifty. Then runs ``ArchiveEraser`` for
that subject once, cold to Python but with the files in the page cache (as a recent archive
is), and prints the time, the files rewritten and the throughput over compressed and
decompressed bytes. The issue's bound: one subject over 1 GB within 5 minutes.
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
from isal import igzip

from headwater.privacy.erasure import Erasure, Subjects
from headwater.store.archive import COMPRESSLEVEL
from headwater.store.archive_erasure import ArchiveEraser

SUBJECT = "user-0000042"
EVENTS_PER_MEMBER = 500
MEMBERS_PER_FILE = 20


def event(rng: random.Random, hour: str, user: str) -> dict[str, object]:
    at = f"{hour}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z"
    kind = rng.choice(("track", "track", "track", "identify", "page"))
    body: dict[str, object] = {
        "type": kind,
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "userId": user,
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128))),
        "receivedAt": at,
        "sentAt": at,
        "timestamp": at,
        "originalTimestamp": at,
        "channel": "server",
        "version": 2,
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.1"},
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        },
        "integrations": {},
    }
    if kind == "identify":
        body["traits"] = {"email": f"{user}@example.com", "plan": rng.choice(("free", "pro"))}
    else:
        body["event"] = rng.choice(("Order Completed", "Product Viewed", "Signed Up"))
        body["properties"] = {
            "revenue": round(rng.random() * 100, 2),
            "sku": f"sku-{rng.randrange(10_000)}",
            "note": uuid.UUID(int=rng.getrandbits(128)).hex,
        }
    return body


def build(directory: Path, gigabytes: float) -> tuple[int, int]:
    """Write the archive; return (files, bytes)."""
    rng = random.Random(7)
    encode = msgspec.json.encode
    target = int(gigabytes * (1 << 30))
    written = files = 0
    day = 1
    while written < target:
        for hour in range(24):
            for source in range(10):
                stamp = f"2026-01-{day:02d}T{hour:02d}"
                path = directory / f"src_{source}" / f"2026-01-{day:02d}" / f"{hour:02d}.ndjson.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                holds = files % 50 == 7
                with open(path, "wb") as f:
                    for member in range(MEMBERS_PER_FILE):
                        lines = []
                        for n in range(EVENTS_PER_MEMBER):
                            user = f"user-{rng.randrange(10_000_000):07d}"
                            if holds and member == 3 and n % 100 == 0:
                                user = SUBJECT
                            lines.append(encode(event(rng, stamp, user)))
                        lines.append(b"")
                        data = igzip.compress(b"\n".join(lines), COMPRESSLEVEL, mtime=0)
                        f.write(data)
                        written += len(data)
                files += 1
                if written >= target:
                    return files, written
        day += 1
    return files, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="write the archive here and keep it")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="erasure-bench-"))
    try:
        began = time.perf_counter()
        files, size = build(directory, args.gigabytes)
        print(
            f"built {files} hour files, {size / (1 << 20):.0f} MiB, in "
            f"{time.perf_counter() - began:.0f} s"
        )
        ratio = (
            len(gzip.decompress(_first(directory).read_bytes())) / _first(directory).stat().st_size
        )
        subjects = Subjects(user_ids=frozenset({SUBJECT}))
        before = {p: p.stat().st_ino for p in directory.rglob("*.ndjson.gz")}
        began = time.perf_counter()
        ArchiveEraser(directory).erase(Erasure("bench", "ws", subjects, created_at=time.time()))
        took = time.perf_counter() - began
        rewritten = sum(1 for p, inode in before.items() if p.stat().st_ino != inode)
        print(
            f"erased one subject from {files} files ({rewritten} rewritten) in {took:.1f} s: "
            f"{size / took / (1 << 20):.0f} MiB/s compressed, "
            f"~{size * ratio / took / (1 << 20):.0f} MiB/s decompressed (ratio {ratio:.1f})"
        )
        left = [p for p in before if SUBJECT.encode() in gzip.decompress(p.read_bytes())]
        if left:
            raise SystemExit(f"the subject is still in {len(left)} files")
        print("checked: the subject is in no file")
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


def _first(directory: Path) -> Path:
    return directory / "src_0/2026-01-01/00.ndjson.gz"


if __name__ == "__main__":
    main()
