"""A workspace with a space whose events go through the identity stage, for the Unify and
Engage page tests: what a profile page shows was resolved as the server resolves it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.pipeline.consumer import Consumer
from headwater.store.admin_token import hash_token
from headwater.store.archive import Archive
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.spaces import SpaceStore
from headwater.unify.stage import GROUP, IdentityStage
from tests.support.clock import Clock

TOKEN = "test-admin-token"


class World:
    def __init__(self, engine: Engine, tmp: Path, clock: Clock) -> None:
        self.engine, self.clock = engine, clock
        self.workspace = WorkspaceStore(engine, clock=clock)
        self.workspace_id = self.workspace.ensure_workspace("acme").id
        self.source_id = self.workspace.create_source("web").id
        self.space = SpaceStore(self.workspace).create("main", sources=["web"])
        self.log = EventLog(engine, clock=clock)
        self.log.register(GROUP)
        (tmp / "archive").mkdir(exist_ok=True)
        stage = IdentityStage(engine, Archive(tmp / "archive"), clock=clock)
        self.consumer = Consumer(self.log, GROUP, stage, owner="w1", exclusive=True, lease_ttl=1e9)
        self.sent = 0
        self.api: FastAPI = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)

    def send(self, **fields: Any) -> None:
        """One message from the source ``web``, resolved before this returns."""
        self.sent += 1
        at = format_timestamp(datetime.fromtimestamp(self.clock.now, UTC))
        message = {"messageId": f"m-{self.sent}", "timestamp": at, "receivedAt": at, **fields}
        message.setdefault("context", {})
        self.log.append([encode_record(self.workspace_id, self.source_id, at, [message])])
        for _ in range(100):
            if self.consumer.run_once() == 0:
                return
        raise AssertionError("the identity stage did not catch up")

    def token(self, role_id: str, *, pii_access: bool = False) -> str:
        """An API token with one role over the workspace."""
        with TestClient(self.api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
            permission = {"roleId": role_id, "resources": [{"type": "WORKSPACE"}]}
            body = {"description": role_id, "permissions": [permission], "piiAccess": pii_access}
            made = rest.post("/api/v1/tokens", json=body)
            assert made.status_code == 201, made.text
            token: str = made.json()["data"]["token"]["token"]
            return token
