"""``headwater functions usage NAME``: a function's months through a real REST API."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import Engine

from headwater.cli import main
from headwater.functions.store import FunctionStore
from headwater.functions.usage import FunctionUsage, Tally
from headwater.store.workspace import WorkspaceStore
from tests.functions.test_cli import ENRICH, run, url  # noqa: F401  (a fixture)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_usage(url: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    store = WorkspaceStore(engine)
    function = FunctionStore(store).create("enrich", "insert", "javascript", ENRICH)
    assert "no invocations yet" in run(capsys, "usage", "enrich", "--url", url)
    FunctionUsage(store).add({function.id: Tally(invocations=1234, execution_ms=98765, errors=7)})
    shown = run(capsys, "usage", "enrich", "--url", url)
    assert "1234 invocations" in shown and "98765 ms" in shown and "7 errors" in shown
    data = json.loads(run(capsys, "usage", function.id, "--json", "--url", url))
    [month] = data["usage"]
    assert (month["invocations"], month["executionMs"], month["errors"]) == (1234, 98765, 7)
    with pytest.raises(SystemExit, match="404: no function has the id or name 'nope'"):
        main(["functions", "usage", "nope", "--url", url])
