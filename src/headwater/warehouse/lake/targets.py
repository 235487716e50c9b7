"""Where a data lake's files go: a local directory or an S3 bucket and prefix.

A target only puts, gets and lists whole objects by key (``data/…``, ``reports/…``,
``schemas/…``, relative to its root). ``error_code`` sorts a target's failures into Segment's
three sync-report classes: insufficient permissions, invalid settings, internal.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

INTERNAL: Final = "Segment.Internal"
PERMISSIONS: Final = "Segment.InsufficientPermissions"
SETTINGS: Final = "Segment.InvalidSettings"


class LakeTarget(ABC):
    """Where the lake's files go: all the lake needs is put, get and list of whole objects."""

    location: str  # as configured: a directory or s3://bucket/prefix
    bucket: str  # the report's ``s3_bucket``: the bucket, or the directory for a local lake

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Keys (relative to the root) starting with ``prefix``, sorted."""


class LocalLakeTarget(LakeTarget):
    """A directory. Files appear whole (written aside, fsynced, renamed) so that a reader or a
    crash never sees half a Parquet file."""

    def __init__(self, directory: Path | str) -> None:
        self.root = Path(directory).absolute()
        self.location = str(directory)
        self.bucket = str(self.root)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a lake key: {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        # Walk only the directory the prefix names, not the whole lake.
        base = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys: list[str] = []
        for directory, _, files in os.walk(base):
            for name in files:
                if name.startswith("."):  # a put in progress
                    continue
                key = Path(directory, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


class S3LakeTarget(LakeTarget):
    """An S3 bucket and prefix. Credentials come from the arguments, else from boto3's usual
    chain (environment, profile, instance role); an ``endpoint_url`` (MinIO, moto, a proxy)
    switches to path-style addressing, which those servers expect."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=region,
            )
            config = Config(
                retries={"mode": "standard", "max_attempts": 5},
                s3={"addressing_style": "path"} if endpoint_url else None,
            )
            client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return response["Body"].read()

    def list_keys(self, prefix: str) -> list[str]:
        strip = len(self._key(""))
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        ):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)


def open_target(
    location: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> LakeTarget:
    """The target a lake's settings name (the arguments are ``LakeSettings``' fields)."""
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {location!r}")
        return S3LakeTarget(
            bucket,
            prefix,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    if "://" in location:
        raise ValueError(f"a lake is a directory or s3://bucket/prefix, not {location!r}")
    return LocalLakeTarget(location)


def error_code(exc: BaseException) -> str:
    """Segment's three error classes: permissions, settings, internal (worth a retry)."""
    if isinstance(exc, PermissionError):
        return PERMISSIONS
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return PERMISSIONS
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        if code in (
            "AccessDenied",
            "AllAccessDisabled",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "403",
        ):
            return PERMISSIONS
        if code in (
            "NoSuchBucket",
            "InvalidBucketName",
            "PermanentRedirect",
            "AuthorizationHeaderMalformed",
            "IllegalLocationConstraintException",
        ):
            return SETTINGS
    if isinstance(exc, NotADirectoryError | ValueError):
        return SETTINGS
    return INTERNAL
