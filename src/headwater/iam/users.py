"""Team members (§20.1): an email (one account per address), a name and an argon2id password
hash. The password itself is never stored, logged or shown after it was set.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, check_name, new_id

MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024
MAX_EMAIL: Final = 320
GENERATED_PASSWORD_BYTES: Final = 18  # 24 URL-safe characters
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str
    name: str
    pii_access: bool
    created_at: int
    has_password: bool


def check_email(email: object, field: str = "email") -> str:
    """The address as stored: lowercased (one account per address, whatever its case)."""
    if not isinstance(email, str) or not _EMAIL.fullmatch(email) or len(email) > MAX_EMAIL:
        raise InvalidError("must be an email address", field)
    try:
        email.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidError("must be an email address", field) from exc
    return email.lower()


def check_password(password: object, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidError(f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field)
    return password


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def is_id(reference: str) -> bool:
    """Whether ``reference`` can be one of our ids (and so can be looked up safely)."""
    return reference.isascii() and reference.isalnum() and len(reference) <= 40


class UserStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._workspace = workspace

    def create(self, email: object, name: object = None, password: str | None = None) -> UserInfo:
        """Add a member; ``password`` None leaves it without one (it cannot sign in with a
        password until one is set)."""
        address = check_email(email)
        shown = check_name(name if name is not None else address.split("@")[0], "name")
        hashed = _hasher.hash(check_password(password)) if password is not None else None
        u = schema.iam_users
        with self._workspace.writing() as conn:
            if conn.execute(sa.select(u.c.id).where(u.c.email == address)).first() is not None:
                raise ConflictError(f"a user with the email {address} exists already", "email")
            user_id = new_id()
            now = self._workspace.now()
            conn.execute(
                u.insert().values(
                    id=user_id,
                    email=address,
                    name=shown,
                    password_hash=hashed,
                    pii_access=False,
                    created_at=now,
                )
            )
        return UserInfo(user_id, address, shown, False, now, hashed is not None)

    def list(self) -> list[UserInfo]:
        u = schema.iam_users
        with self._workspace.reading() as conn:
            return [_info(r) for r in conn.execute(sa.select(u).order_by(u.c.email))]

    def get(self, user_id: str) -> UserInfo | None:
        if not is_id(user_id):
            return None
        u = schema.iam_users
        with self._workspace.reading() as conn:
            row = conn.execute(sa.select(u).where(u.c.id == user_id)).first()
        return _info(row) if row is not None else None

    def require(self, user_id: str) -> UserInfo:
        user = self.get(user_id)
        if user is None:
            raise NotFoundError(f"no user has the id {user_id!r}")
        return user

    def delete(self, user_id: str) -> None:
        """Remove a member, its group memberships and its permissions."""
        u, p = schema.iam_users, schema.iam_permissions
        m = schema.iam_group_members
        if not is_id(user_id):
            raise NotFoundError(f"no user has the id {user_id!r}")
        with self._workspace.writing() as conn:
            if conn.execute(sa.select(u.c.id).where(u.c.id == user_id)).first() is None:
                raise NotFoundError(f"no user has the id {user_id!r}")
            conn.execute(m.delete().where(m.c.user_id == user_id))
            conn.execute(
                p.delete().where(p.c.principal_kind == "user", p.c.principal_id == user_id)
            )
            conn.execute(u.delete().where(u.c.id == user_id))

    def set_password(self, user_id: str, password: str) -> None:
        u = schema.iam_users
        hashed = _hasher.hash(check_password(password))
        with self._workspace.writing() as conn:
            done = conn.execute(u.update().where(u.c.id == user_id).values(password_hash=hashed))
            if done.rowcount == 0:
                raise NotFoundError(f"no user has the id {user_id!r}")

    def totp_secret(self, user_id: str) -> str | None:
        """The member's TOTP secret (base32) when two-factor authentication is on (§20.7)."""
        if not is_id(user_id):
            return None
        u = schema.iam_users
        with self._workspace.reading() as conn:
            found = conn.execute(sa.select(u.c.totp_secret).where(u.c.id == user_id)).first()
        return None if found is None or not found.totp_secret else str(found.totp_secret)

    def set_totp_secret(self, user_id: str, secret: str | None) -> None:
        """Turn two-factor authentication on with ``secret``, or off with None."""
        u = schema.iam_users
        with self._workspace.writing() as conn:
            done = conn.execute(u.update().where(u.c.id == user_id).values(totp_secret=secret))
            if done.rowcount == 0:
                raise NotFoundError(f"no user has the id {user_id!r}")

    def verify_password(self, email: str, password: str) -> UserInfo | None:
        """The user whose email and password these are, else None (for signing in)."""
        u = schema.iam_users
        with self._workspace.reading() as conn:
            row = conn.execute(sa.select(u).where(u.c.email == email.lower())).first()
        if row is None or row.password_hash is None:
            return None
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return _info(row)


def _info(row: sa.Row) -> UserInfo:  # type: ignore[type-arg]
    return UserInfo(
        row.id,
        row.email,
        row.name,
        bool(row.pii_access),
        int(row.created_at),
        row.password_hash is not None,
    )
