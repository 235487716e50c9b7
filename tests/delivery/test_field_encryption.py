"""HIPAA-style field encryption through the router and the delivery engine (§13, A-HIPAA-1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from headwater.privacy.encryption import BLOCK, FieldEncryption, decrypt_value, encrypt_value
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver


def received(receiver: Receiver, path: str) -> list[dict[str, object]]:
    return [r.json() for r in receiver.requests if r.path == path]


@pytest.fixture
def two(pipeline: Pipeline, receiver: Receiver) -> Pipeline:
    pipeline.add("d", settings={"url": f"{receiver.url}/d"})
    pipeline.add("other", settings={"url": f"{receiver.url}/other"})
    return pipeline


def test_a_hipaa_1_chosen_fields_reach_one_destination_encrypted(
    two: Pipeline, receiver: Receiver
) -> None:
    """A-HIPAA-1."""
    encryption = FieldEncryption(two.workspace)
    d = two.store.require("d")
    encryption.configure(d.id, fields=["email", "age"], enabled=True)
    private_key = encryption.generate_keys(d.id)
    stored = encryption.get(d.id)
    assert stored.public_key is not None and "PRIVATE" not in stored.public_key
    event = track(
        properties={"email": "peter@example.com", "age": 42, "plan": "pro", "Email": "x@y.z"},
        traits={"email": "t@example.com"},
        context={"traits": {"email": "c@example.com"}, "ip": "10.0.0.1"},
        userId="peter@example.com",
    )
    two.send(event)
    two.deliver()
    [plain] = received(receiver, "/other")
    assert plain["properties"] == event["properties"]
    assert plain["context"] == event["context"]
    [sent] = received(receiver, "/d")
    properties, traits, context = sent["properties"], sent["traits"], sent["context"]
    assert isinstance(properties, dict) and isinstance(traits, dict)
    assert isinstance(context, dict)
    assert properties["email"] != "peter@example.com"
    assert decrypt_value(properties["email"], private_key) == "peter@example.com"
    assert isinstance(properties["age"], str)  # an integer becomes a string
    assert decrypt_value(properties["age"], private_key) == "42"
    assert decrypt_value(traits["email"], private_key) == "t@example.com"
    assert decrypt_value(context["traits"]["email"], private_key) == "c@example.com"
    # exact keys only; nothing outside context, traits and properties
    assert (properties["plan"], properties["Email"]) == ("pro", "x@y.z")
    assert context["ip"] == "10.0.0.1"
    assert sent["userId"] == "peter@example.com"


def test_regenerated_keys_replace_the_pair(two: Pipeline, receiver: Receiver) -> None:
    encryption = FieldEncryption(two.workspace)
    d = two.store.require("d")
    encryption.configure(d.id, fields=["email"], enabled=True)
    old = encryption.generate_keys(d.id)
    new = encryption.generate_keys(d.id)
    assert old != new
    two.send(track(properties={"email": "peter@example.com"}))
    two.deliver()
    [sent] = received(receiver, "/d")
    properties = sent["properties"]
    assert isinstance(properties, dict)
    assert decrypt_value(properties["email"], new) == "peter@example.com"
    with pytest.raises(ValueError):
        decrypt_value(properties["email"], old)


def test_disabled_encryption_sends_plaintext(two: Pipeline, receiver: Receiver) -> None:
    encryption = FieldEncryption(two.workspace)
    d = two.store.require("d")
    encryption.configure(d.id, fields=["email"], enabled=True)
    encryption.generate_keys(d.id)
    encryption.configure(d.id, enabled=False)
    two.send(track(properties={"email": "peter@example.com"}))
    two.deliver()
    [sent] = received(receiver, "/d")
    assert sent["properties"] == {"email": "peter@example.com"}


def test_long_values_go_in_blocks() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    text = "€" * 300  # 900 bytes of three-byte characters: blocks cut at 444, 888
    ciphertext = encrypt_value(text, private.public_key())
    assert ciphertext.count(".") == 2 and BLOCK == 446
    assert decrypt_value(ciphertext, pem) == text
    assert decrypt_value(encrypt_value({"a": [1, None]}, private.public_key()), pem) == (
        '{"a":[1,null]}'
    )


def test_a_deleted_destination_takes_its_encryption_with_it(two: Pipeline) -> None:
    encryption = FieldEncryption(two.workspace)
    d = two.store.require("d")
    encryption.configure(d.id, fields=["email"], enabled=True)
    two.store.delete("d")
    assert encryption.get(d.id).fields == ()
