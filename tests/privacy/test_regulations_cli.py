"""``headwater regulations``: list, show, create and suppressions, through a real REST API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.cli import main
from headwater.privacy.runner import DeletionRunner
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.threaded import serving_in_thread

TOKEN = "cli-token"


@pytest.fixture
def url(engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    store.create_source("web")
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    with serving_in_thread(
        create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    ) as base:
        yield base


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as ended:
        main(["regulations", *argv])
    assert ended.value.code == 0
    return capsys.readouterr().out


def test_create_list_show_and_suppressions(
    url: str, engine: Engine, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    suppressed = run(capsys, "create", "SUPPRESS_ONLY", "u1", "u2", "--url", url).strip()
    assert suppressed.startswith("reg_")
    clock.advance(1)
    deleted = run(capsys, "create", "DELETE_INTERNAL", "u3", "--source", "web", "--url", url)
    DeletionRunner(engine, [], [], clock=clock).run_due()

    listed = run(capsys, "list", "--url", url).splitlines()
    assert len(listed) == 2
    assert listed[0].startswith(deleted.strip()) and "DELETE_INTERNAL" in listed[0]
    assert "FINISHED" in listed[1] and "USER_ID: u1, u2" in listed[1]
    only = run(capsys, "list", "--type", "SUPPRESS_ONLY", "--url", url).splitlines()
    assert [line.split()[0] for line in only] == [suppressed]
    assert run(capsys, "list", "--source", "web", "--url", url).count("\n") == 1

    shown = run(capsys, "show", suppressed, "--url", url)
    assert f"{suppressed}  SUPPRESS_ONLY  FINISHED" in shown and "USER_ID: u1, u2" in shown
    assert run(capsys, "suppressions", "--url", url).split() == ["u1", "u2"]


def test_a_refusal_ends_the_command_with_the_apis_message(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["regulations", "create", "DELETE_ARCHIVE_ONLY", "u1", "--url", url])
    assert "400" in str(ended.value.code) and "DELETE_ARCHIVE_ONLY" in str(ended.value.code)
