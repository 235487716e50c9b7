"""The generated TypeScript client: `tsc --strict` (tests/oracle's pinned TypeScript, against
the pinned @segment/analytics-next types) accepts right calls and fails wrong ones, and the
compiled calls hand analytics.js the plan's event names, properties and event_version."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from headwater import __version__
from headwater.destinations.runtime.node import find_node
from headwater.protocols.compiled import Rule
from headwater.protocols.typewriter import generate

ORACLE_MODULES = Path(__file__).parents[2] / "oracle" / "node_modules"

GOOD_USE = """\
import typewriter, {
  event42TerribleEventName3, eventCollided, eventCollided2, experimentViewed, nestedArrays,
  nestedObjects, orderCompleted, setTypewriterOptions, list, record, commandePassée,
} from './index'
import type { Record2 } from './index'
import { AnalyticsBrowser } from '@segment/analytics-next'

setTypewriterOptions({ analytics: AnalyticsBrowser.load({ writeKey: 'wk' }) })
orderCompleted({ order_id: 'o-1', revenue: 33.5, coupon: null })
orderCompleted({ order_id: 'o-2', revenue: 1 }, { context: { ip: '10.0.0.1' } }, () => {})
event42TerribleEventName3()
eventCollided()
eventCollided2({ anything: 1 })
experimentViewed({ variant: null, scores: { x: 1.5 }, flags: { beta: true } })
experimentViewed({ variant: 'a', utm_source: 'x' })  // additionalProperties: true
nestedArrays({ universeCharacters: [[{ name: 'Rick' }], []] })
nestedObjects({ garage: { tunnel: { 'subterranean lab': {} } } })
typewriter.orderCompleted({ order_id: 'o-3', revenue: 2 })
list({ items: ['a'] })
const r: Record2 = { id: 'r1' }  // the event's interface; the global Record is untouched
record(r)
commandePassée({ montant: 12.5 })
const counts: Record<string, number> = { a: 1 }
void counts
"""

# One mistake per line; each must be a type error on its own line.
BAD_USE = [
    "orderCompleted({ order_id: 'o-1' })",  # revenue is required in version 2
    "orderCompleted({ order_id: 1, revenue: 2 })",
    "orderCompleted({ order_id: 'o', revenue: 1, cupon: 'x' })",
    "experimentViewed({ variant: 'c' })",
    "experimentViewed({ variant: 'a', flags: { alpha: true } })",
    "experimentViewed({ variant: 'a', scores: { x: 'high' } })",
    "nestedArrays({ universeCharacters: [{ name: 'Rick' }] })",
    "nestedObjects({ garage: { tunnel: {} } })",
    "orderCompleted()",
]

RUN = """\
const tw = require('./out/index.js')
const sent = []
const fake = { track: (...args) => { sent.push(args); return Promise.resolve() } }
tw.setTypewriterOptions({ analytics: fake })
tw.orderCompleted({ order_id: 'o-1', revenue: 3 }, { context: { protocols: { a: 1 } } })
tw.event42TerribleEventName3()
tw.default.notInThePlan()
process.stdout.write(JSON.stringify(sent))
"""


@pytest.fixture
def project(tmp_path: Path, plan_rules: list[Rule]) -> Path:
    if not (ORACLE_MODULES / "typescript").is_dir():
        pytest.fail("tests/oracle/node_modules lacks typescript: run `npm ci` in tests/oracle")
    for name, text in generate("Web Plan", plan_rules, "typescript").items():
        (tmp_path / name).write_text(text, "utf-8")
    (tmp_path / "node_modules").symlink_to(ORACLE_MODULES)
    return tmp_path


def _tsc(project: Path, *files: str, out: str | None = None) -> subprocess.CompletedProcess[str]:
    options = ["--noEmit"] if out is None else ["--outDir", out, "--module", "commonjs"]
    return subprocess.run(
        [
            str(find_node().executable),
            str(ORACLE_MODULES / "typescript" / "bin" / "tsc"),
            "--strict",
            "--target", "es2020",
            "--moduleResolution", "node10",
            "--lib", "es2020,dom",
            "--skipLibCheck",
            *options,
            *files,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def test_generated_typescript_type_checks_and_rejects_wrong_calls(project: Path) -> None:
    (project / "good.ts").write_text(GOOD_USE, "utf-8")
    ok = _tsc(project, "index.ts", "good.ts")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    header = "import { experimentViewed, nestedArrays, nestedObjects, orderCompleted } "
    header += "from './index'\n"
    (project / "bad.ts").write_text(header + "\n".join(BAD_USE) + "\n", "utf-8")
    bad = _tsc(project, "bad.ts")
    assert bad.returncode != 0
    failing = {int(m) for m in re.findall(r"^bad\.ts\((\d+),\d+\): error TS", bad.stdout, re.M)}
    assert failing == set(range(2, 2 + len(BAD_USE))), bad.stdout


def test_compiled_calls_carry_the_plans_names_and_version(project: Path) -> None:
    built = _tsc(project, "index.ts", out="out")
    assert built.returncode == 0, built.stdout + built.stderr
    (project / "run.js").write_text(RUN, "utf-8")
    run = subprocess.run(
        [str(find_node().executable), "run.js"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    order, terrible, unknown = json.loads(run.stdout)
    typewriter = {"language": "typescript", "version": __version__}
    assert order[0:2] == ["Order Completed", {"order_id": "o-1", "revenue": 3}]
    assert order[2]["context"] == {
        "protocols": {"a": 1, "event_version": 2},
        "typewriter": typewriter,
    }
    assert terrible[0:2] == ["42_--terrible==\"event'++name~!3", {}]
    assert terrible[2]["context"] == {"typewriter": typewriter}
    assert unknown[0:2] == ["Unknown Analytics Call Fired", {"method": "notInThePlan"}]
