"""From a warehouse's settings to what a sync writes with: a table loader or a lake target."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from headwater.warehouse.lake import LakeTarget, SqliteSeenIds, open_target
from headwater.warehouse.loaders import Loader, open_loader
from headwater.warehouse.settings import DuckDBSettings, LakeSettings, PostgresSettings
from headwater.warehouse.store import WarehouseInfo

LAKE = "data-lake"


def duckdb_path(warehouse: WarehouseInfo, data_dir: Path) -> Path:
    """The file of a DuckDB warehouse: its ``path`` setting, else one in the data directory."""
    settings = DuckDBSettings.model_validate(warehouse.settings)
    if settings.path:
        path = Path(settings.path)
        return path if path.is_absolute() else data_dir / path
    return data_dir / f"warehouse-{warehouse.name}.duckdb"


def postgres_url(warehouse: WarehouseInfo) -> str:
    s = PostgresSettings.model_validate(warehouse.settings)
    auth = quote(s.user, safe="")
    if s.password:
        auth += ":" + quote(s.password, safe="")
    url = f"postgresql://{auth}@{s.host}:{s.port}/{quote(s.database, safe='')}"
    return url + (f"?sslmode={quote(s.sslmode, safe='')}" if s.sslmode else "")


def loader_for(warehouse: WarehouseInfo, data_dir: Path) -> Loader:
    if warehouse.type == "duckdb":
        path = duckdb_path(warehouse, data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_loader("duckdb", str(path))
    if warehouse.type == "postgres":
        return open_loader("postgres", postgres_url(warehouse))
    raise ValueError(f"a {warehouse.type} warehouse has no table loader")


def lake_target(warehouse: WarehouseInfo, data_dir: Path) -> LakeTarget:
    s = LakeSettings.model_validate(warehouse.settings)
    location = s.location
    if "://" not in location and not Path(location).is_absolute():
        location = str(data_dir / location)
    return open_target(location, endpoint_url=s.endpoint_url, region=s.region,
                       access_key_id=s.access_key_id, secret_access_key=s.secret_access_key)


def lake_seen_ids(warehouse: WarehouseInfo, data_dir: Path) -> SqliteSeenIds:
    """The lake's 7-day messageId memory, beside the state in the data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteSeenIds(data_dir / f"lake-{warehouse.id}-seen.db")
