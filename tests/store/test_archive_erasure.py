"""The archive eraser: hour files rewritten without the subject, atomically, offsets kept."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from headwater.privacy.erasure import Erasure, Progress, Subjects
from headwater.store import archive_erasure
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.archive_erasure import TEMP_SUFFIX, ArchiveEraser
from tests.store.test_archive import ALL_TIME, feed, record
from tests.support.records import stored_event

HOUR = "src_a/2024-03-05/10.ndjson.gz"


def ev(message_id: str, user: str, second: int = 1, **extra: Any) -> dict[str, Any]:
    at = f"2024-03-05T10:00:{second:02d}.000Z"
    return stored_event(message_id, at, userId=user, **extra)


def erasure(
    users: tuple[str, ...] = ("u2",), *, anonymous: tuple[str, ...] = (), **kw: Any
) -> Erasure:
    subjects = Subjects(user_ids=frozenset(users), anonymous_ids=frozenset(anonymous))
    return Erasure("reg_1", "ws_1", subjects, created_at=2e9, **kw)


def lines_of(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return [line for line in f.read().split(b"\n") if line]


def test_only_the_subjects_events_go_and_everyone_elses_bytes_stay(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([ev("m1", "u1"), ev("m2", "u2", marker="SECRET-u2"), ev("m3", "u3")]))
    feed(writer, record([ev("m4", "u1", 2)]))  # a member without the subject
    feed(writer, record([ev("m5", "u2", 3, anonymousId="a9"), ev("m6", "u4", 3)]))
    path = tmp_path / HOUR
    before = [line for line in lines_of(path) if b'"u2"' not in line]
    size = path.stat().st_size

    assert ArchiveEraser(tmp_path).erase(erasure()) is None

    assert lines_of(path) == before  # others' events byte-identical, in order
    assert b"SECRET-u2" not in gzip.decompress(path.read_bytes())
    assert path.stat().st_size == size
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == [
        "m1",
        "m3",
        "m4",
        "m6",
    ]
    assert list(path.parent.iterdir()) == [path]


def test_member_ends_do_not_move_so_a_sync_resumes_where_it_was(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([ev("m1", "u2", marker="x" * 5000)]))
    feed(writer, record([ev("m2", "u1", 2)]))
    archive = Archive(tmp_path)
    first, second = (m.end for m in archive.members("src_a", ALL_TIME[0]))

    ArchiveEraser(tmp_path).erase(erasure())
    feed(writer, record([ev("m3", "u1", 3)]))

    ends = [m.end for m in archive.members("src_a", ALL_TIME[0])]
    assert first in ends and second in ends
    resumed = archive.members("src_a", ALL_TIME[0], done={"2024-03-05T10": first})
    assert [e["messageId"] for m in resumed for e in m.events] == ["m2", "m3"]


def test_a_member_emptied_of_a_large_subject_is_padded_with_empty_members(tmp_path: Path) -> None:
    # ~600 KB of random-ish text compresses poorly: the member left is far more than 64 KB short
    noise = os.urandom(300_000).hex()
    feed(ArchiveWriter(tmp_path), record([ev("m1", "u2", marker=noise), ev("m2", "u1")]))
    path = tmp_path / HOUR
    size = path.stat().st_size

    ArchiveEraser(tmp_path).erase(erasure())

    assert path.stat().st_size == size
    assert [msgspec.json.decode(x)["messageId"] for x in lines_of(path)] == ["m2"]
    assert noise[:64].encode() not in path.read_bytes()


def test_anonymous_ids_alias_previous_ids_and_source_scope(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(
        writer,
        record(
            [
                ev("m1", "u1", anonymousId="anon-7"),
                ev("m2", "u1", type="alias", previousId="anon-7"),
            ]
        ),
        record([ev("m3", "u1", anonymousId="anon-7")], source="src_b"),
    )
    ArchiveEraser(tmp_path).erase(
        erasure((), anonymous=("anon-7",), source_ids=frozenset({"src_a"}))
    )

    assert list(Archive(tmp_path).read("src_a", *ALL_TIME)) == []
    assert [e["messageId"] for e in Archive(tmp_path).read("src_b", *ALL_TIME)] == ["m3"]


def test_ids_that_json_escapes_are_found_by_decoding(tmp_path: Path) -> None:
    feed(ArchiveWriter(tmp_path), record([ev("m1", 'ü"2'), ev("m2", "u1")]))
    ArchiveEraser(tmp_path).erase(erasure(('ü"2',)))
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == ["m2"]


def test_a_crash_before_the_replace_leaves_the_old_file_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(ArchiveWriter(tmp_path), record([ev("m1", "u2"), ev("m2", "u1")]))
    path = tmp_path / HOUR
    original = path.read_bytes()

    def crash(*_: Any) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ArchiveEraser(tmp_path).erase(erasure())
    assert path.read_bytes() == original
    assert (path.parent / (path.name + TEMP_SUFFIX)).exists()
    monkeypatch.undo()

    ArchiveEraser(tmp_path).erase(erasure())
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == ["m2"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["10.ndjson.gz"]


def test_a_crash_after_the_replace_leaves_the_new_file_and_a_rerun_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(ArchiveWriter(tmp_path), record([ev("m1", "u2"), ev("m2", "u1")]))
    path = tmp_path / HOUR

    def crash(*_: Any) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(archive_erasure, "_fsync_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        ArchiveEraser(tmp_path).erase(erasure())
    monkeypatch.undo()
    after_crash = path.read_bytes()

    ArchiveEraser(tmp_path).erase(erasure())
    assert path.read_bytes() == after_crash
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == ["m2"]


def test_the_writer_appends_to_the_new_file_after_a_rewrite(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([ev("m1", "u2"), ev("m2", "u1")]))
    ArchiveEraser(tmp_path).erase(erasure())
    feed(writer, record([ev("m3", "u2", 5), ev("m4", "u1", 5)]))
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == [
        "m2",
        "m3",
        "m4",
    ]
    ArchiveEraser(tmp_path).erase(erasure())
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == ["m2", "m4"]


def test_a_torn_tail_holding_the_subject_goes_and_one_set_aside_too(tmp_path: Path) -> None:
    feed(ArchiveWriter(tmp_path), record([ev("m1", "u1")]))
    path = tmp_path / HOUR
    good = path.stat().st_size
    torn = gzip.compress(msgspec.json.encode(ev("m2", "u2")) + b"\n")[:-6]
    with open(path, "ab") as f:
        f.write(torn)
    aside = path.with_name(path.name + ".99.torn")
    aside.write_bytes(torn)

    ArchiveEraser(tmp_path).erase(erasure())

    assert path.stat().st_size == good
    assert not aside.exists()
    assert [e["messageId"] for e in Archive(tmp_path).read("src_a", *ALL_TIME)] == ["m1"]


def test_a_regulation_waits_while_the_archive_is_behind(tmp_path: Path) -> None:
    feed(ArchiveWriter(tmp_path), record([ev("m1", "u2")]))
    behind = [True]
    eraser = ArchiveEraser(tmp_path, pending=lambda created_at: behind[0])
    assert isinstance(eraser.erase(erasure()), Progress)
    assert len(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == 1
    behind[0] = False
    assert eraser.erase(erasure()) is None
    assert list(Archive(tmp_path).read("src_a", *ALL_TIME)) == []
    assert eraser.target.kind == "archive" and eraser.target.id == "archive"
