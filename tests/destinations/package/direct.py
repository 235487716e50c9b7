"""Running ``direct.js``: Segment's package called directly under Node, the oracle for what
Headwater's actions runtime must send.

Also what the two sides are compared on: a request as method, path, query, body (parsed JSON or
form, else text) and its auth header.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from headwater.destinations.runtime.node import find_node
from tests.destinations.package.cases import Case, MappingCase

SCRIPT = Path(__file__).with_name("direct.js")

# Headers that carry a credential, in the form the vendors use.
AUTH_HEADERS = ("authorization", "api-key", "x-api-key", "api_key", "developer-token")
# Headers the HTTP client adds on the wire (the recorder sees a request before it is sent).
TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
)


def actions_dir() -> Path:
    """The installed package; tests never install it on first use."""
    found = os.environ.get("HEADWATER_ACTIONS_DIR")
    if (
        not found
        or not (Path(found) / "node_modules" / "@segment" / "action-destinations").is_dir()
    ):
        raise RuntimeError(
            "set HEADWATER_ACTIONS_DIR to an installed package directory "
            "(scripts/test.sh installs one into .cache/actions)"
        )
    return Path(found)


def node(request: dict[str, Any], timeout: float = 120) -> Any:
    done = subprocess.run(
        [str(find_node().executable), str(SCRIPT)],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "HEADWATER_ACTIONS_DIR": str(actions_dir())},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"direct.js failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


@cache
def _described(directories: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = node({"describe": list(directories)})["destinations"]
    return found


def describe(directory: str) -> dict[str, Any]:
    """The definition's presets and each action's field defaults and default trigger."""
    from tests.destinations.package.cases import CASES

    everything = tuple(sorted({c.directory for c in CASES} | {directory}))
    return dict(_described(everything)[directory])


@dataclass(frozen=True)
class Resolved:
    """A mapping as the user saves it: the action, its fields in full, its trigger."""

    action: str
    fields: dict[str, Any]
    subscribe: str
    batch: bool  # the action batches and the mapping enables it: ``executeBatch``


def resolve(directory: str, mapping: MappingCase) -> Resolved:
    described = describe(directory)
    action = described["actions"][mapping.action]
    start: dict[str, Any] = dict(action["defaults"])
    subscribe = action["defaultSubscription"]
    if mapping.preset:
        presets = [p for p in described["presets"] if p["action"] == mapping.action]
        automatic = [p for p in presets if p["type"] == "automatic"]
        if not presets:
            raise LookupError(f"{directory} has no preset for {mapping.action}")
        preset = (automatic or presets)[0]
        start = dict(preset["mapping"])
        subscribe = preset["subscribe"] or subscribe
    fields = {**start, **mapping.fields}
    subscribe = mapping.subscribe or subscribe
    if not subscribe:
        raise LookupError(f"{directory}.{mapping.action}: no trigger; give one in the case")
    batch = bool(action["batches"]) and fields.get("enable_batching") is True
    return Resolved(mapping.action, fields, " ".join(subscribe.split()), batch)


def mappings(case: Case) -> list[Resolved]:
    return [resolve(case.directory, m) for m in case.mappings]


@dataclass(frozen=True)
class Sent:
    """One request as the destination's code made it."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None


@dataclass(frozen=True)
class DirectRun:
    mapping: Resolved
    subscribed: list[str]  # messageIds the trigger matched
    requests: list[Sent]
    result: Any
    error: dict[str, Any] | None


def run(case: Case, events: list[dict[str, Any]] | None = None) -> list[DirectRun]:
    """Every mapping of the case, called directly with the case's settings and ``events``."""
    return run_all([(case, events)])[0]


def run_all(
    cases: list[tuple[Case, list[dict[str, Any]] | None]],
) -> list[list[DirectRun]]:
    """Several cases in one Node process (loading the package takes a second)."""
    resolved = [mappings(case) for case, _ in cases]
    specs = [
        spec
        for (case, events), found in zip(cases, resolved, strict=True)
        for spec in _specs(case, found, events)
    ]
    results = iter(node({"cases": specs})["results"])
    return [[_direct_run(m, next(results)) for m in found] for found in resolved]


def _specs(
    case: Case, resolved: list[Resolved], events: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    return [
        {
            "directory": case.directory,
            "action": m.action,
            "settings": case.settings,
            "mapping": m.fields,
            "subscribe": m.subscribe,
            "events": list(case.events) if events is None else events,
            "batch": m.batch,
            "auth": case.auth,
            "env": case.env,
            "answer": {"body": case.answer},
        }
        for m in resolved
    ]


def _direct_run(mapping: Resolved, result: dict[str, Any]) -> DirectRun:
    return DirectRun(
        mapping,
        result["subscribed"],
        [Sent(q["method"], q["url"], q["headers"], q["body"]) for q in result["requests"]],
        result.get("result"),
        result.get("error"),
    )


@dataclass(frozen=True)
class Compared:
    """A request as the two sides are compared: where it went, what it carried, its credential
    and the other headers the destination set. The origin is left out (one side reaches the
    vendor, the other the receiver), and so are the headers the HTTP client adds on the wire
    (node-fetch's ``Accept: */*`` when none was set among them)."""

    method: str
    path: str
    query: tuple[tuple[str, tuple[str, ...]], ...]
    body: str  # canonical JSON of the parsed body
    auth: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]  # every header the destination's code set

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.method, self.path, repr(self.query), self.body)


def parsed_body(body: bytes | str | None, content_type: str) -> Any:
    if body is None or body in (b"", ""):
        return None
    text = body.decode() if isinstance(body, bytes) else body
    if "x-www-form-urlencoded" in content_type:
        return {"form": parse_qs(text, keep_blank_values=True)}
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


def compared(
    method: str, url_or_path: str, headers: dict[str, str], body: bytes | str | None
) -> Compared:
    lowered = {k.lower(): v for k, v in headers.items()}
    split = urlsplit(url_or_path)
    query = parse_qs(split.query)  # blank values dropped, as the receiver drops them
    return Compared(
        method.upper(),
        split.path,
        tuple(sorted((k, tuple(v)) for k, v in query.items())),
        json.dumps(parsed_body(body, lowered.get("content-type", "")), sort_keys=True),
        tuple(sorted((k, v) for k, v in lowered.items() if k in AUTH_HEADERS)),
        tuple(
            sorted(
                (k, v)
                for k, v in lowered.items()
                if k not in TRANSPORT_HEADERS and not (k == "accept" and v == "*/*")
            )
        ),
    )


def compared_sent(sent: Sent) -> Compared:
    return compared(sent.method, sent.url, sent.headers, sent.body)


def secrets(case: Case) -> list[str]:
    """Every credential of the case: the settings the definition types ``password``, the OAuth
    app's secret and tokens, partner credentials from the environment."""
    keys = describe(case.directory)["secrets"]
    found = [str(case.settings[k]) for k in keys if case.settings.get(k)]
    if case.auth:
        found += [v for k, v in case.auth.items() if k != "clientId"]
    return found + list(case.env.values())


def refresh(case: Case, answer: Any) -> tuple[list[Sent], Any]:
    """The definition's ``refreshAccessToken`` called directly with the case's OAuth app and
    tokens, its token endpoint answering ``answer``: the requests, and the new tokens."""
    found = node(
        {
            "refresh": {
                "directory": case.directory,
                "settings": case.settings,
                "auth": case.auth,
                "answer": {"body": answer},
            }
        }
    )
    if "error" in found:
        raise RuntimeError(f"refreshAccessToken failed: {found['error']}")
    sent = [Sent(q["method"], q["url"], q["headers"], q["body"]) for q in found["requests"]]
    return sent, found["result"]
