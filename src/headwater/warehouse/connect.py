"""From a warehouse's settings to what a sync writes with: a table loader or a lake target."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from headwater.errors import UnsafePathError, WarehouseError
from headwater.warehouse.lake import LakeTarget, SqliteSeenIds, open_target
from headwater.warehouse.loaders import Loader, open_loader
from headwater.warehouse.paths import name_segment, resolve_path
from headwater.warehouse.settings import DuckDBSettings, LakeSettings, PostgresSettings
from headwater.warehouse.store import WarehouseInfo

LAKE = "data-lake"
_Settings = TypeVar("_Settings", bound=BaseModel)


def duckdb_path(warehouse: WarehouseInfo, data_dir: Path) -> Path:
    """The file of a DuckDB warehouse: its ``path`` setting (relative: in the data
    directory), else ``warehouse-<name>.duckdb`` there, the name made one safe file name."""
    settings = _settings(DuckDBSettings, warehouse)
    if settings.path:
        return resolve_path(data_dir, settings.path, "path")
    name = warehouse.name
    path = data_dir / name_segment(name, prefix="warehouse-", suffix=".duckdb")
    if "/" in name and not path.exists():
        # Before names were made file names, "a/b" loaded into warehouse-a/b.duckdb; a file
        # already there stays this warehouse's (it cannot be another's: no name of today
        # makes a directory). Not with "", "." or ".." segments: those could lead anywhere.
        legacy = f"warehouse-{name}.duckdb".split("/")
        if all(part not in ("", ".", "..") for part in legacy):
            old = data_dir.joinpath(*legacy)
            if old.is_file():
                return old
    return path


def postgres_url(warehouse: WarehouseInfo) -> str:
    s = _settings(PostgresSettings, warehouse)
    auth = quote(s.user, safe="")
    if s.password:
        auth += ":" + quote(s.password, safe="")
    url = f"postgresql://{auth}@{s.host}:{s.port}/{quote(s.database, safe='')}"
    return url + (f"?sslmode={quote(s.sslmode, safe='')}" if s.sslmode else "")


def loader_for(warehouse: WarehouseInfo, data_dir: Path) -> Loader:
    if warehouse.type == "duckdb":
        try:
            path = duckdb_path(warehouse, data_dir)
        except UnsafePathError as exc:  # settings stored before paths were checked
            raise WarehouseError(f"warehouse {warehouse.name}: settings.{exc}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_loader("duckdb", str(path))
    if warehouse.type == "postgres":
        return open_loader("postgres", postgres_url(warehouse))
    raise ValueError(f"a {warehouse.type} warehouse has no table loader")


def lake_target(warehouse: WarehouseInfo, data_dir: Path) -> LakeTarget:
    s = _settings(LakeSettings, warehouse)
    location = s.location
    if "://" not in location:
        location = str(resolve_path(data_dir, location, "location"))
    return open_target(
        location,
        endpoint_url=s.endpoint_url,
        region=s.region,
        access_key_id=s.access_key_id,
        secret_access_key=s.secret_access_key,
    )


def lake_seen_ids(warehouse: WarehouseInfo, data_dir: Path) -> SqliteSeenIds:
    """The lake's 7-day messageId memory, beside the state in the data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteSeenIds(data_dir / name_segment(warehouse.id, prefix="lake-", suffix="-seen.db"))


def _settings(model: type[_Settings], warehouse: WarehouseInfo) -> _Settings:
    """The warehouse's settings, or a WarehouseError saying which one is wrong (settings
    stored before a check existed can fail today's)."""
    try:
        return model.model_validate(warehouse.settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise WarehouseError(
            f"warehouse {warehouse.name}: settings.{where}: {error['msg']}"
        ) from None
