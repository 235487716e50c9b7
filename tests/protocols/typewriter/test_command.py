"""`headwater typewriter`: rules from a file, or paged from a server's REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headwater.cli import main
from headwater.protocols.compiled import Rule
from headwater.protocols.typewriter import generate, rules_to_api
from tests.protocols.typewriter.conftest import PLAN
from tests.support.receiver import Answer, Receiver


def _run(*argv: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 0


def test_rules_file_gives_the_same_client_as_generate(
    tmp_path: Path, plan_rules: list[Rule], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "analytics"
    _run("typewriter", "Web Plan", "--language", "python", "--out", str(out), "--rules", str(PLAN))
    expected = generate("Web Plan", plan_rules, "python")
    assert {p.name: p.read_text("utf-8") for p in out.iterdir()} == expected
    assert "python client for 'Web Plan' (12 events)" in capsys.readouterr().out

    # The plan.json it wrote is enough to build again, in another language.
    again = tmp_path / "ts"
    _run("typewriter", "Web Plan", "--language", "typescript", "--out", str(again), "--rules",
         str(out / "plan.json"))  # fmt: skip
    assert (again / "index.ts").read_text("utf-8") == generate(
        "Web Plan", plan_rules, "typescript"
    )["index.ts"]


def test_a_plan_the_server_would_refuse_writes_nothing(tmp_path: Path) -> None:
    rules = [
        {
            "type": "TRACK",
            "key": "Signed Up",
            "version": 1,
            "jsonSchema": {"properties": {"properties": {"properties": {"plan": {
                "type": "string", "pattern": "^(?!test).*"}}}}},
        }
    ]  # fmt: skip
    file = tmp_path / "rules.json"
    file.write_text(json.dumps(rules), "utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main(["typewriter", "P", "--language", "python", "--out", str(out), "--rules", str(file)])
    assert "TRACK rule 'Signed Up' version 1" in str(exited.value.code)
    assert not out.exists()


def test_rules_come_page_by_page_from_the_server(
    tmp_path: Path,
    plan_rules: list[Rule],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = rules_to_api(plan_rules)
    pages = [items[:5], items[5:10], items[10:]]
    answers = []
    for n, page in enumerate(pages):
        pagination = {"current": str(n), "totalEntries": len(items)}
        if n + 1 < len(pages):
            pagination["next"] = f"cursor-{n + 1}"
        body = {"data": {"rules": page, "pagination": pagination}}
        answers.append(Answer(body=json.dumps(body).encode()))
    receiver.answer(*answers)
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", "admin-secret")
    out = tmp_path / "analytics"
    _run("typewriter", "Web Plan", "--language", "typescript", "--out", str(out),
         "--api", receiver.url)  # fmt: skip

    assert (out / "index.ts").read_text("utf-8") == generate("Web Plan", plan_rules, "typescript")[
        "index.ts"
    ]
    requests = receiver.requests
    assert [r.path for r in requests] == ["/api/v1/tracking-plans/Web%20Plan/rules"] * 3
    assert [r.query.get("pagination.cursor") for r in requests] == [
        None,
        ["cursor-1"],
        ["cursor-2"],
    ]
    assert all(r.headers["authorization"] == "Bearer admin-secret" for r in requests)


def test_the_server_path_needs_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["typewriter", "P", "--language", "python", "--out", str(tmp_path)])
    assert "HEADWATER_ADMIN_TOKEN" in str(exited.value.code)
