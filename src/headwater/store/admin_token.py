"""The admin token, kept only as its SHA-256 digest.

The token itself never sits in the database, a log or an export: bootstrap stores the digest
in ``meta`` and the REST API compares digests.
"""

from __future__ import annotations

import hashlib

META_KEY = "admin_token_sha256"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
