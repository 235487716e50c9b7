"""The workspace as the audit trail compares it: the export's document and the ids it names.

The REST API records its changes with ``workspace_view`` (api/audit.py); ``headwater apply``
and ``serve --config`` record theirs with ``recorded``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from headwater.audit.changes import View, changes
from headwater.audit.trail import Actor, AuditTrail
from headwater.config.apply import export_document
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import registry
from headwater.destinations.store import DestinationStore
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import FunctionStore
from headwater.protocols.plans import PlanStore
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.store import WarehouseStore


def workspace_view(store: WorkspaceStore) -> View:
    if store.workspace() is None:  # before the first start: nothing, not the export's default
        return View({})
    with registry.functions_while(FunctionCatalog(FunctionStore(store), FunctionLogs(store))):
        return _view(store)


def _view(store: WorkspaceStore) -> View:
    ids: dict[tuple[str, str], str] = {}
    ids.update((("source", s.name), s.id) for s in store.all_sources())
    ids.update((("destination", d.name), d.id) for d in DestinationStore(store).list())
    ids.update((("warehouse", w.name), w.id) for w in WarehouseStore(store).list())
    ids.update((("tracking_plan", p.name), p.id) for p in PlanStore(store).list_plans())
    ids.update((("function", f.name), f.id) for f in FunctionStore(store).list())
    ids.update((("space", s.name), s.id) for s in SpaceStore(store).list())
    # As JSON holds it: the export's YAML-only types (code blocks) become plain strings.
    document = json.loads(json.dumps(export_document(store), default=str))
    return View(document, ids)


@contextmanager
def recorded(store: WorkspaceStore, actor: Actor) -> Iterator[None]:
    """Record what the block changed, once it finished without an error. Call it outside any
    ``store.atomic()`` block: the trail commits in its own transaction."""
    before = workspace_view(store)
    yield
    events = changes(before, workspace_view(store))
    AuditTrail(store.engine, clock=store.now).record(actor, events)
