"""``headwater warehouse sync`` and ``headwater warehouse query``.

``sync`` asks the running server (its worker role runs syncs) and waits for the result; when no
server answers at ``--url``, it runs the sync itself on the data directory. ``query`` always
reads the warehouse directly (DuckDB read-only, which works while the server runs because the
loader holds the file only during a sync).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from headwater.admin_client import answer_data
from headwater.store.archive import Archive
from headwater.warehouse.connect import LAKE, loader_for
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import FAILURE, PARTIAL, REQUESTED, RUNNING, WarehouseSync

EXIT = {"success": 0, FAILURE: 1, PARTIAL: 2}


def server_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def sync_through_server(url: str, token: str, names: list[str], out: TextIO = sys.stdout) -> int:
    """Ask the server for each sync, wait for each; the worst exit code."""
    base = f"{url.rstrip('/')}/api/v1/warehouses"
    headers = {"authorization": f"Bearer {token}"}
    worst = 0
    with httpx.Client(headers=headers, timeout=30.0) as http:
        for name in names:
            started = answer_data(
                http.post(f"{base}/{quote(name, safe='')}/syncs"), f"warehouse sync {name}"
            )["sync"]
            out.write(f"{name}: sync {started['id']} requested; waiting for the server…\n")
            out.flush()
            shown = REQUESTED
            while True:
                run = answer_data(
                    http.get(f"{base}/{quote(name, safe='')}/syncs/{started['id']}"),
                    f"warehouse sync {name}",
                )["sync"]
                if run["status"] != shown:
                    shown = run["status"]
                    if shown == RUNNING:
                        out.write(f"{name}: running…\n")
                        out.flush()
                if run["status"] not in (REQUESTED, RUNNING):
                    break
                time.sleep(1.0)
            worst = max(worst, _report(name, run, out))
    return worst


def sync_directly(
    warehouses: WarehouseStore,
    archive_dir: Path,
    data_dir: Path,
    chosen: list[WarehouseInfo],
    out: TextIO = sys.stdout,
) -> int:
    worst = 0
    runner = WarehouseSync(warehouses, Archive(archive_dir), data_dir)

    def progress(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    for warehouse in chosen:
        out.write(f"{warehouse.name}: syncing from {archive_dir} (no server answered)…\n")
        out.flush()
        result = runner.run(warehouse, progress=progress)
        worst = max(worst, _report(warehouse.name, result.json(), out))
    return worst


def query(warehouse: WarehouseInfo, data_dir: Path, sql: str, out: TextIO = sys.stdout) -> int:
    if warehouse.type == LAKE:
        raise SystemExit(
            f"headwater warehouse query: {warehouse.name} is a data lake; read "
            "its Parquet files with DuckDB's read_parquet or another engine"
        )
    loader = loader_for(warehouse, data_dir)
    try:
        names, rows = loader.query(sql)
    finally:
        loader.close()
    out.write("\t".join(names) + "\n")
    for row in rows:
        out.write("\t".join("" if v is None else str(v) for v in row) + "\n")
    return 0


def _report(name: str, run: dict[str, Any], out: TextIO) -> int:
    rows = run.get("rows") or {}
    total = sum(n for tables in rows.values() for n in tables.values())
    out.write(f"{name}: {run['status']} — {total} rows\n")
    for schema, tables in sorted(rows.items()):
        for table, count in sorted(tables.items()):
            out.write(f"  {schema}.{table}: {count}\n")
    for notice in (run.get("notices") or [])[:20]:
        out.write(f"  notice: {notice}\n")
    if run.get("error"):
        out.write(
            f"  error: {run['error']}\n  Check the warehouse's settings "
            f"(headwater export) and run the sync again.\n"
        )
    out.flush()
    return EXIT.get(run["status"], 1)
