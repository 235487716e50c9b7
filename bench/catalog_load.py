"""How long a process takes to have the Actions catalog: import, read catalog.json, build.

    python bench/catalog_load.py --dir ACTIONS_DIR [--runs 5]

Each run is a fresh interpreter (what ``serve``, ``apply`` and each test session pay once):
it times importing the registry (pydantic, the mapping kit: paid by any process), importing
the native destinations, reading ``catalog.json`` and building every package definition
(settings models, actions' fields, presets), then the ``definitions()`` that merges them.
Prints each phase's median over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from headwater.destinations import registry
imported = time.perf_counter()
native = registry.native_definitions()
natives = time.perf_counter()
registry.use_actions_dir(Path(sys.argv[1]))
package = registry.package_definitions()
built = time.perf_counter()
everything = registry.definitions()
merged = time.perf_counter()
print(json.dumps({"import": imported - start, "native": natives - imported,
                  "package": built - natives, "merge": merged - built,
                  "definitions": len(package), "failed": len(registry.package_failures()),
                  "total": len(everything)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="an install with catalog.json")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.dir)], capture_output=True, text=True, check=True
        ).stdout
        runs.append(json.loads(out))
    first = runs[0]
    print(
        f"{first['definitions']} package definitions ({first['failed']} failed), "
        f"{first['total']} in the registry; median of {args.runs} fresh processes:"
    )
    for phase in ("import", "native", "package", "merge"):
        print(f"  {phase:<8} {statistics.median(r[phase] for r in runs) * 1000:7.1f} ms")
    load = statistics.median(
        sum(r[p] for p in ("import", "native", "package", "merge")) for r in runs
    )
    print(f"  in all: {load * 1000:.1f} ms")


if __name__ == "__main__":
    main()
