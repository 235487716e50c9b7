"""Functions as configuration: each function, its versions, and the settings its instances give.

``headwater apply``, the REST API and the CLI all write through ``FunctionStore``, inside the
workspace store's transactions, so Segment's rules hold whichever door a change comes in by:
every save of code is a new version (LATEST is the highest), "save" keeps the DEPLOYED label
where it was and "deploy" moves it, a restore is a new version with the old code, a function in
use cannot be deleted, and a workspace has at most 25 functions unless configured otherwise
(AC-111). Code that calls Segment's own function host (or, for a source function, this server's
own function endpoint) is refused at save, as Segment refuses it, so a function cannot loop
into itself (AC-113).

The runtime loads ``deployed(name)``, a ``contract.Code`` whose ``function`` is the function's
id (``fn_…``): stable across renames and never reused, so a warm sandbox is never mistaken for
a deleted function's namesake. Instances keep their own settings: a source's
``function_settings``, a destination's ``insert_function_settings``, a destination function's
instance its destination ``settings``; secrets declared by the function are stored as given and
shown as ``[redacted]``, like destination secrets (``store.instances``).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.functions.contract import KINDS, LANGUAGES, Code, Kind, Language
from headwater.functions.logs import FunctionLogs, LogEntry
from headwater.store import schema
from headwater.store.instances import REDACTED, keep_secrets
from headwater.store.instances import redact as redact_secrets
from headwater.store.workspace import (
    UNSET,
    Unset,
    WorkspaceStore,
    check_name,
    check_settings,
    is_unicode,
    new_id,
)

DEFAULT_LIMIT: Final = 25  # §11.1: functions per workspace (source + insert + destination)
MAX_CODE_BYTES: Final = 512 * 1024
MAX_INSERT_NAME: Final = 120  # §11.4: an insert function's display name
# A destination function's instances have the type ``function:<name>`` (a 100-character column).
DESTINATION_TYPE_PREFIX: Final = "function:"
MAX_DESTINATION_NAME: Final = 100 - len(DESTINATION_TYPE_PREFIX)
MAX_DESCRIPTION: Final = 10_000
MAX_SETTINGS: Final = 100
MAX_VERSION: Final = 2**31 - 1  # an INTEGER column
SETTING_TYPES: Final = ("string", "boolean", "array", "map")  # Segment's STRING … TEXT_MAP
SEGMENT_FUNCTION_HOST: Final = "fn.segmentapis.com"
OWN_ENDPOINT: Final = "/v1/functions/"
_SETTING_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,99}")


@dataclass(frozen=True)
class SettingDeclaration:
    """One setting a function's instances give it (Segment's Settings tab)."""

    name: str  # the identifier the code reads: ``settings.apiKey``
    label: str
    type: str  # string | boolean | array | map
    description: str = ""
    required: bool = False
    secret: bool = False

    def shown(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "description": self.description,
            "required": self.required,
            "secret": self.secret,
        }


@dataclass(frozen=True)
class FunctionInfo:
    id: str
    workspace_id: str
    name: str
    kind: Kind
    language: Language
    description: str
    settings: tuple[SettingDeclaration, ...]
    latest_version: int
    deployed_version: int | None  # None: never deployed
    created_at: int
    updated_at: int

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(s.name for s in self.settings if s.secret)

    @property
    def destination_type(self) -> str:
        """The ``type`` of a destination function's instances."""
        return DESTINATION_TYPE_PREFIX + self.name

    def redact(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """An instance's settings fit to show: every secret set becomes ``[redacted]``."""
        return redact_secrets(settings, self.secrets)


@dataclass(frozen=True)
class FunctionVersion:
    function_id: str
    version: int
    code: str
    created_at: int


@dataclass(frozen=True)
class Attached:
    """A function an instance runs, with the instance's own settings (secrets included)."""

    function: FunctionInfo
    settings: Mapping[str, Any]
    enabled: bool = True  # an insert function's Enable Function toggle (§11.4)


def function_name_of_type(destination_type: str) -> str | None:
    """``function:post-to-api`` → ``post-to-api``; None for any other destination type."""
    if destination_type.startswith(DESTINATION_TYPE_PREFIX):
        return destination_type[len(DESTINATION_TYPE_PREFIX) :]
    return None


class FunctionStore:
    """The workspace's functions. ``limit``: functions per workspace; ``base_url``: this
    server's public URL, whose ``/v1/functions/`` a source function may not call."""

    def __init__(
        self,
        workspace: WorkspaceStore,
        *,
        limit: int = DEFAULT_LIMIT,
        base_url: str | None = None,
    ) -> None:
        self._workspace = workspace
        self._limit = limit
        self._base_url = base_url.rstrip("/") if base_url else None

    @property
    def workspace(self) -> WorkspaceStore:
        return self._workspace

    @property
    def limit(self) -> int:
        return self._limit

    # --- reading -------------------------------------------------------------------------------

    def list(self) -> list[FunctionInfo]:
        """The workspace's functions by name."""
        f = schema.functions
        with self._workspace.reading() as conn:
            workspace_id = self._workspace.workspace_id(conn)
            if workspace_id is None:
                return []
            rows = list(
                conn.execute(
                    sa.select(f).where(f.c.workspace_id == workspace_id).order_by(f.c.name)
                )
            )
            latest = _latest_versions(conn, [row.id for row in rows])
            return [_info(row, latest.get(row.id, 0)) for row in rows]

    def get(self, id_or_name: str) -> FunctionInfo | None:
        with self._workspace.reading() as conn:
            row = self._find(conn, id_or_name)
            return self._reload(conn, row.id) if row is not None else None

    def require(self, id_or_name: str) -> FunctionInfo:
        with self._workspace.reading() as conn:
            return self._reload(conn, self._require(conn, id_or_name).id)

    def versions(self, id_or_name: str) -> builtins.list[FunctionVersion]:
        """Every version of a function, newest first."""
        v = schema.function_versions
        with self._workspace.reading() as conn:
            row = self._require(conn, id_or_name)
            rows = conn.execute(
                sa.select(v).where(v.c.function_id == row.id).order_by(v.c.version.desc())
            )
            return [FunctionVersion(r.function_id, r.version, r.code, r.created_at) for r in rows]

    def version(self, id_or_name: str, version: int) -> FunctionVersion:
        with self._workspace.reading() as conn:
            row = self._require(conn, id_or_name)
            return _version(conn, row.id, version)

    def deployed(self, id_or_name: str) -> Code | None:
        """The DEPLOYED version as the runtime loads it; None when there is none."""
        with self._workspace.reading() as conn:
            row = self._find(conn, id_or_name)
            if row is None or row.deployed_version is None:
                return None
            found = _version(conn, row.id, row.deployed_version)
            return Code(row.id, found.version, row.language, found.code)

    def latest(self, id_or_name: str) -> Code:
        """The LATEST version (what the test runner runs)."""
        with self._workspace.reading() as conn:
            row = self._require(conn, id_or_name)
            info = self._reload(conn, row.id)
            found = _version(conn, row.id, info.latest_version)
            return Code(row.id, found.version, row.language, found.code)

    def settings_declaration(self, id_or_name: str) -> tuple[SettingDeclaration, ...]:
        return self.require(id_or_name).settings

    def source_function(self, source: str) -> Attached | None:
        """The source function a source runs, with the source's settings for it."""
        with self._workspace.reading() as conn:
            row = self._workspace.require(conn, source)
            if row.function_id is None:
                return None
            return Attached(self._reload(conn, row.function_id), dict(row.function_settings or {}))

    def insert_function(self, destination: str) -> Attached | None:
        """The insert function a destination instance runs, with the instance's settings."""
        with self._workspace.reading() as conn:
            row = _require_destination(conn, self._workspace, destination)
            if row.insert_function_id is None:
                return None
            return Attached(
                self._reload(conn, row.insert_function_id),
                dict(row.insert_function_settings or {}),
                bool(row.insert_function_enabled),
            )

    def users(self, id_or_name: str) -> builtins.list[str]:
        """What runs the function: ``source <name>`` and ``destination <name>`` entries."""
        with self._workspace.reading() as conn:
            return self._users(conn, self._require(conn, id_or_name))

    # --- changing ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        kind: str,
        language: str,
        code: str,
        *,
        description: str = "",
        settings: Sequence[Any] = (),
    ) -> FunctionInfo:
        """A new function with its code as version 1, deployed: nothing runs it yet, so the
        first version is what its first instance gets."""
        checked_kind = _kind(kind)
        check_function_name(name, checked_kind)
        checked_language = _language(language)
        self._check_code(code, checked_kind)
        declared = [s.shown() for s in check_declarations(settings)]
        text = check_description(description)
        f = schema.functions
        with self._workspace.writing() as conn:
            workspace_id = self._workspace.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._check_name_free(conn, workspace_id, name)
            count = conn.execute(
                sa.select(sa.func.count()).select_from(f).where(f.c.workspace_id == workspace_id)
            ).scalar_one()
            if count >= self._limit:
                raise ConflictError(
                    f"the workspace already has {count} functions, its limit (Segment's default "
                    f"is {DEFAULT_LIMIT}); delete one, or raise server.functions_limit",
                    "name",
                )
            function_id = "fn_" + new_id()
            now = self._workspace.now()
            conn.execute(
                f.insert().values(
                    id=function_id,
                    workspace_id=workspace_id,
                    name=name,
                    kind=checked_kind,
                    language=checked_language,
                    description=text,
                    settings=declared,
                    deployed_version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                schema.function_versions.insert().values(
                    function_id=function_id, version=1, code=code, created_at=now
                )
            )
            self._workspace.bump(conn)
            return self._reload(conn, function_id)

    def update(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset = UNSET,
        settings: Sequence[Any] | Unset = UNSET,
        code: str | Unset = UNSET,
        deploy: bool = False,
    ) -> FunctionInfo:
        """Change what is given. Code that differs from LATEST is saved as a new version;
        ``deploy`` then moves DEPLOYED to LATEST ("Save & Deploy"), else it stays ("Save").
        The kind and language are fixed at creation, as in Segment."""
        f = schema.functions
        with self._workspace.writing() as conn:
            row = self._require(conn, id_or_name)
            info = self._reload(conn, row.id)
            values: dict[str, Any] = {}
            if not isinstance(name, Unset) and name != row.name:
                check_function_name(name, info.kind)
                self._check_name_free(conn, row.workspace_id, name)
                self._check_renamable(conn, info)
                values["name"] = name
            if not isinstance(description, Unset):
                values["description"] = check_description(description)
            if not isinstance(settings, Unset):
                values["settings"] = [s.shown() for s in check_declarations(settings)]
            latest = info.latest_version
            if not isinstance(code, Unset):
                self._check_code(code, info.kind)
                if code != _version(conn, row.id, latest).code:
                    latest += 1
                    conn.execute(
                        schema.function_versions.insert().values(
                            function_id=row.id,
                            version=latest,
                            code=code,
                            created_at=self._workspace.now(),
                        )
                    )
                    values["updated_at"] = self._workspace.now()
            if deploy and row.deployed_version != latest:
                values["deployed_version"] = latest
            if values:
                values["updated_at"] = self._workspace.now()
                conn.execute(f.update().where(f.c.id == row.id).values(**values))
                self._workspace.bump(conn)
            return self._reload(conn, row.id)

    def deploy(self, id_or_name: str, version: int | None = None) -> FunctionInfo:
        """Move DEPLOYED to ``version`` (LATEST when None): every instance runs it from now."""
        f = schema.functions
        with self._workspace.writing() as conn:
            row = self._require(conn, id_or_name)
            target = version if version is not None else self._reload(conn, row.id).latest_version
            _version(conn, row.id, target)  # it exists
            if row.deployed_version != target:
                conn.execute(
                    f.update()
                    .where(f.c.id == row.id)
                    .values(deployed_version=target, updated_at=self._workspace.now())
                )
                self._workspace.bump(conn)
            return self._reload(conn, row.id)

    def restore(self, id_or_name: str, version: int, *, deploy: bool = False) -> FunctionInfo:
        """A new version holding ``version``'s code (Segment's restore); ``deploy`` deploys it."""
        with self._workspace.writing() as conn:
            row = self._require(conn, id_or_name)
            old = _version(conn, row.id, version)
            latest = self._reload(conn, row.id).latest_version
            now = self._workspace.now()
            conn.execute(
                schema.function_versions.insert().values(
                    function_id=row.id, version=latest + 1, code=old.code, created_at=now
                )
            )
            values: dict[str, Any] = {"updated_at": now}
            if deploy:
                values["deployed_version"] = latest + 1
            conn.execute(
                schema.functions.update().where(schema.functions.c.id == row.id).values(**values)
            )
            self._workspace.bump(conn)
            return self._reload(conn, row.id)

    def delete(self, id_or_name: str) -> None:
        """Delete a function, its versions and logs; refused while anything runs it."""
        with self._workspace.writing() as conn:
            row = self._require(conn, id_or_name)
            users = self._users(conn, row)
            if users:
                raise ConflictError(
                    f"function {row.name!r} is in use by {', '.join(users)}; "
                    "detach or delete those first"
                )
            conn.execute(
                sa.delete(schema.function_logs).where(schema.function_logs.c.function_id == row.id)
            )
            conn.execute(
                sa.delete(schema.function_versions).where(
                    schema.function_versions.c.function_id == row.id
                )
            )
            conn.execute(sa.delete(schema.functions).where(schema.functions.c.id == row.id))
            self._workspace.bump(conn)

    def attach_source(
        self, source: str, function: str | None, settings: Mapping[str, Any] | None = None
    ) -> Attached | None:
        """Make ``source`` run source function ``function`` (None: none) with ``settings``;
        secrets not sent, or sent as ``[redacted]``, keep their stored value."""
        with self._workspace.writing() as conn:
            row = self._workspace.require(conn, source)
            function_id, stored = self._attachment(
                conn,
                function,
                "source",
                settings,
                dict(row.function_settings or {}) if row.function_id else {},
                "function",
            )
            conn.execute(
                schema.sources.update()
                .where(schema.sources.c.id == row.id)
                .values(
                    function_id=function_id,
                    function_settings=stored,
                    updated_at=self._workspace.now(),
                )
            )
            self._workspace.bump(conn)
        return self.source_function(row.id)

    def attach_insert(
        self,
        destination: str,
        function: str | None,
        settings: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
    ) -> Attached | None:
        """Make a destination instance run insert function ``function`` (None: none);
        ``enabled``: its Enable Function toggle (off: events reach the destination
        unmodified)."""
        with self._workspace.writing() as conn:
            row = _require_destination(conn, self._workspace, destination)
            function_id, stored = self._attachment(
                conn,
                function,
                "insert",
                settings,
                dict(row.insert_function_settings or {}) if row.insert_function_id else {},
                "insert_function",
            )
            conn.execute(
                schema.destinations.update()
                .where(schema.destinations.c.id == row.id)
                .values(
                    insert_function_id=function_id,
                    insert_function_settings=stored,
                    insert_function_enabled=enabled or function_id is None,
                    updated_at=self._workspace.now(),
                )
            )
            self._workspace.bump(conn)
        return self.insert_function(row.id)

    def destination_function(self, destination_type: str) -> FunctionInfo:
        """The destination function a ``function:<name>`` type names (checked: it exists and
        is a destination function)."""
        name = function_name_of_type(destination_type)
        if name is None:
            raise InvalidError(f"{destination_type!r} is not a function: type", "type")
        found = self.get(name)
        if found is None:
            raise InvalidError(f"no function is named {name!r}", "type")
        if found.kind != "destination":
            raise InvalidError(
                f"function {name!r} is a {found.kind} function, not a destination function",
                "type",
            )
        return found

    # --- helpers -------------------------------------------------------------------------------

    def _attachment(
        self,
        conn: Connection,
        function: str | None,
        kind: Kind,
        settings: Mapping[str, Any] | None,
        old: Mapping[str, Any],
        field: str,
    ) -> tuple[str | None, dict[str, Any]]:
        if function is None:
            if settings:
                raise InvalidError("settings given without a function", f"{field}_settings")
            return None, {}
        found = self._find(conn, function)
        if found is None:
            raise NotFoundError(f"no function has the id or name {function!r}", field)
        info = self._reload(conn, found.id)
        if info.kind != kind:
            raise InvalidError(
                f"function {info.name!r} is a {info.kind} function, not a {kind} function", field
            )
        return info.id, check_instance_settings(
            info, settings or {}, old, field=f"{field}_settings"
        )

    def _check_code(self, code: object, kind: Kind) -> None:
        check_code_text(code, kind)
        assert isinstance(code, str)
        if kind == "source" and self._base_url and self._base_url + OWN_ENDPOINT in code:
            raise InvalidError(
                f"a source function may not call this server's function endpoints "
                f"({self._base_url}{OWN_ENDPOINT}…): it would call itself",
                "code",
            )

    def _find(self, conn: Connection, id_or_name: str) -> Row[Any] | None:
        if "\x00" in id_or_name:
            return None  # no name holds one (PostgreSQL text cannot)
        f = schema.functions
        row = conn.execute(sa.select(f).where(f.c.id == id_or_name)).first()
        if row is not None:
            return row
        workspace_id = self._workspace.workspace_id(conn)
        if workspace_id is None:
            return None
        return conn.execute(
            sa.select(f).where(f.c.workspace_id == workspace_id, f.c.name == id_or_name)
        ).first()

    def _require(self, conn: Connection, id_or_name: str) -> Row[Any]:
        row = self._find(conn, id_or_name)
        if row is None:
            raise NotFoundError(f"no function has the id or name {id_or_name!r}")
        return row

    def _reload(self, conn: Connection, function_id: str) -> FunctionInfo:
        row = conn.execute(
            sa.select(schema.functions).where(schema.functions.c.id == function_id)
        ).one()
        return _info(row, _latest_versions(conn, [function_id]).get(function_id, 0))

    def _check_name_free(self, conn: Connection, workspace_id: str, name: str) -> None:
        f = schema.functions
        clash = conn.execute(
            sa.select(f.c.id).where(f.c.workspace_id == workspace_id, f.c.name == name)
        ).first()
        if clash is not None:
            raise ConflictError(f"a function named {name!r} already exists", "name")

    def _check_renamable(self, conn: Connection, info: FunctionInfo) -> None:
        """A destination function's instances name it in their type: not while it has any."""
        if info.kind == "destination" and self._users(conn, info):
            raise ConflictError(
                f"destination function {info.name!r} has instances, whose type names it; "
                "delete them before renaming it",
                "name",
            )

    def _users(self, conn: Connection, row: Row[Any] | FunctionInfo) -> builtins.list[str]:
        s, d = schema.sources, schema.destinations
        users = [
            f"source {name!r}"
            for name in conn.execute(
                sa.select(s.c.name).where(s.c.function_id == row.id).order_by(s.c.name)
            ).scalars()
        ]
        users += [
            f"destination {name!r}"
            for name in conn.execute(
                sa.select(d.c.name)
                .where(
                    d.c.workspace_id == row.workspace_id,
                    sa.or_(
                        d.c.insert_function_id == row.id,
                        d.c.type == DESTINATION_TYPE_PREFIX + row.name,
                    ),
                )
                .order_by(d.c.name)
            ).scalars()
        ]
        return users


# --- checks ----------------------------------------------------------------------------------


def check_code_text(code: object, kind: str) -> str:
    """A function's code, checked as every save checks it (size, text, no call of Segment's
    function host: AC-113)."""
    if not isinstance(code, str):
        raise InvalidError("must be a string", "code")
    if not code.strip():
        raise InvalidError("must not be empty", "code")
    if not is_unicode(code) or "\x00" in code:
        raise InvalidError("must be valid Unicode text without NUL characters", "code")
    if len(code.encode("utf-8")) > MAX_CODE_BYTES:
        raise InvalidError(f"must be at most {MAX_CODE_BYTES // 1024} KiB", "code")
    if SEGMENT_FUNCTION_HOST in code.lower():
        raise InvalidError(
            f"a {kind} function may not call Segment's function host "
            f"({SEGMENT_FUNCTION_HOST}): it would call itself (AC-113)",
            "code",
        )
    return code


def check_declarations(raw: object) -> list[SettingDeclaration]:
    """A function's settings declaration, checked: Segment's fields, names unique."""
    if not isinstance(raw, list | tuple):
        raise InvalidError("must be a list of settings", "settings")
    if len(raw) > MAX_SETTINGS:
        raise InvalidError(f"must declare at most {MAX_SETTINGS} settings", "settings")
    found: list[SettingDeclaration] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        field = f"settings[{i}]"
        if isinstance(item, SettingDeclaration):
            item = item.shown()
        if not isinstance(item, Mapping):
            raise InvalidError("must be an object", field)
        unknown = set(item) - {"name", "label", "type", "description", "required", "secret"}
        if unknown:
            raise InvalidError(f"unknown field {sorted(unknown)[0]!r}", field)
        name = item.get("name")
        if not isinstance(name, str) or not _SETTING_NAME.fullmatch(name):
            raise InvalidError(
                "must be an identifier the code can read (letters, digits, '_', '$')",
                f"{field}.name",
            )
        if name in seen:
            raise InvalidError(f"{name!r} is declared twice", f"{field}.name")
        seen.add(name)
        label = item.get("label", name)
        type_ = item.get("type", "string")
        description = item.get("description", "")
        if (
            not isinstance(label, str)
            or len(label) > 200
            or not is_unicode(label)
            or "\x00" in label
        ):
            raise InvalidError("must be text of at most 200 characters", f"{field}.label")
        if type_ not in SETTING_TYPES:
            raise InvalidError(f"must be one of {', '.join(SETTING_TYPES)}", f"{field}.type")
        if not isinstance(description, str) or not is_unicode(description) or "\x00" in description:
            raise InvalidError("must be text", f"{field}.description")
        flags = {}
        for flag in ("required", "secret"):
            value = item.get(flag, False)
            if not isinstance(value, bool):
                raise InvalidError("must be true or false", f"{field}.{flag}")
            flags[flag] = value
        found.append(
            SettingDeclaration(name, label, str(type_), description[:MAX_DESCRIPTION], **flags)
        )
    return found


def check_instance_settings(
    function: FunctionInfo,
    new: Mapping[str, Any],
    old: Mapping[str, Any],
    *,
    field: str = "settings",
) -> dict[str, Any]:
    """An instance's settings for ``function``, to store: declared names only, of their
    declared type, required ones present; secrets not sent (or ``[redacted]``) kept from
    ``old``."""
    merged = keep_secrets(check_settings(new, field), old, function.secrets)
    declared = {s.name: s for s in function.settings}
    for key, value in merged.items():
        setting = declared.get(key)
        if setting is None:
            raise InvalidError(f"{key!r} is not a setting of function {function.name!r}", field)
        if value is None:
            continue
        if not _fits(setting.type, value):
            raise InvalidError(f"{key}: must be {_TYPE_WORDS[setting.type]}", f"{field}.{key}")
    for setting in function.settings:
        if setting.required and merged.get(setting.name) in (None, "", [], {}):
            if setting.secret:
                message = f"{setting.name} is a secret and must be given (it is never exported)"
            else:
                message = f"{setting.name} is required"
            raise InvalidError(message, f"{field}.{setting.name}")
    return merged


_TYPE_WORDS: Final = {
    "string": "a string",
    "boolean": "true or false",
    "array": "a list of strings",
    "map": "an object of strings",
}


def _fits(type_: str, value: Any) -> bool:
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "array":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _kind(kind: object) -> Kind:
    if kind not in KINDS:
        raise InvalidError(f"must be one of {', '.join(KINDS)}", "kind")
    return kind


def _language(language: object) -> Language:
    if language not in LANGUAGES:
        raise InvalidError(f"must be one of {', '.join(LANGUAGES)}", "language")
    return language


def check_function_name(name: object, kind: str) -> str:
    check_name(name)
    assert isinstance(name, str)
    if kind == "insert" and len(name) > MAX_INSERT_NAME:
        raise InvalidError(
            f"an insert function's name must be at most {MAX_INSERT_NAME} characters", "name"
        )
    if kind == "destination" and len(name) > MAX_DESTINATION_NAME:
        raise InvalidError(
            f"a destination function's name must be at most {MAX_DESTINATION_NAME} characters",
            "name",
        )
    return name


def check_description(description: object) -> str:
    # PostgreSQL's text holds no NUL.
    if not isinstance(description, str) or not is_unicode(description) or "\x00" in description:
        raise InvalidError("must be text", "description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidError(f"must be at most {MAX_DESCRIPTION} characters", "description")
    return description


def _latest_versions(conn: Connection, function_ids: Iterable[str]) -> dict[str, int]:
    ids = list(function_ids)
    if not ids:
        return {}
    v = schema.function_versions
    rows = conn.execute(
        sa.select(v.c.function_id, sa.func.max(v.c.version))
        .where(v.c.function_id.in_(ids))
        .group_by(v.c.function_id)
    )
    return {row[0]: int(row[1]) for row in rows}


def _version(conn: Connection, function_id: str, version: object) -> FunctionVersion:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise InvalidError(f"must be a whole number from 1 to {MAX_VERSION}", "version")
    v = schema.function_versions
    row = conn.execute(
        sa.select(v).where(v.c.function_id == function_id, v.c.version == version)
    ).first()
    if row is None:
        raise NotFoundError(f"the function has no version {version}", "version")
    return FunctionVersion(row.function_id, row.version, row.code, row.created_at)


def _require_destination(conn: Connection, workspace: WorkspaceStore, id_or_name: str) -> Row[Any]:
    d = schema.destinations
    row = conn.execute(sa.select(d).where(d.c.id == id_or_name)).first()
    if row is None:
        row = conn.execute(
            sa.select(d).where(
                d.c.workspace_id == workspace.workspace_id(conn), d.c.name == id_or_name
            )
        ).first()
    if row is None:
        raise NotFoundError(f"no destination has the id or name {id_or_name!r}", "destination")
    return row


def _info(row: Row[Any], latest: int) -> FunctionInfo:
    return FunctionInfo(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        kind=row.kind,
        language=row.language,
        description=row.description or "",
        settings=tuple(_stored_declarations(row.settings)),
        latest_version=latest,
        deployed_version=row.deployed_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _stored_declarations(stored: Any) -> list[SettingDeclaration]:
    found = []
    for raw in stored if isinstance(stored, list) else []:
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            found.append(
                SettingDeclaration(
                    name=raw["name"],
                    label=str(raw.get("label", raw["name"])),
                    type=str(raw.get("type", "string")),
                    description=str(raw.get("description", "")),
                    required=bool(raw.get("required", False)),
                    secret=bool(raw.get("secret", False)),
                )
            )
    return found


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_VERSION",
    "REDACTED",
    "Attached",
    "FunctionInfo",
    "FunctionLogs",
    "FunctionStore",
    "FunctionVersion",
    "LogEntry",
    "SettingDeclaration",
    "check_code_text",
    "check_declarations",
    "check_description",
    "check_function_name",
    "check_instance_settings",
    "function_name_of_type",
]
