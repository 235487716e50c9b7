"""``headwater functions``: list, logs, test, versions, restore and deploy, through a real REST
API (and, for ``test``, real sandbox processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.functions import close_runtime, use_functions
from headwater.cli import main
from headwater.functions.contract import Invocation, LogLine
from headwater.functions.sandbox import Runtime
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import FunctionLogs, FunctionStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.threaded import serving_in_thread

TOKEN = "cli-token"
ENRICH = """
async function onTrack(event) { console.log('hello'); event.properties.message = 'Enriched'; return event }
async function onIdentify(event) { throw new ValidationError('no user id') }
"""
WEBHOOK = """
async function onRequest(request) {
  Segment.track({event: (await request.json()).type, userId: 'u1'})
}
"""


@pytest.fixture
def url(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    monkeypatch.setenv("HEADWATER_ADMIN_TOKEN", TOKEN)
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    loops: list[asyncio.AbstractEventLoop] = []

    def runtime() -> Runtime:
        loops.append(asyncio.get_running_loop())
        return SandboxRuntime()

    use_functions(app, runtime=runtime)
    with serving_in_thread(app) as base:
        yield base
        for loop in loops:  # the sandboxes stop with the server's loop
            asyncio.run_coroutine_threadsafe(close_runtime(app), loop).result(10)


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    with pytest.raises(SystemExit) as ended:
        main(["functions", *argv])
    assert ended.value.code == code
    return capsys.readouterr().out


def test_list_versions_restore_deploy(
    url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    functions = FunctionStore(WorkspaceStore(engine))
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.update("enrich", code=ENRICH + "// 2\n")
    listed = run(capsys, "list", "--url", url).splitlines()
    assert listed[0].split() == ["enrich", "insert", "javascript", "latest", "2", "deployed", "1"]
    assert listed[-1] == "1 of 25 functions"
    assert json.loads(run(capsys, "list", "--json", "--url", url))["functions"][0]["name"] == (
        "enrich"
    )
    versions = run(capsys, "versions", "enrich", "--url", url).splitlines()
    assert [line.split()[0] for line in versions] == ["2", "1"]
    assert versions[0].endswith("LATEST") and versions[1].endswith("DEPLOYED")
    assert run(capsys, "restore", "enrich", "1", "--url", url) == "enrich: latest 3, deployed 1\n"
    assert run(capsys, "deploy", "enrich", "--url", url) == "enrich: latest 3, deployed 3\n"
    assert (
        run(capsys, "deploy", "enrich", "--version", "2", "--url", url)
        == "enrich: latest 3, deployed 2\n"
    )
    with pytest.raises(SystemExit, match="404: no function has the id or name 'nope'"):
        main(["functions", "deploy", "nope", "--url", url])


def test_logs(url: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = WorkspaceStore(engine)
    FunctionStore(workspace).create("enrich", "insert", "javascript", ENRICH)
    assert "no errors or logs" in run(capsys, "logs", "enrich", "--url", url)
    failed = Invocation(error="ValidationError", message="no user id", logs=[LogLine("log", "x")])
    FunctionLogs(workspace).record("enrich", 1, "dst_1", failed, {"type": "identify"})
    shown = run(capsys, "logs", "enrich", "--url", url).splitlines()
    assert shown[0].endswith("v1 dst_1  ValidationError: no user id")
    assert shown[1] == "    [log] x"


def test_test_runs_an_event_and_a_request(
    url: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    functions = FunctionStore(WorkspaceStore(engine))
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.create("stripe", "source", "javascript", WEBHOOK)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "track", "event": "E", "properties": {}}))
    out = run(capsys, "test", "enrich", "--event", str(event), "--url", url)
    assert "[log] hello" in out
    assert '"message": "Enriched"' in out.splitlines()[-1]
    event.write_text(json.dumps({"type": "identify", "traits": {}}))
    failed = run(capsys, "test", "enrich", "--event", str(event), "--url", url, code=1)
    assert "error ValidationError: no user id (MESSAGE_REJECTED)" in failed
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"body": {"type": "charge.succeeded"}}))
    sent = run(capsys, "test", "stripe", "--request", str(request), "--url", url)
    assert 'emitted {"event": "charge.succeeded"' in sent
    with pytest.raises(SystemExit, match="--event FILE or --request FILE"):
        main(["functions", "test", "enrich", "--url", url])
