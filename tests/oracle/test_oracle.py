"""Smoke tests: the Node oracle process answers each op sensibly, and fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.oracle.client import UNDEFINED, NodeOracle, OracleError, OracleResult, OracleTimeout


def fql(ir: object) -> dict[str, str]:
    return {"type": "fql", "ir": json.dumps(ir)}


def test_ping_and_versions(oracle: NodeOracle) -> None:
    assert oracle.call("ping", [{}, {}]) == [OracleResult(value="pong")] * 2
    versions = oracle.call_one("versions", {}).unwrap()
    lock = json.loads((Path(__file__).parent / "package-lock.json").read_text())
    for name, version in versions.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_tsub_matches(oracle: NodeOracle) -> None:
    ir = ["=", "event", {"value": "Button Clicked"}]
    results = oracle.call(
        "tsub.matches",
        [
            {"event": {"event": "Button Clicked"}, "matcher": fql(ir)},
            {"event": {"event": "Signed Up"}, "matcher": fql(ir)},
            {"event": {}, "matcher": {"type": "all"}},
            {
                "event": {"properties": {"n": 3}},
                "matcher": fql([">", "properties.n", {"value": 2}]),
            },
            {"event": {}, "matcher": {"type": "nope"}},
        ],
    )
    assert [r.value for r in results[:4]] == [True, False, True, True]
    assert results[4].error == "Matcher of type nope unsupported."


def test_tsub_transform(oracle: NodeOracle) -> None:
    event = {"type": "track", "properties": {"a": 1, "b": 2}}
    results = oracle.call(
        "tsub.transform",
        [
            {"event": event, "transformers": [{"type": "drop"}]},
            {
                "event": event,
                "transformers": [
                    {"type": "drop_properties", "config": {"drop": {"properties": ["a"]}}}
                ],
            },
            {
                "event": event,
                "transformers": [
                    {"type": "allow_properties", "config": {"allow": {"properties": ["a"]}}}
                ],
            },
            # The earlier cases must not have changed the event this one sees.
            {"event": event, "transformers": []},
        ],
    )
    assert results[0] == OracleResult(value=None)
    assert results[1].value == {"type": "track", "properties": {"b": 2}}
    assert results[2].value == {"type": "track", "properties": {"a": 1}}
    assert results[3].value == event


def test_tsub_path_sampling_keeps_everything_with_the_pinned_lockfile(oracle: NodeOracle) -> None:
    # docs/oracles.md, "Path sampling, as the oracle actually answers": tsub's ldexp is broken by
    # its own dependency ranges, so sampling on a path keeps every event. If this starts failing,
    # the lockfile changed what the oracle answers: update the docs and the code that relies on it.
    sample = {"type": "sample_event", "config": {"sample": {"percent": 0.01, "path": "userId"}}}
    results = oracle.call(
        "tsub.transform",
        [{"event": {"userId": f"user-{i}"}, "transformers": [sample]} for i in range(200)],
    )
    assert all(r.value is not None for r in results)


def test_subscriptions_parse(oracle: NodeOracle) -> None:
    parsed = oracle.call(
        "subscriptions.parse",
        [
            {"trigger": 'type = "track" and event = "Order Completed"'},
            {"trigger": "type = %"},
        ],
    )
    assert parsed[0].value == {
        "type": "group",
        "operator": "and",
        "children": [
            {"type": "event-type", "operator": "=", "value": "track"},
            {"type": "event", "operator": "=", "value": "Order Completed"},
        ],
    }
    assert parsed[1].error


def test_subscriptions_validate(oracle: NodeOracle) -> None:
    trigger = 'type = "track" and properties.total > 10'
    results = oracle.call(
        "subscriptions.validate",
        [
            {"trigger": trigger, "event": {"type": "track", "properties": {"total": 12}}},
            {"trigger": trigger, "event": {"type": "track", "properties": {"total": "12"}}},
            {"trigger": trigger, "event": {"type": "identify"}},
            {"trigger": "type = %", "event": {}},
        ],
    )
    assert [r.value for r in results[:3]] == [True, False, False]
    assert results[3].error


def test_mapping_transform(oracle: NodeOracle) -> None:
    results = oracle.call(
        "mapping.transform",
        [
            {
                "mapping": {"a": {"@path": "$.properties.a"}, "gone": {"@path": "$.nope"}},
                "payload": {"properties": {"a": [1, 2]}},
            },
            {
                "mapping": {"t": {"@template": "Hi {{traits.name}}"}},
                "payload": {"traits": {"name": "Ada"}},
            },
            {"mapping": {"x": {"@nope": 1}}, "payload": {}},
        ],
    )
    assert results[0].value == {"a": [1, 2]}
    assert results[1].value == {"t": "Hi Ada"}
    assert results[2].error == "/x has an invalid directive: @nope."


def test_mapping_validate(oracle: NodeOracle) -> None:
    results = oracle.call(
        "mapping.validate",
        [
            {"mapping": {"a": {"@path": "$.properties.a"}}},
            {"mapping": {"a": {"@unknown": "x"}}},
            {"mapping": {"a": {"@path": 1}, "b": {"@if": 2}}},
        ],
    )
    assert results[0] == OracleResult(value=True)
    assert results[1].error == "/a has an invalid directive: @unknown."
    assert results[2].error == (
        "/a/@path should be a string or a mapping directive but it is a number.\n"
        "/b/@if should be an object but it is a number."
    )


def test_bad_requests(oracle: NodeOracle) -> None:
    with pytest.raises(OracleError, match="unknown op"):
        oracle.call("no.such.op", [{}])
    with pytest.raises(OracleError, match="cannot be sent as JSON"):
        oracle.call("ping", [{"x": float("nan")}])
    # A bad case answers an error; the process keeps going.
    assert oracle.call_one("tsub.matches", {"event": {}, "matcher": fql(["??"])}).error
    assert oracle.call_one("ping", {}).value == "pong"


def test_undefined_is_kept_apart_from_null(oracle: NodeOracle) -> None:
    # tsub.transform hands back the event it was given: none at all is undefined.
    results = oracle.call(
        "tsub.transform", [{"transformers": []}, {"event": None, "transformers": []}]
    )
    assert results == [OracleResult(value=UNDEFINED), OracleResult(value=None)]
    # Nested undefined members disappear (the mapping kit drops them itself, too).
    result = oracle.call_one(
        "mapping.transform", {"mapping": {"a": {"@path": "$.x"}}, "payload": {}}
    )
    assert result.value == {}


def test_a_thousand_cases_in_one_call(oracle: NodeOracle) -> None:
    cases = [
        {
            "event": {"event": f"E{i}", "properties": {"i": i}},
            "matcher": fql(
                ["and", ["=", "event", {"value": f"E{i}"}], ["<", "properties.i", {"value": 500}]]
            ),
        }
        for i in range(1000)
    ]
    started = time.monotonic()
    results = oracle.call("tsub.matches", cases)
    assert time.monotonic() - started < 5
    assert [r.value for r in results] == [i < 500 for i in range(1000)]


def test_missing_node_modules_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match=r"npm ci --prefix tests/oracle"):
        NodeOracle(tmp_path).start()


def test_timeout_stops_the_process_and_the_next_call_restarts_it() -> None:
    with NodeOracle() as node:
        node.timeout = 0.000001
        with pytest.raises(OracleTimeout, match="did not answer"):
            # A huge request cannot be answered in a microsecond.
            node.call("ping", [{}] * 200_000)
        node.timeout = 60
        assert node.call_one("ping", {}).value == "pong"
