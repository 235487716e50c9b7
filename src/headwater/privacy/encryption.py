"""HIPAA-style field encryption for one destination instance (spec/protocols-privacy-api.md §13).

An instance may have chosen fields encrypted before they leave: the fields are matched by key,
exactly (no fuzzy matching), anywhere inside ``context``, ``traits`` and ``properties``, and
each matched value becomes a string: RSAES-OAEP with SHA-256 (MGF1 SHA-256, no label) under the
instance's public key, base64 (standard alphabet, padded). A value that is not a string is
encrypted as its JSON text (``42`` → ``"42"``); ``null`` stays ``null``. A value longer than
one RSA block holds (446 bytes with the 4096-bit keys made here) is cut into blocks on UTF-8
boundaries, each encrypted alone, their base64 joined with ``.``.

"Generate keys" returns the private key once and stores only the public key; "regenerate"
replaces the pair (what was sent before needs the old key). Other instances get plaintext.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import UNSET, Unset, WorkspaceStore, is_unicode

KEY_BITS: Final = 4096
# OAEP with SHA-256 takes at most k - 2*hLen - 2 bytes of message per block.
BLOCK: Final = KEY_BITS // 8 - 2 * 32 - 2
SCOPES: Final = ("context", "traits", "properties")
MAX_FIELDS: Final = 100
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def oaep() -> padding.OAEP:
    """The padding a receiver decrypts with: OAEP, SHA-256 for both the hash and MGF1."""
    return _OAEP


@dataclass(frozen=True)
class EncryptionSettings:
    destination_id: str
    enabled: bool
    fields: tuple[str, ...]
    public_key: str | None  # PEM (SubjectPublicKeyInfo); None until keys are generated

    @cached_property
    def key(self) -> rsa.RSAPublicKey | None:
        if self.public_key is None:
            return None
        key = serialization.load_pem_public_key(self.public_key.encode())
        return key if isinstance(key, rsa.RSAPublicKey) else None

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.fields) and self.key is not None

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with the chosen fields encrypted (a copy: the event itself is shared with
        other instances); the event unchanged when none is present."""
        key = self.key
        if key is None or not self.enabled:
            return event
        fields = frozenset(self.fields)
        out: dict[str, Any] | None = None
        for scope in SCOPES:
            value = event.get(scope)
            if isinstance(value, dict):
                encrypted = _encrypt_in(value, fields, key)
                if encrypted is not value:
                    out = out if out is not None else dict(event)
                    out[scope] = encrypted
        return out if out is not None else event


def _encrypt_in(obj: dict[str, Any], fields: frozenset[str], key: rsa.RSAPublicKey) -> Any:
    out: dict[str, Any] | None = None
    for name, value in obj.items():
        if name in fields and value is not None:
            new: Any = encrypt_value(value, key)
        elif isinstance(value, dict):
            new = _encrypt_in(value, fields, key)
        elif isinstance(value, list):
            items = [_encrypt_in(v, fields, key) if isinstance(v, dict) else v for v in value]
            new = items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        else:
            continue
        if new is not value:
            out = out if out is not None else dict(obj)
            out[name] = new
    return out if out is not None else obj


def encrypt_value(value: Any, key: rsa.RSAPublicKey) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    data = text.encode("utf-8", "surrogatepass")
    return ".".join(
        base64.b64encode(key.encrypt(block, _OAEP)).decode("ascii") for block in _blocks(data)
    )


def _blocks(data: bytes) -> Iterable[bytes]:
    """``data`` in pieces of at most BLOCK bytes, never cutting a UTF-8 character."""
    start = 0
    while True:
        end = min(start + BLOCK, len(data))
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1
        yield data[start:end]
        if end >= len(data):
            return
        start = end


def decrypt_value(ciphertext: str, private_key_pem: str) -> str:
    """What a receiver holding the private key reads back (the tests' and the docs' recipe)."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return b"".join(
        key.decrypt(base64.b64decode(part), _OAEP) for part in ciphertext.split(".")
    ).decode("utf-8")


def new_key_pair() -> tuple[str, str]:
    """A fresh pair as PEM: (private key in PKCS#8, public key in SubjectPublicKeyInfo)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


def check_fields(value: object, field: str = "fields") -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_FIELDS:
        raise InvalidError(f"must be a list of at most {MAX_FIELDS} field names", field)
    if not all(isinstance(f, str) and f and len(f) <= 255 and is_unicode(f) for f in value):
        raise InvalidError("each field must be a non-empty key name", field)
    return tuple(sorted(set(value)))


class FieldEncryption:
    """Each destination instance's encryption settings, on the workspace store's transactions."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace

    def get(self, destination_id: str) -> EncryptionSettings:
        t = schema.destination_encryption
        with self._ws.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.destination_id == destination_id)).first()
        if row is None:
            return EncryptionSettings(destination_id, False, (), None)
        return EncryptionSettings(
            destination_id, bool(row.enabled), tuple(row.fields or ()), row.public_key
        )

    def configure(
        self,
        destination_id: str,
        *,
        fields: Iterable[str] | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> EncryptionSettings:
        """Choose the fields or turn encryption on or off (forward-looking: nothing sent before
        is touched)."""
        current = self.get(destination_id)
        chosen = current.fields if isinstance(fields, Unset) else check_fields(list(fields))
        if not isinstance(enabled, Unset) and not isinstance(enabled, bool):
            raise InvalidError("must be true or false", "enabled")
        on = current.enabled if isinstance(enabled, Unset) else enabled
        self._write(destination_id, on, chosen, current.public_key)
        return self.get(destination_id)

    def generate_keys(self, destination_id: str) -> str:
        """A new key pair: the public key is kept, the private key returned (once)."""
        current = self.get(destination_id)
        private_pem, public_pem = new_key_pair()
        self._write(destination_id, current.enabled, current.fields, public_pem)
        return private_pem

    def forget(self, destination_id: str) -> None:
        t = schema.destination_encryption
        with self._ws.writing() as conn:
            conn.execute(t.delete().where(t.c.destination_id == destination_id))
            self._ws.bump(conn)

    def _write(
        self, destination_id: str, enabled: bool, fields: tuple[str, ...], public_key: str | None
    ) -> None:
        t = schema.destination_encryption
        values = {
            "enabled": enabled,
            "fields": list(fields),
            "public_key": public_key,
            "updated_at": self._ws.now(),
        }
        with self._ws.writing() as conn:
            updated = conn.execute(
                t.update().where(t.c.destination_id == destination_id).values(**values)
            ).rowcount
            if not updated:
                conn.execute(t.insert().values(destination_id=destination_id, **values))
            self._ws.bump(conn)


def load_active(engine: Engine) -> dict[str, EncryptionSettings]:
    """Every instance whose encryption is on, with fields and a key, by destination id."""
    t = schema.destination_encryption
    workspace = WorkspaceStore(engine)
    with workspace.reading() as conn:
        rows = list(conn.execute(sa.select(t).where(t.c.enabled.is_(True))))
    found = {
        r.destination_id: EncryptionSettings(
            r.destination_id, True, tuple(r.fields or ()), r.public_key
        )
        for r in rows
    }
    return {k: v for k, v in found.items() if v.active}


class EncryptionCache:
    """The instances' encryption settings, rebuilt when the configuration version moves."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot: ConfigSnapshot[dict[str, EncryptionSettings]] = ConfigSnapshot(
            WorkspaceStore(engine).config_version, lambda: load_active(engine), {}, clock=clock
        )

    def current(self) -> Mapping[str, EncryptionSettings]:
        return self._snapshot.get()
