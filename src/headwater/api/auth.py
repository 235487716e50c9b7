"""Admin token check for the REST API.

Only a SHA-256 digest of the admin token is kept (in ``app.state.admin_token_hash``), so the
token itself never sits in the database, a log or an export.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from headwater.api.errors import ApiError


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require_admin(request: Request) -> None:
    """FastAPI dependency: the request must carry ``Authorization: Bearer <admin token>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Send the admin token as 'Authorization: Bearer …'.")
    expected: str = request.app.state.admin_token_hash
    if not hmac.compare_digest(hash_token(token.strip()), expected):
        raise ApiError(401, "unauthorized", "The admin token is not valid.")
