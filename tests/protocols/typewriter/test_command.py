"""`headwater typewriter`: rules from a file, or paged from a server's REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headwater.cli import main
from headwater.protocols.compiled import Rule
from headwater.protocols.typewriter import generate, rules_to_api
from tests.protocols.typewriter.conftest import PLAN
from tests.support.live import ADMIN_TOKEN, serving


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


@pytest.mark.live
def test_rules_come_page_by_page_from_a_running_server(
    tmp_path: Path, plan_rules: list[Rule], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fixture plan plus 250 more events: more than one 200-rule page of the rules route.
    extra = [Rule("TRACK", f"Filler {n:03}", {"type": "object"}) for n in range(250)]
    rules = rules_to_api([*plan_rules, *extra])
    config = {
        "workspace": "acme",
        "tracking_plans": [{"name": "Web Plan", "rules": rules}],
        "sources": [{"name": "web", "write_key": "WK_web"}],
    }
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", ADMIN_TOKEN)
    with serving(tmp_path, json.dumps(config), role="all") as live:
        out = tmp_path / "analytics"
        _run("typewriter", "Web Plan", "--language", "typescript", "--out", str(out),
             "--api", live.url)  # fmt: skip
    expected = generate("Web Plan", [*plan_rules, *extra], "typescript")["index.ts"]
    assert (out / "index.ts").read_text("utf-8") == expected


def test_the_server_path_needs_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["typewriter", "P", "--language", "python", "--out", str(tmp_path)])
    assert "HEADWATER_ADMIN_TOKEN" in str(exited.value.code)
