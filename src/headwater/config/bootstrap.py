"""What happens to the state database before a server starts.

Migrate, apply the config file if one is given, create a workspace with one source on the very
first start without a config, give a workspace without warehouses the embedded DuckDB one
(unless the config file lists its warehouses), and settle the admin token:
``HEADWATER_ADMIN_TOKEN`` when set, else the token generated (and printed once) on first
start, of which only a digest is kept. The first start also makes the Workspace Owner, a
member who signs in to the web app with an email and a password (printed once).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from headwater.audit.trail import Actor, AuditEvent, AuditTrail
from headwater.config.apply import apply, plan
from headwater.config.audit_view import recorded
from headwater.config.model import ConfigFile
from headwater.config.settings import ServerSettings
from headwater.errors import InputError
from headwater.iam.access import Grant
from headwater.iam.permissions import PermissionStore
from headwater.iam.roles import WORKSPACE_OWNER
from headwater.iam.users import UserStore, generate_password
from headwater.store.admin_token import META_KEY as ADMIN_TOKEN_META
from headwater.store.admin_token import hash_token
from headwater.store.database import database_url, open_engine, readable_by_others
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.connect import duckdb_path
from headwater.warehouse.store import WarehouseStore

ADMIN_TOKEN_ENV = "HEADWATER_ADMIN_TOKEN"
OWNER_EMAIL_ENV = "HEADWATER_OWNER_EMAIL"
DEFAULT_OWNER_EMAIL = "owner@headwater.local"
_OWNER_META = "first_owner"
DEFAULT_WAREHOUSE = "default"


@dataclass
class Bootstrap:
    admin_token_hash: str
    notes: list[str] = field(default_factory=list)


def bootstrap(settings: ServerSettings, config: ConfigFile | None) -> Bootstrap:
    exposed = None if settings.database else readable_by_others(settings.data_dir)
    engine = open_engine(database_url(settings.data_dir, settings.database))
    try:
        migrate(engine)
        store = WorkspaceStore(engine)
        notes: list[str] = []
        if config is not None:
            with recorded(store, Actor("cli", "headwater serve --config")), store.atomic():
                # A refused file leaves nothing behind, and nothing in the audit trail.
                if config.warehouses is None and store.workspace() is None:
                    # The embedded warehouse exists before the file is applied, so a space's
                    # `profiles_sync: {warehouse: default}` can name it on the first start.
                    store.ensure_workspace(config.workspace)
                    note = _default_warehouse(store, settings)
                    if note:
                        notes.append(note)
                changes = plan(store, config)
                notes.append(changes.render())
                notes += apply(store, changes)
        elif store.workspace() is None:
            store.ensure_workspace("default")
            source = store.create_source("default")
            notes.append(
                f"Created workspace 'default' with source 'default'.\n"
                f"  Write key: {source.write_keys[0]}"
            )
        if config is None or config.warehouses is None:
            note = _default_warehouse(store, settings)
            if note:
                notes.append(note)
        token_hash, note = _admin_token_hash(store)
        if note:
            notes.append(note)
        note = _first_owner(store)
        if note:
            notes.append(note)
        if exposed:
            notes.append(exposed)
        return Bootstrap(token_hash, notes)
    finally:
        engine.dispose()


def admin_token_hash(settings: ServerSettings) -> str:
    """The admin token's digest for a process started after ``bootstrap`` ran elsewhere (a
    role process of ``serve``): it reads the token as ``bootstrap`` does but never makes one,
    and prints nothing, so the notes appear once."""
    engine = open_engine(database_url(settings.data_dir, settings.database))
    try:
        token = os.environ.get(ADMIN_TOKEN_ENV)
        stored = hash_token(token) if token else WorkspaceStore(engine).get_meta(ADMIN_TOKEN_META)
    finally:
        engine.dispose()
    if not stored:
        raise RuntimeError(f"no admin token: set {ADMIN_TOKEN_ENV}, or start `headwater serve`")
    return stored


def _default_warehouse(store: WorkspaceStore, settings: ServerSettings) -> str | None:
    """With no warehouse configured, events load into DuckDB in the data directory."""
    warehouses = WarehouseStore(store)
    if warehouses.list() or store.workspace() is None:
        return None
    created = warehouses.create(DEFAULT_WAREHOUSE, "duckdb")
    return (
        f"Loading events into the DuckDB warehouse '{created.name}' "
        f"({duckdb_path(created, settings.data_dir)}); query it with "
        f'`headwater warehouse query {created.name} "SELECT …"`.'
    )


def _admin_token_hash(store: WorkspaceStore) -> tuple[str, str | None]:
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token:
        return hash_token(token), None
    stored = store.get_meta(ADMIN_TOKEN_META)
    if stored:
        return stored, None
    token = secrets.token_urlsafe(32)
    digest = hash_token(token)
    store.set_meta(ADMIN_TOKEN_META, digest)
    return digest, (f"Admin token (shown once; set {ADMIN_TOKEN_ENV} to choose your own): {token}")


def _first_owner(store: WorkspaceStore) -> str | None:
    """Once per state database: a Workspace Owner to sign in as, unless members exist already
    (a database from before members existed gets one too; removing it later makes no other)."""
    if store.get_meta(_OWNER_META) or UserStore(store).list():
        return None
    email = os.environ.get(OWNER_EMAIL_ENV) or DEFAULT_OWNER_EMAIL
    password = generate_password()
    try:
        with store.atomic():
            user = UserStore(store).create(email, "Owner", password)
            PermissionStore(store).set("user", user.id, [Grant(WORKSPACE_OWNER)])
            store.set_meta(_OWNER_META, user.id)
    except InputError as exc:
        raise RuntimeError(
            f"{OWNER_EMAIL_ENV}: {exc}; set it to the owner's email address"
        ) from None
    AuditTrail(store.engine).record(
        Actor("cli", "headwater serve"), [AuditEvent("User Created", "user", user.id, user.email)]
    )
    return (
        f"Workspace Owner: {user.email}, password (shown once; set {OWNER_EMAIL_ENV} before the "
        f"first start to choose the email): {password}"
    )
