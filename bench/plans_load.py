"""What a configuration change costs the Protocols stage, and what saving rules costs.

    python bench/plans_load.py [--sources 100]

On a fresh SQLite state database: one LIVE plan of 200 Track rules (6 typed properties each)
connected to half the sources. Timed: `load_source_protocols` the first time (compiles the
plan) and again after a change elsewhere (the compiled plan is reused: only the rows are
read), and `PlanStore.replace_rules` with 200 rules (compile, write, changelog, one
transaction).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from headwater.protocols.compiled import Rule  # noqa: E402
from headwater.protocols.plans import PlanStore, load_source_protocols  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402

PROPS = {
    "order_id": {"type": "string"},
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "coupon": {"type": ["string", "null"]},
    "quantity": {"type": "integer"},
    "products": {"type": "array", "items": {"type": "object", "required": ["id"]}},
}


def rules(salt: str) -> list[Rule]:
    schema = {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": PROPS}},
        "description": salt,
    }
    return [Rule("TRACK", f"Event {i:03}", schema) for i in range(200)]


def timed(label: str, call: Callable[[], object], runs: int) -> None:
    started = time.perf_counter()
    for _ in range(runs):
        call()
    each = (time.perf_counter() - started) / runs
    print(f"{label:<48} {each * 1000:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None))
        migrate(engine)
        store = WorkspaceStore(engine)
        store.ensure_workspace("bench")
        plans = PlanStore(store)
        plans.create("Plan", rules=rules("a"))
        for i in range(args.sources):
            store.create_source(f"s{i}")
            if i % 2 == 0:
                plans.connect_source("Plan", f"s{i}")
        salts = iter(range(1_000_000))

        def cold() -> None:
            plans.set_rules("Plan", rules(str(next(salts))), actor="bench")
            load_source_protocols(engine)

        timed("replace 200 rules + load (compile)", cold, 5)

        def save() -> None:
            plans.set_rules("Plan", rules(str(next(salts))), actor="bench")

        timed("replace 200 rules (compile, write, log)", save, 5)
        load_source_protocols(engine)
        timed("load after a change elsewhere (cached)", lambda: load_source_protocols(engine), 20)
        engine.dispose()


if __name__ == "__main__":
    main()
