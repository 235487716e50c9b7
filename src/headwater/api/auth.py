"""Who may call the REST API, and what they may do (§15.2, §20).

Every route depends on ``require_access``: it authenticates the bearer token — the admin token
(compared by digest with ``app.state.admin_token_hash``, see store/admin_token.py) is a
Workspace Owner with PII Access; an API token (``hwp_…``) has its grants — and answers 401
without one. It then asks the principal about the route's area and resource (api/areas.py) and
answers 403 when the principal may not, saying nothing about the resource. The principal is
left in ``request.state.principal`` (``kind``, ``id``, ``name``, ``email``: the Audit Trail's
actor) and its PII Access in ``request.state.pii_access``. List routes show only what the
principal may read (``readable_ids``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.routing import Route

from headwater.api.areas import route_access
from headwater.api.errors import ApiError
from headwater.iam.access import PRINCIPAL_SCOPE_KEY, Principal, Resource
from headwater.iam.principals import ADMIN, token_principal
from headwater.iam.resources import destination_source, find_resource, readable
from headwater.iam.roles import Area, ResourceType
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore

FORBIDDEN = "This token may not do this; ask a Workspace Owner for access."


def require_access(request: Request) -> Principal:
    """FastAPI dependency: an authenticated principal allowed on this route."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = authenticate(request)
    authorize(request, principal)
    request.state.principal = principal
    request.state.pii_access = principal.pii_access
    return principal


require_admin = require_access  # the name routers used before roles existed


def authenticate(request: Request) -> Principal:
    """The principal the request's bearer token is, else 401. The web app's in-process calls
    carry the signed-in person in the ASGI scope instead (web/inprocess.py), which no HTTP
    client can set."""
    signed_in = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(signed_in, Principal):
        return signed_in
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Send the admin token as 'Authorization: Bearer …'.")
    expected: str = request.app.state.admin_token_hash
    if hmac.compare_digest(hash_token(token), expected):
        return ADMIN
    principal = token_principal(_workspace(request), token)
    if principal is None:
        raise ApiError(401, "unauthorized", "The admin token is not valid.")
    return principal


def authorize(request: Request, principal: Principal) -> None:
    """403 unless the principal may use the route; owners may use every route."""
    if principal.owner:
        return
    route = request.scope.get("route")
    template = route.path if isinstance(route, Route) else request.url.path
    needs = route_access(request.method, template)
    if needs is None:  # an unmapped route: owners only (the tests list any)
        raise ApiError(403, "forbidden", FORBIDDEN)
    resource: Resource | None = None
    reference = request.path_params.get(needs.parameter)
    if needs.resource_type is not None and isinstance(reference, str):
        engine = request.app.state.engine
        if needs.via_destination:
            resource = destination_source(engine, reference)
        else:
            resource = find_resource(engine, needs.resource_type, reference)
    if not principal.allows(needs.area, needs.write, resource):
        raise ApiError(403, "forbidden", FORBIDDEN)


def pii_access(request: Request) -> bool:
    """Whether the reader may see Red and Yellow values unmasked (§9.8): the admin token and
    owners have PII Access; other principals as granted (``require_access`` sets it). Nothing
    the request sends (a query parameter, a header) can grant it."""
    granted = getattr(request.state, "pii_access", True)
    return granted is True


def _workspace(request: Request) -> WorkspaceStore:
    store: WorkspaceStore | None = getattr(request.app.state, "workspace_store", None)
    return store if store is not None else WorkspaceStore(request.app.state.engine)


def readable_ids(area: Area, type_: ResourceType) -> Callable[[Request], frozenset[str] | None]:
    """FastAPI dependency: the ids of ``type_`` the caller may read (None: all), for a list
    route to show only those."""

    def ids(request: Request) -> frozenset[str] | None:
        return readable(request.app.state.engine, require_access(request), area, type_)

    return ids


ReadableSources = Annotated[frozenset[str] | None, Depends(readable_ids("sources", "SOURCE"))]
ReadableWarehouses = Annotated[
    frozenset[str] | None, Depends(readable_ids("warehouses", "WAREHOUSE"))
]
ReadableSpaces = Annotated[frozenset[str] | None, Depends(readable_ids("unify", "SPACE"))]
ReadableFunctions = Annotated[frozenset[str] | None, Depends(readable_ids("functions", "FUNCTION"))]
