"""Link authentication: each peer proves its node id with its identity key, and in a
private channel that it knows the channel passphrase; nobody else gets in.

Every new DataChannel starts with this handshake, before any application message is
sent or accepted. It runs over the (DTLS-encrypted) channel itself, so the signaling
server never sees it. Both peers send at once; the proof waits only for the peer's hello.

Messages (each one AUTH frame; byte 0 = ``AUTH_VERSION``, byte 1 = message type)::

    HELLO   mode (OPEN | PAKE) + nonce (16 bytes)
            [+ SPAKE2 message (33 bytes), when mode is PAKE]
    PROOF   public key (32) + fingerprint_A (32) + fingerprint_B (32) + signature (64)
            [+ key_mac (32) + binding_mac (32), when mode is PAKE]
    REJECT  reason (1 byte); informational, the peer gives up too

A peer speaking another ``AUTH_VERSION`` fails with ``incompatible``: both peers need a
compatible raftchat. Side A is the peer with the smaller id (also the WebRTC offerer).

Identity (every channel). The transcript (``net/identity.py:link_transcript``) holds the
protocol name, the channel, both ids, the mode, both nonces and both SPAKE2 messages
(empty when open). Each side signs the transcript, its side and the SHA-256 fingerprints
of both DTLS certificates *as it sees them on its own connection*
(``link_proof_message``) with its Ed25519 identity key, and sends its public key, the
fingerprints it signed and the signature. The verifier accepts only if

- the id derived from the public key is the peer id this link is for (``wrong_identity``
  otherwise: someone claims an id that is not its own);
- the signature verifies over the transcript as the verifier built it, with fresh
  nonces of both sides (``bad_signature`` otherwise: the peer does not hold the key, or
  replays an old proof);
- the fingerprints signed are the ones the verifier sees (``intercepted`` otherwise). A
  signaling server that rewrites the SDP fingerprints to sit in the middle terminates two
  DTLS connections, so the two ends see different certificates; it cannot sign for either
  end, so forwarding the proofs gives itself away.

Passphrase (private channels). SPAKE2 (the ``spake2`` package, Ed25519 group) with the
passphrase; a PAKE gives an attacker one guess per handshake it takes part in, and a
recording of the traffic gives none (unlike a MAC of the passphrase, which could be
brute-forced offline). The SPAKE2 identities bind the protocol name, the channel name and
both peer ids, so a handshake for another channel or between other peers yields another
key. Key confirmation, from the SPAKE2 key ``K`` with HKDF-SHA256 (salt = protocol name)::

    key_mac_X     = HMAC(HKDF(K, "key confirm X"), transcript)
    binding_mac_X = HMAC(HKDF(K, "dtls binding X"), transcript + fingerprint_A + fingerprint_B)

with the fingerprints as the verifier sees them. A wrong passphrase fails ``key_mac``
(checked first: ``wrong_passphrase``); an interception fails the binding too. Every MAC
comparison is constant-time.

Everything here is pure (no I/O, no clock): the link feeds messages in and sends what
comes out.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.ed25519_basic import NotOnCurve
from spake2.spake2 import SPAKEError

from raftchat.net.identity import (
    LINK_AUTH_PROTOCOL,
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    NodeIdentity,
    derive_node_id,
    length_prefixed,
    link_proof_message,
    link_transcript,
    verify,
)

AUTH_VERSION = 2
PROTOCOL_NAME = LINK_AUTH_PROTOCOL
MAC_BYTES = 32
SPAKE2_MESSAGE_BYTES = 33
FINGERPRINT_BYTES = 32
"""A DTLS certificate fingerprint: its SHA-256 digest."""
IDENTITY_PROOF_BYTES = PUBLIC_KEY_BYTES + 2 * FINGERPRINT_BYTES + SIGNATURE_BYTES


class AuthMessageType(enum.IntEnum):
    HELLO = 1
    PROOF = 2
    REJECT = 3


class AuthMode(enum.IntEnum):
    OPEN = 0
    PAKE = 1


class AuthErrorKind(enum.StrEnum):
    """Why a handshake failed. The values travel in REJECT messages by their index."""

    WRONG_PASSPHRASE = "wrong_passphrase"
    "The peer's key confirmation does not match: the passphrases differ."
    PASSPHRASE_REQUIRED = "passphrase_required"
    "We have no passphrase but the peer's channel is private."
    PEER_HAS_NO_PASSPHRASE = "peer_has_no_passphrase"
    "Our channel is private but the peer has no passphrase."
    INTERCEPTED = "intercepted"
    """The peer proved itself, but the two ends see different DTLS certificates: a man in
    the middle."""
    REJECTED = "rejected"
    "The peer refused our handshake (it sent REJECT)."
    PROTOCOL = "protocol"
    "A malformed or unexpected handshake message."
    TIMEOUT = "timeout"
    "The peer did not finish the handshake in time."
    THROTTLED = "throttled"
    """This peer, or its address, failed too many handshakes lately (someone may be
    guessing): no new handshake with it starts until its budget refills. Other peers are
    not affected (``net/guess_throttle.py``)."""
    INCOMPATIBLE = "incompatible"
    "The peer speaks another version of the handshake: both need a compatible raftchat."
    WRONG_IDENTITY = "wrong_identity"
    """The peer's public key does not give the peer id this link is for: it claims an id
    that is not its own."""
    BAD_SIGNATURE = "bad_signature"
    """The peer's signature does not verify over this handshake: it does not hold the key
    of its id (or replays another handshake's proof)."""


_REJECT_CODES = list(AuthErrorKind)


class AuthError(Exception):
    """A failed handshake; ``kind`` says why, the message says what to do."""

    def __init__(self, kind: AuthErrorKind, message: str, *, from_peer: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.from_peer = from_peer
        "The peer sent REJECT: do not answer it with another REJECT."


def normalize_passphrase(passphrase: str) -> bytes:
    """The bytes fed to SPAKE2: NFC-normalized UTF-8, so equal-looking input agrees."""
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=PROTOCOL_NAME, info=info).derive(key)


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def encode_hello(mode: AuthMode, nonce: bytes, pake_message: bytes = b"") -> bytes:
    return bytes([AUTH_VERSION, AuthMessageType.HELLO, mode]) + nonce + pake_message


def encode_proof(
    public_key: bytes,
    fingerprints: tuple[bytes, bytes],
    signature: bytes,
    macs: tuple[bytes, bytes] | None = None,
) -> bytes:
    """``fingerprints`` = (A's certificate, B's certificate) as the sender sees them."""
    body = public_key + fingerprints[0] + fingerprints[1] + signature
    if macs is not None:
        body += macs[0] + macs[1]
    return bytes([AUTH_VERSION, AuthMessageType.PROOF]) + body


def encode_reject(kind: AuthErrorKind) -> bytes:
    return bytes([AUTH_VERSION, AuthMessageType.REJECT, _REJECT_CODES.index(kind)])


class Handshake:
    """One side of the handshake on one connection.

    Call :meth:`start` once and send its result, then :meth:`receive` every handshake
    message from the peer and send what it returns. :attr:`complete` turns True once
    the peer is accepted; any failure raises :class:`AuthError` and the handshake is
    over (send :func:`encode_reject` unless the error came from a REJECT).
    """

    def __init__(
        self,
        *,
        channel: str,
        identity: NodeIdentity,
        peer_id: str,
        passphrase: str | None,
        local_fingerprint: bytes,
        remote_fingerprint: bytes,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self_id = identity.node_id
        if self_id == peer_id:
            raise ValueError("a handshake needs two different peer ids")
        for fingerprint in (local_fingerprint, remote_fingerprint):
            if len(fingerprint) != FINGERPRINT_BYTES:
                raise ValueError(f"a DTLS fingerprint has {FINGERPRINT_BYTES} bytes")
        self.channel = channel
        self.peer_id = peer_id
        self.is_side_a = self_id < peer_id
        self.private = passphrase is not None
        self.complete = False
        self.failed = False
        self._identity = identity
        self._entropy = entropy
        self._started = False
        self._id_a, self._id_b = (self_id, peer_id) if self.is_side_a else (peer_id, self_id)
        self._fingerprints = (
            (local_fingerprint, remote_fingerprint)
            if self.is_side_a
            else (remote_fingerprint, local_fingerprint)
        )
        "(A's certificate, B's certificate) as this side sees them."
        self._pake: SPAKE2_A | SPAKE2_B | None = None
        if passphrase is not None:
            # The ids given to SPAKE2 carry the channel name, so keys never carry over.
            side_ids = {
                "idA": length_prefixed(PROTOCOL_NAME, channel.encode(), self._id_a.encode()),
                "idB": length_prefixed(PROTOCOL_NAME, channel.encode(), self._id_b.encode()),
            }
            side = SPAKE2_A if self.is_side_a else SPAKE2_B
            self._pake = side(normalize_passphrase(passphrase), entropy_f=entropy, **side_ids)
        self._nonce = b""
        self._own_pake_message = b""
        self._transcript: bytes | None = None
        "Set once the peer's HELLO arrived: what the peer's PROOF must be about."
        self._expected_macs: tuple[bytes, bytes] | None = None

    @property
    def mode(self) -> AuthMode:
        return AuthMode.PAKE if self._pake is not None else AuthMode.OPEN

    def start(self) -> bytes:
        """The HELLO to send first."""
        if self._started:
            raise RuntimeError("Handshake.start() may be called once")
        self._started = True
        self._nonce = self._entropy(NONCE_BYTES)
        if self._pake is not None:
            self._own_pake_message = self._pake.start()
        return encode_hello(self.mode, self._nonce, self._own_pake_message)

    def receive(self, message: bytes) -> list[bytes]:
        """Handle one handshake message from the peer; return the messages to send."""
        if not self._started or self.complete or self.failed:
            raise self._error(AuthErrorKind.PROTOCOL, "handshake message out of turn")
        try:
            return self._receive(message)
        except AuthError:
            self.failed = True
            raise

    def _receive(self, message: bytes) -> list[bytes]:
        if not message:
            raise self._error(AuthErrorKind.PROTOCOL, "empty handshake message")
        if message[0] != AUTH_VERSION:
            raise self._error(
                AuthErrorKind.INCOMPATIBLE,
                f"peer {self.peer_id} speaks handshake version {message[0]} and this "
                f"raftchat speaks {AUTH_VERSION}: both peers need a compatible raftchat",
            )
        if len(message) < 2:
            raise self._error(AuthErrorKind.PROTOCOL, "handshake message without a type")
        kind, body = message[1], message[2:]
        if kind == AuthMessageType.REJECT:
            raise self._rejected(body)
        if kind == AuthMessageType.HELLO and self._transcript is None:
            return self._on_hello(body)
        if kind == AuthMessageType.PROOF and self._transcript is not None:
            self._on_proof(body)
            return []
        raise self._error(AuthErrorKind.PROTOCOL, f"unexpected handshake message type {kind}")

    def _on_hello(self, body: bytes) -> list[bytes]:
        if not body or body[0] not in (AuthMode.OPEN, AuthMode.PAKE):
            raise self._error(AuthErrorKind.PROTOCOL, "HELLO with an unknown mode")
        mode, nonce, pake_message = (
            AuthMode(body[0]),
            body[1 : 1 + NONCE_BYTES],
            body[1 + NONCE_BYTES :],
        )
        if len(nonce) != NONCE_BYTES:
            raise self._error(AuthErrorKind.PROTOCOL, "HELLO without its nonce")
        if nonce == self._nonce:
            raise self._error(AuthErrorKind.PROTOCOL, "our own HELLO came back")
        if mode == AuthMode.OPEN:
            if pake_message:
                raise self._error(AuthErrorKind.PROTOCOL, "open HELLO with trailing bytes")
            if self._pake is not None:
                raise self._error(
                    AuthErrorKind.PEER_HAS_NO_PASSPHRASE,
                    f"peer {self.peer_id} has no passphrase for private channel "
                    f"{self.channel!r}; it cannot join",
                )
        elif self._pake is None:
            raise self._error(
                AuthErrorKind.PASSPHRASE_REQUIRED,
                f"channel {self.channel!r} is private: peer {self.peer_id} requires a "
                "passphrase; join again with the channel passphrase",
            )
        elif len(pake_message) != SPAKE2_MESSAGE_BYTES:
            raise self._error(AuthErrorKind.PROTOCOL, "PAKE HELLO of the wrong length")
        ours, theirs = (self._nonce, self._own_pake_message), (nonce, pake_message)
        (nonce_a, pake_a), (nonce_b, pake_b) = (ours, theirs) if self.is_side_a else (theirs, ours)
        transcript = link_transcript(
            channel=self.channel,
            id_a=self._id_a,
            id_b=self._id_b,
            mode=mode,
            nonce_a=nonce_a,
            nonce_b=nonce_b,
            pake_a=pake_a,
            pake_b=pake_b,
        )
        signature = self._identity.sign(
            link_proof_message(self.is_side_a, transcript, *self._fingerprints)
        )
        own_macs = None
        if self._pake is not None:
            try:
                key = self._pake.finish(pake_message)
            except (SPAKEError, NotOnCurve, ValueError, AssertionError) as exc:
                raise self._error(AuthErrorKind.PROTOCOL, f"invalid PAKE message ({exc})") from None
            bound = transcript + length_prefixed(*self._fingerprints)

            def macs(side: bytes) -> tuple[bytes, bytes]:
                return (
                    _mac(_hkdf(key, b"key confirm " + side), transcript),
                    _mac(_hkdf(key, b"dtls binding " + side), bound),
                )

            own, peer = (b"A", b"B") if self.is_side_a else (b"B", b"A")
            own_macs = macs(own)
            self._expected_macs = macs(peer)
        self._transcript = transcript
        return [encode_proof(self._identity.public_key, self._fingerprints, signature, own_macs)]

    def _on_proof(self, body: bytes) -> None:
        assert self._transcript is not None
        expected_length = IDENTITY_PROOF_BYTES + (2 * MAC_BYTES if self._pake else 0)
        if len(body) != expected_length:
            raise self._error(AuthErrorKind.PROTOCOL, "PROOF of the wrong length")
        public_key, body = body[:PUBLIC_KEY_BYTES], body[PUBLIC_KEY_BYTES:]
        seen = (body[:FINGERPRINT_BYTES], body[FINGERPRINT_BYTES : 2 * FINGERPRINT_BYTES])
        body = body[2 * FINGERPRINT_BYTES :]
        signature, macs = body[:SIGNATURE_BYTES], body[SIGNATURE_BYTES:]
        if self._expected_macs is not None and not hmac.compare_digest(
            macs[:MAC_BYTES], self._expected_macs[0]
        ):
            raise self._error(
                AuthErrorKind.WRONG_PASSPHRASE,
                f"wrong passphrase for channel {self.channel!r}: peer {self.peer_id} "
                "does not share it (or someone without it is in between); check the passphrase",
            )
        claimed = derive_node_id(public_key)
        if claimed != self.peer_id:
            raise self._error(
                AuthErrorKind.WRONG_IDENTITY,
                f"the peer on the link to {self.peer_id} presented the key of another id "
                f"({claimed}): it is not {self.peer_id} (someone, e.g. the signaling "
                "server, may pose as it)",
            )
        signed = link_proof_message(not self.is_side_a, self._transcript, *seen)
        if not verify(public_key, signed, signature):
            raise self._error(
                AuthErrorKind.BAD_SIGNATURE,
                f"peer {self.peer_id} could not prove its id: its signature does not verify "
                "over this handshake (it does not hold the key of that id)",
            )
        if seen != self._fingerprints or (
            self._expected_macs is not None
            and not hmac.compare_digest(macs[MAC_BYTES:], self._expected_macs[1])
        ):
            raise self._error(
                AuthErrorKind.INTERCEPTED,
                f"connection to peer {self.peer_id} in channel {self.channel!r} is "
                "intercepted: the peer proved its id"
                + (" and knows the passphrase" if self._pake is not None else "")
                + " but sees different DTLS certificates (the signaling server or network "
                "is in the middle)",
            )
        self.complete = True

    def _rejected(self, body: bytes) -> AuthError:
        reason = body[0] if len(body) == 1 and body[0] < len(_REJECT_CODES) else None
        if reason is None:
            return self._error(AuthErrorKind.PROTOCOL, "malformed REJECT", from_peer=True)
        peer_kind = _REJECT_CODES[reason]
        if peer_kind == AuthErrorKind.WRONG_PASSPHRASE:
            return self._error(
                AuthErrorKind.WRONG_PASSPHRASE,
                f"wrong passphrase for channel {self.channel!r} (peer {self.peer_id} "
                "rejected the handshake); check the passphrase",
                from_peer=True,
            )
        if peer_kind == AuthErrorKind.PEER_HAS_NO_PASSPHRASE:
            return self._error(
                AuthErrorKind.PASSPHRASE_REQUIRED,
                f"channel {self.channel!r} is private (peer {self.peer_id} rejected the "
                "handshake without a passphrase); join again with the channel passphrase",
                from_peer=True,
            )
        return self._error(
            AuthErrorKind.REJECTED,
            f"peer {self.peer_id} rejected the handshake for channel {self.channel!r} "
            f"({peer_kind})",
            from_peer=True,
        )

    def _error(self, kind: AuthErrorKind, message: str, *, from_peer: bool = False) -> AuthError:
        self.failed = True
        return AuthError(kind, message, from_peer=from_peer)
