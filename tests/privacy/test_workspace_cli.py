"""``headwater workspace delete|revoke-deletion|status`` through a real REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.cli import main
from headwater.privacy.workspace_deletion import GRACE_SECONDS
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.threaded import serving_in_thread

TOKEN = "cli-token"


@pytest.fixture
def url(engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    WorkspaceStore(engine).ensure_workspace("acme")
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    with serving_in_thread(
        create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    ) as base:
        yield base


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    with pytest.raises(SystemExit) as ended:
        main(["workspace", *argv])
    assert ended.value.code == code, capsys.readouterr()
    return capsys.readouterr().out


def test_delete_status_revoke(url: str, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no deletion requested" in run(capsys, "status", "--url", url)
    with pytest.raises(SystemExit) as wrong:
        main(["workspace", "delete", "acm", "--url", url])
    assert "confirm" in str(wrong.value.code)
    out = run(capsys, "delete", "acme", "--url", url)
    assert "deletion PENDING" in out and "revocable until 2023-11-19T22:13:20.000Z" in out
    shown = json.loads(run(capsys, "status", "--json", "--url", url))
    assert shown["status"] == "PENDING" and shown["revocable"] is True
    assert "deletion REVOKED" in run(capsys, "revoke-deletion", "--url", url)

    run(capsys, "delete", "acme", "--url", url)
    clock.advance(GRACE_SECONDS)
    assert "irreversible since" in run(capsys, "status", "--url", url)
    with pytest.raises(SystemExit) as late:
        main(["workspace", "revoke-deletion", "--url", url])
    assert "irreversible" in str(late.value.code)
