"""The first start makes the Workspace Owner and prints their password once (issue 18): they
can then sign in with it; later starts make no other, and a bad email stops the start with a
message that says what to set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from headwater.audit.trail import AuditTrail, Query
from headwater.config.bootstrap import DEFAULT_OWNER_EMAIL, OWNER_EMAIL_ENV, bootstrap
from headwater.config.settings import ServerSettings
from headwater.iam.principals import principal_of
from headwater.iam.users import UserStore
from headwater.store.database import database_url, open_engine
from headwater.store.workspace import WorkspaceStore


def _owner_notes(data: Path) -> list[str]:
    return [n for n in bootstrap(ServerSettings(data_dir=data), None).notes if "Owner" in n]


def test_the_first_start_makes_the_owner_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(OWNER_EMAIL_ENV, raising=False)
    [note] = _owner_notes(tmp_path)
    found = re.fullmatch(r"Workspace Owner: (\S+), password \(shown once; .*\): (\S+)", note)
    assert found is not None, note
    assert found.group(1) == DEFAULT_OWNER_EMAIL
    assert _owner_notes(tmp_path) == []  # never printed again
    engine = open_engine(database_url(tmp_path, None))
    try:
        store = WorkspaceStore(engine)
        user = UserStore(store).verify_password(DEFAULT_OWNER_EMAIL, found.group(2))
        assert user is not None
        principal = principal_of(store, "user", user.id)
        assert principal is not None and principal.owner
        # Removed, the owner is not made again: the database has had its first start.
        UserStore(store).delete(user.id)
        assert _owner_notes(tmp_path) == [] and UserStore(store).list() == []
        [created] = AuditTrail(engine).page(Query(type="User Created"), count=10).items
        assert created.event.resource_name == DEFAULT_OWNER_EMAIL
    finally:
        engine.dispose()


def test_the_owners_email_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OWNER_EMAIL_ENV, "ops@example.com")
    [note] = _owner_notes(tmp_path / "a")
    assert note.startswith("Workspace Owner: ops@example.com, password")
    monkeypatch.setenv(OWNER_EMAIL_ENV, "not an email")
    with pytest.raises(RuntimeError, match=f"{OWNER_EMAIL_ENV}: .*set it to the owner's email"):
        bootstrap(ServerSettings(data_dir=tmp_path / "b"), None)
