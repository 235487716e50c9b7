"""Admin token check for the REST API: the digest of the bearer token against the stored one
(``app.state.admin_token_hash``, see store/admin_token.py)."""

from __future__ import annotations

import hmac

from fastapi import Request

from headwater.api.errors import ApiError
from headwater.store.admin_token import hash_token

# Set by the web app's in-process calls (web/inprocess.py); an HTTP client cannot set scope keys.
PRINCIPAL_SCOPE_KEY = "headwater.principal"


def require_admin(request: Request) -> None:
    """FastAPI dependency: the request must carry ``Authorization: Bearer <admin token>``, or
    come from the web app in this process as a signed-in person (web/inprocess.py)."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is not None:
        request.state.principal = principal
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Send the admin token as 'Authorization: Bearer …'.")
    expected: str = request.app.state.admin_token_hash
    if not hmac.compare_digest(hash_token(token.strip()), expected):
        raise ApiError(401, "unauthorized", "The admin token is not valid.")


def pii_access(request: Request) -> bool:
    """Whether the reader may see Red and Yellow values unmasked (§9.8). The admin token has
    PII Access; roles (a later issue) set ``request.state.pii_access`` for their members.
    Nothing the request sends (a query parameter, a header) can grant it."""
    granted = getattr(request.state, "pii_access", True)
    return granted is True
