"""``headwater users`` and ``headwater tokens`` against a data directory's state database:
the password and the token are printed once and work; the database keeps neither."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from headwater.api.app import create_api
from headwater.audit.trail import AuditTrail, Query
from headwater.cli import main
from headwater.iam.users import UserStore
from headwater.store.admin_token import hash_token
from headwater.store.database import database_url, open_engine
from headwater.store.workspace import WorkspaceStore


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_users_and_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    where = ["--data-dir", str(tmp_path)]
    out = _run(["users", "add", "Owner@Example.com", "--role", "workspace-owner", *where], capsys)
    password = out.split("password (shown once): ")[1].strip()
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    out = _run(
        ["users", "add", "bob@example.com", "--role", "Source Admin", "--password-stdin", *where],
        capsys,
    )
    assert "password" not in out
    listed = _run(["users", "list", *where], capsys)
    assert "owner@example.com" in listed and "Workspace Owner" in listed
    assert "bob@example.com" in listed and "Source Admin" in listed
    with pytest.raises(SystemExit, match="no role 'nope'"):
        main(["tokens", "create", "--role", "nope", "--description", "x", *where])
    out = _run(
        ["tokens", "create", "--role", "tracking-plan-read-only", "--description", "ci", *where],
        capsys,
    )
    token = out.splitlines()[-1]
    assert token.startswith("hwp_")

    engine = open_engine(database_url(tmp_path, None))
    workspace = WorkspaceStore(engine)
    users = UserStore(workspace)
    assert users.verify_password("owner@example.com", password) is not None
    assert users.verify_password("bob@example.com", "correct horse") is not None
    # The audit trail records the commands' changes, never the password or the token.
    recorded = AuditTrail(engine).page(Query(), count=10).items
    assert [(r.event.type, r.actor.id) for r in recorded] == [
        ("Token Created", "headwater tokens create"),
        ("User Created", "headwater users add"),
        ("User Created", "headwater users add"),
    ]
    stored = b"".join(f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    assert b"hwp_" not in stored and password.encode() not in stored
    workspace.ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token("admin"))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/api/v1/tracking-plans").status_code == 200
        assert http.post("/api/v1/tracking-plans", json={"name": "p"}).status_code == 403
    engine.dispose()
