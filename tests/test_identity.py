"""Node identity keys: ids derived from keys, signatures, the transcripts, the key file."""

from __future__ import annotations

import hashlib
import os
import random
import stat

import pytest

from raftchat.limits import MAX_NODE_ID_CHARS, MIN_PEER_ID_CHARS, PEER_ID_PATTERN, node_id_problem
from raftchat.net.identity import (
    NODE_ID_DOMAIN,
    NODE_ID_HEX_DIGITS,
    IdentityError,
    NodeIdentity,
    create_key_file,
    derive_node_id,
    is_id_of,
    link_proof_message,
    link_transcript,
    load_key_file,
    signaling_hello_message,
    verify,
)

SEED = bytes(range(32))


def test_node_id_is_128_bits_of_a_domain_separated_hash_of_the_public_key():
    identity = NodeIdentity.from_seed(SEED)
    expected = hashlib.sha256(NODE_ID_DOMAIN + identity.public_key).hexdigest()[:32]
    assert identity.node_id == derive_node_id(identity.public_key) == expected
    assert NODE_ID_HEX_DIGITS * 4 == 128
    assert is_id_of(identity.node_id, identity.public_key)
    assert not is_id_of(identity.node_id, NodeIdentity.generate().public_key)
    assert not is_id_of(identity.node_id, identity.public_key[:-1])
    # Without the domain prefix the digest would be another one.
    assert hashlib.sha256(identity.public_key).hexdigest()[:32] != identity.node_id


def test_derived_ids_are_valid_node_and_peer_ids():
    for _ in range(20):
        node_id = NodeIdentity.generate().node_id
        assert node_id_problem(node_id) is None
        assert PEER_ID_PATTERN.fullmatch(node_id)
        assert MIN_PEER_ID_CHARS <= len(node_id) <= MAX_NODE_ID_CHARS


def test_a_witness_id_is_never_a_derived_id():
    witness = f"witness-{os.urandom(8).hex()}"
    assert not any(is_id_of(witness, NodeIdentity.generate().public_key) for _ in range(5))
    assert len(witness) != NODE_ID_HEX_DIGITS or "-" in witness


def test_signatures_verify_only_for_their_key_and_message():
    alice, mallory = NodeIdentity.generate(), NodeIdentity.generate()
    signature = alice.sign(b"message")
    assert verify(alice.public_key, b"message", signature)
    assert not verify(alice.public_key, b"messagE", signature)
    assert not verify(mallory.public_key, b"message", signature)
    assert not verify(alice.public_key, b"message", mallory.sign(b"message"))
    # Malformed input is never an exception.
    assert not verify(alice.public_key[:31], b"message", signature)
    assert not verify(alice.public_key, b"message", signature[:63])
    assert not verify(b"\xff" * 32, b"message", signature)


def test_repr_does_not_show_the_private_key():
    identity = NodeIdentity.from_seed(SEED)
    assert repr(identity) == f"NodeIdentity({identity.node_id})"
    assert SEED.hex() not in repr(identity)


LINK_FIELDS = {
    "channel": ("room", "other-room"),
    "id_a": ("a" * 32, "c" * 32),
    "id_b": ("b" * 32, "d" * 32),
    "mode": (0, 1),
    "nonce_a": (b"\x01" * 16, b"\x02" * 16),
    "nonce_b": (b"\x03" * 16, b"\x04" * 16),
    "pake_a": (b"", b"\x05" * 33),
    "pake_b": (b"", b"\x06" * 33),
}


@pytest.mark.parametrize("field", sorted(LINK_FIELDS))
def test_changing_any_link_transcript_field_breaks_the_signature(field):
    identity = NodeIdentity.generate()
    fields = {name: values[0] for name, values in LINK_FIELDS.items()}
    fingerprints = (b"\x0a" * 32, b"\x0b" * 32)
    signature = identity.sign(link_proof_message(True, link_transcript(**fields), *fingerprints))
    message = link_proof_message(True, link_transcript(**fields), *fingerprints)
    assert verify(identity.public_key, message, signature)
    changed = {**fields, field: LINK_FIELDS[field][1]}
    message = link_proof_message(True, link_transcript(**changed), *fingerprints)
    assert not verify(identity.public_key, message, signature)


def test_the_side_and_both_fingerprints_are_bound_into_a_link_proof():
    identity = NodeIdentity.generate()
    transcript = link_transcript(
        channel="room", id_a="a" * 32, id_b="b" * 32, mode=0, nonce_a=b"1" * 16, nonce_b=b"2" * 16
    )
    fp_a, fp_b, other = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
    signature = identity.sign(link_proof_message(True, transcript, fp_a, fp_b))
    for message in (
        link_proof_message(False, transcript, fp_a, fp_b),  # reflected to the other side
        link_proof_message(True, transcript, other, fp_b),
        link_proof_message(True, transcript, fp_a, other),
        link_proof_message(True, transcript, fp_b, fp_a),
    ):
        assert not verify(identity.public_key, message, signature)


def test_fields_cannot_shift_into_each_other():
    # Length prefixes: moving a byte from one field to the next changes the message.
    one = link_transcript(
        channel="ab", id_a="c" * 32, id_b="d" * 32, mode=0, nonce_a=b"", nonce_b=b""
    )
    two = link_transcript(
        channel="a", id_a="b" + "c" * 31, id_b="c" + "d" * 31, mode=0, nonce_a=b"", nonce_b=b""
    )
    assert one != two
    assert signaling_hello_message(b"n" * 16, "ab", "c" * 32) != signaling_hello_message(
        b"n" * 16, "a", "bc" + "c" * 31
    )


@pytest.mark.parametrize("field", ["nonce", "channel", "peer_id"])
def test_changing_any_signaling_hello_field_breaks_the_signature(field):
    identity = NodeIdentity.generate()
    fields = {"nonce": b"\x01" * 16, "channel": "room", "peer_id": identity.node_id}
    signature = identity.sign(signaling_hello_message(**fields))
    assert verify(identity.public_key, signaling_hello_message(**fields), signature)
    changed = {
        **fields,
        field: {"nonce": b"\x02" * 16, "channel": "hall", "peer_id": "x" * 32}[field],
    }
    assert not verify(identity.public_key, signaling_hello_message(**changed), signature)


def test_random_tampering_of_a_signature_is_refused():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    identity = NodeIdentity.generate()
    message = signaling_hello_message(b"\x01" * 16, "room", identity.node_id)
    signature = identity.sign(message)
    for _ in range(200):
        tampered = bytearray(signature)
        tampered[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not verify(identity.public_key, message, bytes(tampered))


# --- the key file -----------------------------------------------------------------------


def test_key_file_is_private_and_reloads_to_the_same_id(tmp_path):
    old_umask = os.umask(0o000)  # even with a permissive umask
    try:
        created = create_key_file(tmp_path / "node.key")
    finally:
        os.umask(old_umask)
    path = tmp_path / "node.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_key_file(path)
    assert loaded.node_id == created.node_id and loaded.public_key == created.public_key
    assert verify(loaded.public_key, b"m", created.sign(b"m"))
    assert not (tmp_path / "node.key.tmp").exists()


def test_an_existing_key_file_is_never_replaced(tmp_path):
    path = tmp_path / "node.key"
    first = create_key_file(path)
    with pytest.raises(IdentityError, match="exists already"):
        create_key_file(path)
    assert load_key_file(path).node_id == first.node_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path, mode):
    path = tmp_path / "node.key"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(IdentityError, match=f"mode {mode:o}.*chmod 600 {path}"):
        load_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # refused, not changed


def test_missing_damaged_and_foreign_key_files_are_refused(tmp_path):
    with pytest.raises(IdentityError, match="is missing"):
        load_key_file(tmp_path / "none.key")
    damaged = tmp_path / "damaged.key"
    damaged.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    damaged.chmod(0o600)
    with pytest.raises(IdentityError, match="damaged or not a raftchat key"):
        load_key_file(damaged)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    foreign = tmp_path / "ecdsa.key"
    foreign.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    foreign.chmod(0o600)
    with pytest.raises(IdentityError, match="no Ed25519 private key"):
        load_key_file(foreign)
    directory = tmp_path / "dir.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(IdentityError):
        load_key_file(directory)


def test_a_symlinked_key_file_is_refused(tmp_path):
    real = tmp_path / "real.key"
    create_key_file(real)
    link = tmp_path / "node.key"
    link.symlink_to(real)
    with pytest.raises(IdentityError, match="cannot read"):
        load_key_file(link)
    with pytest.raises(IdentityError, match="exists already"):
        create_key_file(link)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_key_file_is_refused(tmp_path):
    path = tmp_path / "node.key"
    create_key_file(path)
    path.chmod(0o000)
    try:
        with pytest.raises(IdentityError, match="cannot read the identity key file"):
            load_key_file(path)
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_key_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "node.key"
    create_key_file(path)
    os.chown(path, 65534, -1)
    with pytest.raises(IdentityError, match="belongs to another user"):
        load_key_file(path)
