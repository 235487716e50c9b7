"""Public API tokens (§15.2): ``hwp_`` and 40 random characters, a recognisable prefix so that
secret scanners can match it. Only the SHA-256 digest is stored; the plaintext is shown once,
when the token is created, and never again.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from headwater.errors import NotFoundError
from headwater.iam.users import is_id
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, check_name, new_id

PREFIX: Final = "hwp_"
SECRET_LENGTH: Final = 40
LAST_USED_RESOLUTION: Final = 60  # seconds: ``last_used_at`` is not rewritten more often
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class TokenInfo:
    id: str
    description: str
    pii_access: bool
    created_by: str
    created_at: int
    last_used_at: int | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_token(token: str) -> bool:
    return token.startswith(PREFIX) and len(token) == len(PREFIX) + SECRET_LENGTH


class TokenStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def create(
        self, description: object, *, created_by: str, pii_access: bool = False
    ) -> tuple[str, TokenInfo]:
        """A new token: its plaintext (shown once) and what is kept of it."""
        text = check_name(description, "description")
        plaintext = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
        token_id = new_id()
        now = self._workspace.now()
        with self._workspace.writing() as conn:
            conn.execute(
                schema.api_tokens.insert().values(
                    id=token_id,
                    description=text,
                    token_sha256=digest(plaintext),
                    pii_access=pii_access,
                    created_by=created_by,
                    created_at=now,
                    last_used_at=None,
                )
            )
        return plaintext, TokenInfo(token_id, text, pii_access, created_by, now, None)

    def list(self) -> list[TokenInfo]:
        t = schema.api_tokens
        with self._workspace.reading() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.created_at, t.c.id))
            return [_info(r) for r in rows]

    def delete(self, token_id: str) -> None:
        """Revoke a token now, and drop its permissions."""
        t, p = schema.api_tokens, schema.iam_permissions
        if not is_id(token_id):
            raise NotFoundError(f"no token has the id {token_id!r}")
        with self._workspace.writing() as conn:
            done = conn.execute(t.delete().where(t.c.id == token_id))
            if done.rowcount == 0:
                raise NotFoundError(f"no token has the id {token_id!r}")
            conn.execute(
                p.delete().where(p.c.principal_kind == "token", p.c.principal_id == token_id)
            )

    def get(self, token_id: str) -> TokenInfo | None:
        """The token with this id, while it is not revoked (a web session signed in with it)."""
        t = schema.api_tokens
        with self._workspace.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == token_id)).first()
        return None if row is None else _info(row)

    def authenticate(self, plaintext: str) -> TokenInfo | None:
        """The token this plaintext is, if it is one; notes when it was last used."""
        if not looks_like_token(plaintext):
            return None
        t = schema.api_tokens
        with self._workspace.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.token_sha256 == digest(plaintext))).first()
        if row is None:
            return None
        now = self._workspace.now()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            with self._workspace.writing() as conn:
                conn.execute(t.update().where(t.c.id == row.id).values(last_used_at=now))
        return _info(row)


def _info(row: sa.Row) -> TokenInfo:  # type: ignore[type-arg]
    return TokenInfo(
        row.id,
        row.description,
        bool(row.pii_access),
        row.created_by,
        int(row.created_at),
        None if row.last_used_at is None else int(row.last_used_at),
    )
