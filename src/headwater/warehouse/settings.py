"""What a warehouse connection needs, per kind, and how often and what it syncs.

Kinds: ``duckdb`` (the embedded default, a file in the data directory unless ``path`` says
otherwise), ``postgres`` (a server), ``data-lake`` (Parquet files in a directory or on S3).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headwater.warehouse.paths import check_path

MAX_SYNCS_PER_DAY: Final = 24  # Segment: "never more than once per hour"
DEFAULT_SYNCS_PER_DAY: Final = 24
# Selective Sync may not turn this column off: every table is sorted and resumed on it.
ALWAYS_SYNCED: Final = "received_at"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DuckDBSettings(_Settings):
    # Default: warehouse-<name>.duckdb in the data directory. Relative paths are inside it;
    # absolute ones are the operator's choice; ".." is refused (see paths.py).
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else check_path(value, "path")


class PostgresSettings(_Settings):
    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: str | None = None
    sslmode: str | None = None


class LakeSettings(_Settings):
    location: str = Field(min_length=1)  # a directory (as DuckDB's path), or s3://bucket/prefix
    endpoint_url: str | None = None  # an S3-compatible endpoint (tests, MinIO, proxies)
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if "://" not in value:
            return check_path(value, "location")
        # S3 keys are literal, but proxies and S3-compatible servers may fold "..": refused
        # there too, so the lake stays under its prefix.
        if ".." in value.split("://", 1)[1].split("/"):
            raise ValueError(f"location {value!r} must not contain '..' segments")
        return value


KINDS: Final[dict[str, type[_Settings]]] = {
    "duckdb": DuckDBSettings,
    "postgres": PostgresSettings,
    "data-lake": LakeSettings,
}
SECRETS: Final[dict[str, frozenset[str]]] = {
    "duckdb": frozenset(),
    "postgres": frozenset({"password"}),
    "data-lake": frozenset({"secret_access_key"}),
}


class SourceSync(BaseModel):
    """Selective Sync for one source: collections (tables) and properties (columns) left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    disabled_collections: list[str] = Field(default_factory=list)
    disabled_properties: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("disabled_properties")
    @classmethod
    def _received_at(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for collection, names in value.items():
            if ALWAYS_SYNCED in names:
                raise ValueError(
                    f"{collection}.{ALWAYS_SYNCED} cannot be turned off: every "
                    "table is loaded and resumed by it, so syncs would fail"
                )
        return value


class WarehouseOptions(BaseModel):
    """How often a warehouse syncs, which sources it takes, and under which schema names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    syncs_per_day: int = Field(default=DEFAULT_SYNCS_PER_DAY, ge=1, le=MAX_SYNCS_PER_DAY)
    sources: list[str] | None = None  # source names or ids; None: every source, new ones too
    schema_names: dict[str, str] = Field(default_factory=dict)  # source -> schema
    selective_sync: dict[str, SourceSync] = Field(default_factory=dict)  # source -> rules

    @model_validator(mode="after")
    def _distinct_schemas(self) -> WarehouseOptions:
        names = list(self.schema_names.values())
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two sources cannot share the schema {name!r}")
        return self

    @property
    def sync_interval_seconds(self) -> int:
        return 86_400 // self.syncs_per_day


def parse_settings(kind: str, raw: Any) -> _Settings:
    try:
        model = KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown warehouse type {kind!r}; known types: {', '.join(sorted(KINDS))}"
        ) from None
    return model.model_validate(raw)
