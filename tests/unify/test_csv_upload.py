"""Profile CSV upload (§10.1) through the REST API and the CLI, on SQLite and PostgreSQL: every
one of Segment's validation messages in the order a user meets them (A-UE-61), and a valid file
read back from the ingest log as one internal Identify per row, in chunks, from the space's
upload source."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.uploads import use_appender
from headwater.cli import main
from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import UploadRejected
from headwater.ingest.internal import InternalAppend
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.workspace import WorkspaceStore
from headwater.unify import csv_upload
from headwater.unify.csv_upload import Uploads
from headwater.unify.identifiers import Extractor, Identifier
from headwater.unify.settings import IdentifierSetting, IdentitySettings, settings_of
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock
from tests.support.threaded import serving_in_thread
from tests.support.waiting import wait_for

TOKEN = "test-admin-token"
PHONE = IdentitySettings().with_identifier(IdentifierSetting(type="phone", key="phone_number"))


class World:
    def __init__(self, engine: Engine, clock: Clock, log: IngestLog, http: TestClient) -> None:
        self.engine, self.clock, self.log, self.http = engine, clock, log, http
        self.store = WorkspaceStore(engine, clock=clock)
        self.spaces = SpaceStore(self.store)

    def post(
        self, space: str, body: bytes | Iterator[bytes], name: str | None = "people.csv", **kw: Any
    ) -> Any:
        params = {"fileName": name} if name is not None else {}
        headers = {"content-type": "text/csv", **kw.pop("headers", {})}
        return self.http.post(
            f"/api/v1/spaces/{space}/profiles/uploads",
            content=body,
            params=params,
            headers=headers,
            **kw,
        )

    def refused(self, space: str, body: bytes, name: str = "people.csv") -> tuple[int, str]:
        answer = self.post(space, body, name)
        assert answer.status_code >= 400, answer.text
        [error] = answer.json()["errors"]
        return answer.status_code, str(error["message"])

    def finished(self, space: str, upload_id: str) -> dict[str, Any]:
        url = f"/api/v1/spaces/{space}/profiles/uploads/{upload_id}"
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.http.get(url).json()["data"]["upload"])
            return bool(found["status"] != "processing")

        wait_for(done, 30, "the upload to be sent")
        return found

    def records(self) -> list[dict[str, Any]]:
        return [
            msgspec.json.decode(payload)
            for partition in self.log.partitions
            for _, payload in self.log.read(partition, 0, 10**9)
        ]


@pytest.fixture
def world(engine: Engine, clock: Clock, tmp_path: Path) -> Iterator[World]:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    spaces = SpaceStore(store)
    spaces.create("main", identity=PHONE)
    # No anonymous_id configured: a file needs an identifier column.
    spaces.create("strict", identity=settings_of([{"type": "user_id"}, {"type": "email"}]))
    log = open_ingest_log(engine, tmp_path, durability="normal", clock=clock)
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    use_appender(app, InternalAppend(log, clock=clock))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield World(engine, clock, log, http)
    log.close()


# --- A-UE-61: Segment's messages ---------------------------------------------------------------


def _columns(n: int) -> bytes:
    headers = ["user_id"] + [f"trait{i}" for i in range(1, n)]
    return (",".join(headers) + "\nu1" + "," * (n - 1) + "\n").encode()


REFUSED = [
    ("notes.txt", b"user_id\nu1\n", 415, csv_upload.INVALID_FILE_TYPE),
    ("people.csv", b"", 422, csv_upload.EMPTY_FILE),
    ("people.csv", b"user_id,First Name\n", 422, csv_upload.EMPTY_FILE),
    ("people.csv", b'user_id,a\n"u1,2\n', 422, csv_upload.PARSING_ERROR),
    ("people.csv", b"user_id\nu1,extra\n", 422, csv_upload.PARSING_ERROR),
    ("people.csv", b"user_id,name\nu1,\xff\xfe\n", 422, csv_upload.PARSING_ERROR),
    ("people.csv", _columns(300), 422, csv_upload.TOO_MANY_COLUMNS),
    ("people.csv", b"user_id,,plan\nu1,x,pro\n", 422, csv_upload.EMPTY_HEADER),
    ("people.csv", b"user_id,First Name \nu1,J\n", 422, csv_upload.SPACES),
    ("people.csv", b"user_id, First Name\nu1,J\n", 422, csv_upload.SPACES),
    ("people.csv", b"user_id,First  Name\nu1,J\n", 422, csv_upload.SPACES),
    ("people.csv", b"user_id,plan,plan\nu1,a,b\n", 422, csv_upload.DUPLICATE_HEADERS),
    ("people.csv", "user_id,price €\nu1,3\n".encode(), 422, csv_upload.INVALID_CHARACTERS),
    ("people.csv", b"user_id,it's\nu1,3\n", 422, csv_upload.INVALID_CHARACTERS),
    # Problems together: the first a user meets is the one named.
    ("people.txt", b"", 415, csv_upload.INVALID_FILE_TYPE),
    ("people.csv", b"user_id,, a,a,a\nu1,2,3,4,5\n", 422, csv_upload.EMPTY_HEADER),
    ("people.csv", b"user_id, a,a,a\nu1,2,3,4\n", 422, csv_upload.SPACES),
]


@pytest.mark.parametrize(("name", "body", "status", "message"), REFUSED)
def test_a_ue_61_refused_files_get_segments_message(
    world: World, name: str, body: bytes, status: int, message: str
) -> None:
    assert world.refused("main", body, name) == (status, message)
    assert world.records() == []


def test_a_ue_61_the_messages_are_segments_words() -> None:
    """Spelled out once, as the docs' table has them (a typo in a constant fails here)."""
    assert csv_upload.SPACES == (
        "This file contains leading, trailing or consecutive spaces. Remove leading, trailing "
        "or consecutive spaces, then try again."
    )
    assert csv_upload.TOO_MANY_COLUMNS == "Your CSV file is exceeding the limit of 299 columns."
    assert csv_upload.TOO_MANY_ROWS == "Too many rows. You can upload up to 1000000 rows."
    assert csv_upload.MISSING_IDENTIFIER == (
        "This file is missing an identifier column and does not have `anonymous_id` configured."
        " Add an identifier column or add `anonymous_id` in your identity resolution "
        "configuration, then try again."
    )
    assert csv_upload.TOO_LARGE == "Files can be up to 100 MB."
    assert csv_upload.MAX_BYTES == 100 * 1024 * 1024


def test_a_ue_61_299_columns_are_allowed(world: World) -> None:
    answer = world.post("main", _columns(299))
    assert answer.status_code == 202, answer.text
    world.finished("main", answer.json()["data"]["upload"]["id"])


def test_a_ue_61_no_identifier_column_without_anonymous_id(world: World) -> None:
    body = b"First Name,plan\nJane,pro\n"
    assert world.refused("strict", body) == (422, csv_upload.MISSING_IDENTIFIER)
    # With an identifier column it is taken; where anonymous_id is configured, so is the file.
    taken = world.post("strict", b"email,plan\nj@x.com,pro\n")
    assert taken.status_code == 202
    world.finished("strict", taken.json()["data"]["upload"]["id"])
    anonymous = world.post("main", body)
    assert anonymous.status_code == 202
    world.finished("main", anonymous.json()["data"]["upload"]["id"])
    [row] = world.records()[-1]["events"]
    assert row["anonymousId"] and row["traits"] == {"First Name": "Jane", "plan": "pro"}


def test_a_ue_61_one_million_and_one_rows(world: World) -> None:
    body = b"user_id\n" + b"u\n" * 1_000_001
    assert world.refused("main", body) == (422, csv_upload.TOO_MANY_ROWS)
    assert world.records() == []


def test_a_ue_61_one_million_rows_pass_the_checks() -> None:
    lines = itertools.chain(["user_id,plan\r\n"], itertools.repeat("u1,pro\r\n", 1_000_000))
    checked = csv_upload.check(lines, IdentitySettings())
    assert checked.rows == 1_000_000
    assert [c.role for c in checked.columns] == ["userId", "trait"]


def test_a_ue_61_over_100_mb_is_refused_while_streaming(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_upload, "MAX_BYTES", 1000)

    def body() -> Iterator[bytes]:  # sent chunked: no Content-Length to refuse up front
        yield b"user_id\n"
        for _ in range(100):
            yield b"u" * 20 + b"\n"

    answer = world.post("main", body())
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["message"] == csv_upload.TOO_LARGE
    declared = world.post("main", b"user_id\nu1\n" * 100)  # a Content-Length over the limit
    assert declared.status_code == 413


def test_multipart_is_refused_with_what_to_send(world: World) -> None:
    answer = world.post(
        "main", b"--x\r\n\r\nuser_id\r\n--x--", headers={"content-type": "multipart/form-data"}
    )
    assert answer.status_code == 415
    assert "text/csv" in answer.json()["errors"][0]["message"]


def test_unknown_space_is_404(world: World) -> None:
    assert world.post("nope", b"user_id\nu1\n").status_code == 404


# --- a valid file --------------------------------------------------------------------------------


def test_a_ue_61_one_identify_per_row_in_the_ingest_log(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_upload, "CHUNK_ROWS", 2)
    body = (
        "user_id,email,phone,anonymous_id,First Name,first Name,plan\r\n"
        "u1,jane@x.com,555-0101,,Jane,jane,pro\r\n"
        ",bob@x.com,,,Bob,,\r\n"
        ",,,a-9,Ann,,free\r\n"
        "\r\n"
        ",,,,,,\r\n"
        "u4,,,,Zoë,,\r\n"
    ).encode()
    answer = world.post("main", body, name="People.CSV")
    assert answer.status_code == 202, answer.text
    accepted = answer.json()["data"]["upload"]
    assert (accepted["fileName"], accepted["rows"], accepted["status"]) == (
        "People.CSV",
        4,
        "processing",
    )
    done = world.finished("main", accepted["id"])
    assert (done["status"], done["appendedRows"], done["error"]) == ("succeeded", 4, None)

    records = world.records()
    assert len(records) == math.ceil(4 / 2)  # one ingest record per chunk of rows
    space = world.spaces.require("main")
    source_id = done["sourceId"]
    assert source_id in space.source_ids
    assert {r["source_id"] for r in records} == {source_id}
    assert {r["workspace_id"] for r in records} == {space.workspace_id}
    events = [e for r in records for e in r["events"]]
    assert [e["type"] for e in events] == ["identify"] * 4
    assert [e["messageId"] for e in events] == [f"{accepted['id']}-{n}" for n in range(1, 5)]
    jane, bob, ann, zoe = events
    assert jane["userId"] == "u1" and "anonymousId" not in jane
    assert jane["traits"] == {
        "email": "jane@x.com",
        "First Name": "Jane",
        "first Name": "jane",
        "plan": "pro",
    }
    assert jane["context"]["externalIds"] == [
        {"id": "555-0101", "type": "phone", "collection": "users", "encoding": "none"}
    ]
    assert bob["traits"] == {"email": "bob@x.com", "First Name": "Bob"}
    assert "userId" not in bob and bob["anonymousId"].startswith("csv_")
    assert ann["anonymousId"] == "a-9" and ann["traits"] == {"First Name": "Ann", "plan": "free"}
    assert zoe["userId"] == "u4" and zoe["traits"] == {"First Name": "Zoë"}
    # Identity resolution reads each row's identifiers where the file put them.
    extract = Extractor(PHONE).extract
    assert set(extract(jane).identifiers) == {
        Identifier("users", "user_id", "u1"),
        Identifier("users", "email", "jane@x.com"),
        Identifier("users", "phone", "555-0101"),
    }
    assert Identifier("users", "email", "bob@x.com") in extract(bob).identifiers

    # The same rows again: the same made-up anonymousId, the same upload source.
    again = world.post("main", b"email\nbob@x.com\n").json()["data"]["upload"]
    assert world.finished("main", again["id"])["sourceId"] == source_id
    last = world.records()[-1]["events"][0]
    assert last["anonymousId"] == bob["anonymousId"]


def test_update_history_keeps_30_days(world: World) -> None:
    refused = world.post("main", b"user_id,,x\nu1,1,2\n")
    assert refused.status_code == 422
    world.clock.advance(60)
    ok = world.post("main", b"user_id\nu1\n").json()["data"]["upload"]
    world.finished("main", ok["id"])
    history = world.http.get("/api/v1/spaces/main/profiles/uploads").json()["data"]
    assert [(u["fileName"], u["status"], u["rows"]) for u in history["uploads"]] == [
        ("people.csv", "succeeded", 1),
        ("people.csv", "failed", 0),
    ]
    assert history["uploads"][1]["error"] == csv_upload.EMPTY_HEADER
    assert history["pagination"]["totalEntries"] == 2
    world.clock.advance(30 * 86_400 - 30)
    assert (
        len(world.http.get("/api/v1/spaces/main/profiles/uploads").json()["data"]["uploads"]) == 1
    )
    world.clock.advance(60)
    assert world.http.get("/api/v1/spaces/main/profiles/uploads").json()["data"]["uploads"] == []
    assert Uploads(world.store).purge() == 2
    missing = world.http.get(f"/api/v1/spaces/main/profiles/uploads/{ok['id']}")
    assert missing.status_code == 404


def test_one_file_at_a_time(world: World) -> None:
    uploads = Uploads(world.store)
    space = world.spaces.require("main")
    running = uploads.start(space.id, "first.csv", rows=10)
    status, message = world.refused("main", b"user_id\nu1\n")
    assert status == 409 and "one file at a time" in message
    # An upload whose process stopped sending is failed after five minutes without progress.
    world.clock.advance(csv_upload.STALE_SECONDS + 1)
    taken = world.post("main", b"user_id\nu1\n")
    assert taken.status_code == 202
    world.finished("main", taken.json()["data"]["upload"]["id"])
    shown = world.http.get(f"/api/v1/spaces/main/profiles/uploads/{running.id}").json()["data"]
    assert shown["upload"]["status"] == "failed"
    assert shown["upload"]["error"].startswith(csv_upload.FALLBACK)


def test_a_file_that_passed_the_first_check_is_refused_if_another_started_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files sent at once both pass the check made before the body is read; the one
    recorded second is refused, as the check is made again in the transaction recording it."""
    uploads = Uploads(world.store)
    space = world.spaces.require("main")
    running = uploads.start(space.id, "first.csv", rows=10, alone=True)
    monkeypatch.setattr(Uploads, "busy", lambda self, space_id: False)
    status, message = world.refused("main", b"user_id\nu1\n")
    assert status == 409 and "one file at a time" in message
    assert [u.status for u in uploads.history(space.id)].count("processing") == 1
    with pytest.raises(csv_upload.Busy):
        uploads.start(space.id, "third.csv", alone=True)
    uploads.update(running.id, status="succeeded")
    assert uploads.start(space.id, "fourth.csv", alone=True).status == "processing"


def test_two_starts_at_once_let_one_file_through(world: World) -> None:
    """The race itself: while one start's transaction is open (the space locked, its upload
    written, not committed yet), a second start waits for it and then sees it."""
    uploads = Uploads(world.store)
    space = world.spaces.require("main")
    engine = world.store.engine
    locked, outcome = threading.Event(), []

    def second() -> None:
        locked.wait(10)
        try:
            outcome.append(uploads.start(space.id, "second.csv", alone=True).status)
        except csv_upload.Busy:
            outcome.append("busy")

    thread = threading.Thread(target=second)
    thread.start()
    with write_transaction(engine) as conn:
        sp = schema.spaces
        conn.execute(sa.select(sp.c.id).where(sp.c.id == space.id).with_for_update())
        conn.execute(
            schema.unify_csv_uploads.insert().values(
                id="first", space_id=space.id, file_name="first.csv", status="processing",
                rows=1, appended=0, columns=[], created_at=int(world.clock()),
                updated_at=int(world.clock()),
            )
        )  # fmt: skip
        locked.set()
        time.sleep(0.5)  # the second start is waiting for this transaction by now
    thread.join(10)
    assert outcome == ["busy"]


def test_template_has_the_identifier_columns(world: World) -> None:
    answer = world.http.get("/api/v1/spaces/main/profiles/uploads/template")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text == (
        "user_id,email,android.id,android.idfa,android.push_token,anonymous_id,ga_client_id,"
        "ios.id,ios.idfa,ios.push_token,phone\r\n"
    )
    strict = world.http.get("/api/v1/spaces/strict/profiles/uploads/template")
    assert strict.text == "email,user_id\r\n"  # no priorities set: alphabetical


def test_the_checks_on_a_generator_stop_at_the_first_problem() -> None:
    def lines() -> Iterator[str]:
        yield "user_id\n"
        yield "u1,extra\n"
        raise AssertionError("read past the first bad row")

    with pytest.raises(UploadRejected) as refused:
        csv_upload.check(lines(), IdentitySettings())
    assert refused.value.message == csv_upload.PARSING_ERROR


# --- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def served(world: World) -> Iterator[str]:
    with serving_in_thread(world.http.app) as url:
        yield url


def test_cli_uploads_with_progress_and_prints_the_template(
    world: World,
    served: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setattr(csv_upload, "CHUNK_ROWS", 100)
    file = tmp_path / "members.csv"
    file.write_text("user_id,plan\n" + "".join(f"u{n},pro\n" for n in range(250)))
    with pytest.raises(SystemExit) as done:
        main(["profiles", "upload", "main", str(file), "--url", served])
    assert done.value.code == 0
    err = capsys.readouterr().err
    assert "members.csv: 250 rows accepted as upload upl_" in err
    assert err.splitlines()[-1] == "  250/250 rows sent: done"
    assert [len(r["events"]) for r in world.records()] == [100, 100, 50]

    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,plan \nu1,pro\n")
    with pytest.raises(SystemExit) as refused:
        main(["profiles", "upload", "main", str(bad), "--url", served])
    assert refused.value.code == f"headwater profiles upload: 422: {csv_upload.SPACES}."

    with pytest.raises(SystemExit):
        main(["profiles", "template", "strict", "--url", served])
    assert capsys.readouterr().out == "email,user_id\r\n"


def test_apply_and_export_leave_the_upload_source_alone(world: World) -> None:
    """The file manages the sources it lists; the upload source is Unify's own."""
    text = (
        "workspace: acme\nsources:\n  - name: web\n    write_key: WK_web\n"
        "spaces:\n  - name: main\n    sources: [web]\n"
        "    identity:\n      identifiers:\n        - {type: user_id, priority: 1}\n"
    )

    def run() -> None:
        apply(world.store, plan(world.store, parse_config(read_yaml(text))))

    run()
    upload = world.post("main", b"user_id\nu1\n").json()["data"]["upload"]
    source_id = world.finished("main", upload["id"])["sourceId"]
    assert set(world.spaces.require("main").source_ids) == {
        world.store.get_source("web").id,  # type: ignore[union-attr]
        source_id,
    }
    assert plan(world.store, parse_config(read_yaml(text))).render() == "No changes."
    exported = export_config(world.store)
    assert "CSV upload" not in exported
    assert plan(world.store, parse_config(read_yaml(exported))).render() == "No changes."
    run()
    assert world.store.get_source(source_id) is not None
    assert source_id in world.spaces.require("main").source_ids
    # A complete list of sources through the REST API keeps it connected too.
    patched = world.http.patch("/api/v1/spaces/main", json={"sourceIds": ["web"]})
    assert patched.status_code == 200, patched.text
    assert source_id in patched.json()["data"]["space"]["sourceIds"]


def test_large_rows_make_smaller_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest record stays near the Tracking API's batch size whatever the rows hold."""
    monkeypatch.setattr(csv_upload, "CHUNK_BYTES", 10_000)
    lines = ["user_id,bio\n", *(f"u{n},{'x' * 1000}\n" for n in range(50))]
    checked = csv_upload.check(lines, IdentitySettings())
    chunks: list[int] = []
    progress: list[int] = []
    sent = csv_upload.send_rows(
        lines, checked.columns, "upl_1", lambda c: chunks.append(len(c)), progress.append
    )
    assert sent == 50 and sum(chunks) == 50
    assert max(chunks) <= 10 and len(chunks) >= 5
    assert progress[-1] == 50 and progress == sorted(progress)


def test_excels_byte_order_mark_is_not_part_of_the_first_header(world: World) -> None:
    answer = world.post("strict", b"\xef\xbb\xbfuser_id,plan\r\nu1,pro\r\n")
    assert answer.status_code == 202, answer.text
    assert answer.json()["data"]["upload"]["columns"] == ["user_id", "plan"]
    world.finished("strict", answer.json()["data"]["upload"]["id"])
    [event] = world.records()[-1]["events"]
    assert event["userId"] == "u1" and event["traits"] == {"plan": "pro"}
