"""Node identity keys: every node holds an Ed25519 key pair, and its node id is derived
from the public key, so nobody can hold another node's id.

A node id is the first :data:`NODE_ID_HEX_DIGITS` (32) lower-case hex digits of::

    SHA-256(NODE_ID_DOMAIN + raw 32-byte Ed25519 public key)

that is 128 bits: finding a key for a given id (a second preimage) takes about 2^128
tries. The domain prefix keeps these digests apart from every other SHA-256 in raftchat.
Such an id satisfies ``raftchat.limits.PEER_ID_PATTERN`` (16 to 64 url-safe characters).

A node proves its id by signing with its private key. What it signs is built here, in
one place, for both places that check ids:

- the link handshake (``net/auth.py``): :func:`link_transcript` binds the protocol, the
  channel, both ids, a fresh nonce from each side, the SPAKE2 messages of a private
  channel and the handshake mode; :func:`link_proof_message` adds the side that signs and
  both DTLS certificate fingerprints as the signer sees them;
- the signaling server's challenge (``net/signaling/``):
  :func:`signaling_hello_message` binds the protocol, the server's nonce for this
  WebSocket, the channel and the id claimed.

Every field is length-prefixed, so no two different field lists give the same bytes.

The key file (:func:`create_key_file`, :func:`load_key_file`) is a PKCS#8 PEM file of
mode 0600, written atomically (a temporary file, fsync, rename, fsync of the folder); one
that other users could read, that belongs to another user, or that is not an Ed25519 key
is refused with :class:`IdentityError`, never replaced.

The cryptography is the ``cryptography`` package's Ed25519 (nothing hand-written).
Nothing here keeps state; file access is in the two key file functions only.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

NODE_ID_DOMAIN = b"raftchat node id v1\x00"
"""Prefix hashed before the public key to make a node id (domain separation)."""
NODE_ID_HEX_DIGITS = 32
"""Hex digits of a node id: 128 bits of the digest."""
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 16
"""Fresh randomness each side of a link handshake, and the server per WebSocket, adds."""

LINK_AUTH_PROTOCOL = b"raftchat-channel-auth-v2"
"""Names the link handshake in everything it derives or signs (``net/auth.py``)."""
SIGNALING_HELLO_PROTOCOL = b"raftchat-signaling-hello-v1"
"""Names the signaling server's id challenge in what a client signs."""

KEY_FILE_MODE = 0o600
_MAX_KEY_FILE_BYTES = 4096


class IdentityError(Exception):
    """A key file that cannot be used; the message names it and says what to do."""


def length_prefixed(*parts: bytes) -> bytes:
    """Each part preceded by its length (4 bytes, big-endian): an unambiguous encoding."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def derive_node_id(public_key: bytes) -> str:
    """The node id of a raw Ed25519 public key (see the module docstring)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes")
    return hashlib.sha256(NODE_ID_DOMAIN + public_key).hexdigest()[:NODE_ID_HEX_DIGITS]


def is_id_of(node_id: str, public_key: bytes) -> bool:
    """Whether ``node_id`` is the id derived from ``public_key``."""
    return len(public_key) == PUBLIC_KEY_BYTES and derive_node_id(public_key) == node_id


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the signature of ``message`` by ``public_key``.

    Any malformed input (wrong lengths, a point not on the curve) is simply False."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class NodeIdentity:
    """A node's key pair and the node id derived from it. The private key never leaves
    this object except through :meth:`private_pem` (to write the key file)."""

    __slots__ = ("_private_key", "node_id", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.node_id: str = derive_node_id(self.public_key)

    @classmethod
    def generate(cls) -> NodeIdentity:
        """A new random key pair (from the operating system's CSPRNG)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        """The key pair of a 32-byte private key seed (tests use fixed seeds)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def private_pem(self) -> bytes:
        """The private key as an unencrypted PKCS#8 PEM file's content."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"NodeIdentity({self.node_id})"


# --- what is signed ---------------------------------------------------------------------


def link_transcript(
    *,
    channel: str,
    id_a: str,
    id_b: str,
    mode: int,
    nonce_a: bytes,
    nonce_b: bytes,
    pake_a: bytes = b"",
    pake_b: bytes = b"",
) -> bytes:
    """What both ends of a link handshake agree on: the protocol, the channel, the ids of
    side A (the smaller id) and side B, the mode (open or private), both nonces and both
    SPAKE2 messages (empty in an open channel)."""
    return length_prefixed(
        LINK_AUTH_PROTOCOL,
        channel.encode(),
        id_a.encode(),
        id_b.encode(),
        bytes([mode]),
        nonce_a,
        nonce_b,
        pake_a,
        pake_b,
    )


def link_proof_message(
    signer_is_a: bool, transcript: bytes, fingerprint_a: bytes, fingerprint_b: bytes
) -> bytes:
    """What side A (or B) signs to prove its id on a link: the transcript, which side it
    is (so a signature cannot be reflected), and the SHA-256 fingerprints of A's and B's
    DTLS certificates *as the signer sees them on its own connection*."""
    side = b"A" if signer_is_a else b"B"
    return length_prefixed(
        LINK_AUTH_PROTOCOL + b" identity proof " + side, transcript, fingerprint_a, fingerprint_b
    )


def signaling_hello_message(nonce: bytes, channel: str, peer_id: str) -> bytes:
    """What a client signs in its hello to claim ``peer_id`` in ``channel`` on the
    WebSocket whose challenge was ``nonce``."""
    return length_prefixed(SIGNALING_HELLO_PROTOCOL, nonce, channel.encode(), peer_id.encode())


# --- the key file -----------------------------------------------------------------------


def load_key_file(path: Path) -> NodeIdentity:
    """The identity kept in ``path``; :class:`IdentityError` if it is missing, unreadable,
    readable by other users, of another user, or not an Ed25519 private key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise IdentityError(f"the identity key file {path} is missing") from None
    except OSError as exc:
        raise IdentityError(
            f"cannot read the identity key file {path}: {exc.strerror or exc}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IdentityError(f"the identity key file {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise IdentityError(
                f"the identity key file {path} belongs to another user; it must be yours"
            )
        mode = info.st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(
                f"the identity key file {path} can be read by other users (mode {mode:o}); "
                f"it holds this node's private key: fix it with chmod 600 {path}"
            )
        data = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise IdentityError(
            f"cannot read the identity key file {path}: {exc.strerror or exc}"
        ) from None
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise IdentityError(f"the identity key file {path} is too large to be a key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IdentityError(
            f"the identity key file {path} is damaged or not a raftchat key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"the identity key file {path} holds no Ed25519 private key")
    return NodeIdentity(key)


def create_key_file(path: Path, identity: NodeIdentity | None = None) -> NodeIdentity:
    """Write a new identity (``identity``, or a fresh one) to ``path`` with mode 0600,
    durably: once this returns, it survives a crash. Never replaces an existing file.

    The caller keeps other processes away (raftchat holds the data dir's lock)."""
    identity = identity or NodeIdentity.generate()
    temporary = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        if path.exists() or path.is_symlink():
            raise IdentityError(f"the identity key file {path} exists already; not replaced")
        with os.fdopen(os.open(temporary, flags, KEY_FILE_MODE), "wb") as file:
            os.fchmod(file.fileno(), KEY_FILE_MODE)  # open's mode is filtered by the umask
            file.write(identity.private_pem())
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise IdentityError(
            f"cannot write the identity key file {path}: {exc.strerror or exc}"
        ) from None
    return identity
