"""The generated Python client: mypy --strict accepts right calls and rejects wrong ones, and
the calls reach a loopback HTTP receiver through segment-analytics-python as the plan says."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from headwater import __version__
from headwater.protocols.compiled import Rule
from headwater.protocols.typewriter import generate
from tests.support.receiver import Receiver

GOOD_USE = """
from tw_client import (
    event_42_terrible_event_name_3, event_collided, event_collided_2, experiment_viewed,
    group, identify, nested_arrays, nested_objects, order_completed, page,
    list_2, record, commande_passée,
)

order_completed({"order_id": "o-1", "revenue": 33.5, "coupon": None}, user_id="u1")
order_completed({"order_id": "o-2", "revenue": 10}, anonymous_id="a1")
event_42_terrible_event_name_3(user_id="u1")
event_collided(user_id="u1")
event_collided_2({"anything": 1}, user_id="u1")
experiment_viewed({"variant": None, "scores": {"x": 1.5}, "flags": {"beta": True}}, user_id="u")
experiment_viewed({"variant": "a"}, extra_properties={"utm_source": "x"}, user_id="u")
nested_arrays({"universeCharacters": [[{"name": "Rick"}], []]}, user_id="u1")
nested_objects({"garage": {"tunnel": {"subterranean lab": {}}}}, user_id="u1")
identify({"email": "r@example.com", "plan": "pro"}, user_id="u1")
group({"name": "Acme"}, group_id="g1", user_id="u1")
page({"path": "/"}, name="Home", user_id="u1")
list_2({"items": ["a", "b"]}, user_id="u1")  # "list" would hide the builtin
record({"id": "r1"}, user_id="u1")
commande_passée({"montant": 12.5}, user_id="u1")
items: list[str] = []  # the builtin is still the builtin
"""

# Each line is one mistake typewriter exists to catch, with the mypy code it must raise.
BAD_USE = {
    'order_completed({"order_id": "o-1"}, user_id="u")': "typeddict-item",  # revenue missing
    'order_completed({"order_id": 1, "revenue": 2.0}, user_id="u")': "typeddict-item",
    'order_completed({"order_id": "o", "revenue": 1.0, "cupon": "x"}, user_id="u")': (
        "typeddict-unknown-key"
    ),
    'experiment_viewed({"variant": "c"}, user_id="u")': "typeddict-item",  # not in the enum
    'experiment_viewed({"variant": "a", "flags": {"alpha": True}}, user_id="u")': (
        "typeddict-unknown-key"  # additionalProperties: false
    ),
    'experiment_viewed({"variant": "a", "scores": {"x": "high"}}, user_id="u")': "dict-item",
    'nested_arrays({"universeCharacters": [{"name": "Rick"}]}, user_id="u")': "list-item",
    'identify({"plan": "enterprise"}, user_id="u")': "arg-type",  # traits are optional
    'group({"name": "Acme"}, user_id="u")': "call-arg",  # group_id is required
    "page(user_id='u')": "call-arg",  # the PAGE rule requires path
}


@pytest.fixture
def client_dir(tmp_path: Path, plan_rules: list[Rule]) -> Path:
    package = tmp_path / "tw_client"
    package.mkdir()
    for name, text in generate("Web Plan", plan_rules, "python").items():
        (package / name).write_text(text, "utf-8")
    return tmp_path


def _mypy(cwd: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *targets],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_generated_python_is_strictly_typed_and_rejects_wrong_calls(client_dir: Path) -> None:
    (client_dir / "good.py").write_text(GOOD_USE, "utf-8")
    ok = _mypy(client_dir, "tw_client", "good.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    lines = list(BAD_USE)
    header = "from tw_client import experiment_viewed, group, identify, nested_arrays, "
    header += "order_completed, page\n"
    (client_dir / "bad.py").write_text(header + "\n".join(lines) + "\n", "utf-8")
    bad = _mypy(client_dir, "bad.py")
    assert bad.returncode == 1
    codes_by_line: dict[int, set[str]] = {}
    for out in bad.stdout.splitlines():
        if out.startswith("bad.py:") and "error:" in out:
            line = int(out.split(":")[1])
            codes_by_line.setdefault(line, set()).add(out.rsplit("[", 1)[-1].rstrip("]"))
    for number, call in enumerate(lines, start=2):
        assert BAD_USE[call] in codes_by_line.get(number, set()), (call, bad.stdout)


@pytest.fixture
def tw_client(client_dir: Path) -> Iterator[ModuleType]:
    sys.path.insert(0, str(client_dir))
    try:
        yield importlib.import_module("tw_client")
    finally:
        sys.path.remove(str(client_dir))
        sys.modules.pop("tw_client", None)


def _sent(receiver: Receiver) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for request in receiver.requests:
        assert request.path == "/v1/batch"
        batch += request.json()["batch"]
    return batch


def test_calls_reach_segment_with_the_plans_names_and_versions(
    tw_client: ModuleType, receiver: Receiver
) -> None:
    from segment.analytics import Client

    client = Client("wk_typewriter", host=receiver.url, sync_mode=True)
    tw_client.set_typewriter_options(analytics=client)
    tw_client.order_completed(
        {"order_id": "o-1", "revenue": 33.5, "coupon": None},
        user_id="u1",
        context={"ip": "10.0.0.1", "protocols": {"sourceId": "kept"}},
    )
    tw_client.event_42_terrible_event_name_3(anonymous_id="a1")
    tw_client.event_collided_2({"x": 1}, user_id="u1")
    tw_client.identify({"email": "r@example.com"}, user_id="u1")
    tw_client.group({"name": "Acme"}, group_id="g1", user_id="u1")
    tw_client.page({"path": "/pricing"}, name="Pricing", category="Docs", user_id="u1")
    tw_client.experiment_viewed(
        {"variant": 1}, extra_properties={"utm_source": "news", "variant": "x"}, user_id="u1"
    )

    order, terrible, collided, identify, group, page, experiment = _sent(receiver)
    assert (order["type"], order["event"], order["userId"]) == ("track", "Order Completed", "u1")
    assert order["properties"] == {"order_id": "o-1", "revenue": 33.5, "coupon": None}
    # Version 2 of the rule is the newest: Protocols must validate against it.
    assert order["context"]["protocols"] == {"sourceId": "kept", "event_version": 2}
    assert order["context"]["ip"] == "10.0.0.1"
    assert order["context"]["typewriter"] == {"language": "python", "version": __version__}
    assert terrible["event"] == "42_--terrible==\"event'++name~!3"
    assert terrible["anonymousId"] == "a1" and terrible["properties"] == {}
    assert "protocols" not in terrible["context"]  # version 1: the default, nothing to say
    assert collided["event"] == "event_collided"
    assert (identify["type"], identify["traits"]) == ("identify", {"email": "r@example.com"})
    assert (group["type"], group["groupId"], group["traits"]) == ("group", "g1", {"name": "Acme"})
    assert (page["type"], page["name"], page["category"]) == ("page", "Pricing", "Docs")
    assert page["properties"] == {"path": "/pricing"}
    # additionalProperties: true lets other keys through; the plan's own keys win.
    assert experiment["properties"] == {"utm_source": "news", "variant": 1}


def test_default_is_the_segment_analytics_module(
    tw_client: ModuleType, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segment.analytics as analytics

    monkeypatch.setattr(analytics, "write_key", "wk_module")
    monkeypatch.setattr(analytics, "host", receiver.url)
    monkeypatch.setattr(analytics, "sync_mode", True)
    monkeypatch.setattr(analytics, "default_client", None)
    tw_client.nested_objects({"garage": {"tunnel": {"subterranean lab": {}}}}, user_id="u9")
    (event,) = _sent(receiver)
    assert event["event"] == "Nested Objects"
    assert event["properties"] == {"garage": {"tunnel": {"subterranean lab": {}}}}


def test_names_are_stable_and_collisions_resolved_in_key_order(plan_rules: list[Rule]) -> None:
    first = generate("Web Plan", plan_rules, "python")
    again = generate("Web Plan", list(reversed(plan_rules)), "python")
    assert first == {**again, "plan.json": first["plan.json"]}
    source = first["__init__.py"]
    # "Event Collided" sorts before "event_collided", so it keeps the plain name.
    assert "def event_collided(\n" in source and "def event_collided_2(\n" in source
    assert source.index('event="Event Collided"') < source.index('event="event_collided"')
    assert textwrap.dedent(source).count("def order_completed(") == 1
