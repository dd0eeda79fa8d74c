"""Channel authentication: peers prove they know the channel passphrase, and nobody else can.

Every new DataChannel starts with this handshake, before any application message is
sent or accepted. It runs over the (DTLS-encrypted) channel itself, so the signaling
server never sees it. Both peers send at once; no message waits for a reply except
the confirmation.

Messages (each one AUTH frame; byte 0 = ``AUTH_VERSION``, byte 1 = message type)::

    HELLO    mode (OPEN | PAKE) [+ SPAKE2 message, 33 bytes, when mode is PAKE]
    CONFIRM  key_mac (32 bytes) + binding_mac (32 bytes)         only in PAKE mode
    REJECT   reason (1 byte); informational, the peer gives up too

Open channels (no passphrase) exchange ``HELLO(OPEN)`` only: that makes a mismatch
(one side private, one side open) fail on both sides with a clear error instead of a
link that is half authenticated.

Private channels run SPAKE2 (the ``spake2`` package, Ed25519 group) with roles fixed by
id order: the smaller id (also the WebRTC offerer) is side A. A PAKE gives an attacker
one guess per handshake it takes part in, and a recording of the traffic gives none
(unlike a MAC of the passphrase, which could be brute-forced offline). The SPAKE2
identities bind the protocol name, the channel name and both peer ids, so a handshake
for another channel or between other peers yields another key.

Key confirmation, from the SPAKE2 key ``K`` with HKDF-SHA256 (salt = protocol name)::

    key_mac_X     = HMAC(HKDF(K, "key confirm X"), transcript)
    binding_mac_X = HMAC(HKDF(K, "dtls binding X"), transcript + fingerprint_A + fingerprint_B)

where ``transcript`` holds the protocol name, channel, both ids and both SPAKE2 messages,
and ``fingerprint_A``/``fingerprint_B`` are the SHA-256 digests of A's and B's DTLS
certificates *as this side sees them on its DTLS connection*. A signaling server that
rewrites the SDP fingerprints to sit in the middle terminates two DTLS connections,
so the two ends see different fingerprints: even if it forwards the SPAKE2 messages
untouched, ``binding_mac`` fails and the interception is reported as such. A wrong
passphrase fails ``key_mac``. Every comparison is constant-time.

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
from spake2.spake2 import SPAKEError

AUTH_VERSION = 1
PROTOCOL_NAME = b"raftchat-channel-auth-v1"
MAC_BYTES = 32
SPAKE2_MESSAGE_BYTES = 33


class AuthMessageType(enum.IntEnum):
    HELLO = 1
    CONFIRM = 2
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
    "Same passphrase, but the two ends see different DTLS certificates: a man in the middle."
    REJECTED = "rejected"
    "The peer refused our handshake (it sent REJECT)."
    PROTOCOL = "protocol"
    "A malformed or unexpected handshake message, or an unknown protocol version."
    TIMEOUT = "timeout"
    "The peer did not finish the handshake in time."
    THROTTLED = "throttled"
    """This peer, or its address, failed too many handshakes lately (someone may be
    guessing): no new handshake with it starts until its budget refills. Other peers are
    not affected (``net/guess_throttle.py``)."""


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


def _length_prefixed(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=PROTOCOL_NAME, info=info).derive(key)


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def encode_hello(mode: AuthMode, pake_message: bytes = b"") -> bytes:
    return bytes([AUTH_VERSION, AuthMessageType.HELLO, mode]) + pake_message


def encode_confirm(key_mac: bytes, binding_mac: bytes) -> bytes:
    return bytes([AUTH_VERSION, AuthMessageType.CONFIRM]) + key_mac + binding_mac


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
        self_id: str,
        peer_id: str,
        passphrase: str | None,
        local_fingerprint: bytes,
        remote_fingerprint: bytes,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if self_id == peer_id:
            raise ValueError("a handshake needs two different peer ids")
        self.channel = channel
        self.peer_id = peer_id
        self.is_side_a = self_id < peer_id
        self.private = passphrase is not None
        self.complete = False
        self.failed = False
        self._started = False
        id_a, id_b = (self_id, peer_id) if self.is_side_a else (peer_id, self_id)
        fp_a, fp_b = (
            (local_fingerprint, remote_fingerprint)
            if self.is_side_a
            else (remote_fingerprint, local_fingerprint)
        )
        self._context = _length_prefixed(
            PROTOCOL_NAME, channel.encode(), id_a.encode(), id_b.encode()
        )
        self._fingerprints = _length_prefixed(fp_a, fp_b)
        self._pake: SPAKE2_A | SPAKE2_B | None = None
        if passphrase is not None:
            # The ids given to SPAKE2 carry the channel name, so keys never carry over.
            side_ids = {
                "idA": _length_prefixed(PROTOCOL_NAME, channel.encode(), id_a.encode()),
                "idB": _length_prefixed(PROTOCOL_NAME, channel.encode(), id_b.encode()),
            }
            side = SPAKE2_A if self.is_side_a else SPAKE2_B
            self._pake = side(normalize_passphrase(passphrase), entropy_f=entropy, **side_ids)
        self._own_pake_message = b""
        self._expected_confirm: tuple[bytes, bytes] | None = None

    def start(self) -> bytes:
        """The HELLO to send first."""
        if self._started:
            raise RuntimeError("Handshake.start() may be called once")
        self._started = True
        if self._pake is None:
            return encode_hello(AuthMode.OPEN)
        self._own_pake_message = self._pake.start()
        return encode_hello(AuthMode.PAKE, self._own_pake_message)

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
        if len(message) < 2 or message[0] != AUTH_VERSION:
            version = message[0] if message else None
            raise self._error(
                AuthErrorKind.PROTOCOL,
                f"unsupported handshake version {version} (this raftchat speaks "
                f"{AUTH_VERSION}); both peers need a compatible raftchat",
            )
        kind, body = message[1], message[2:]
        if kind == AuthMessageType.REJECT:
            raise self._rejected(body)
        if kind == AuthMessageType.HELLO and self._expected_confirm is None:
            return self._on_hello(body)
        if kind == AuthMessageType.CONFIRM and self._expected_confirm is not None:
            self._on_confirm(body)
            return []
        raise self._error(AuthErrorKind.PROTOCOL, f"unexpected handshake message type {kind}")

    def _on_hello(self, body: bytes) -> list[bytes]:
        if not body or body[0] not in (AuthMode.OPEN, AuthMode.PAKE):
            raise self._error(AuthErrorKind.PROTOCOL, "HELLO with an unknown mode")
        mode, pake_message = AuthMode(body[0]), body[1:]
        if mode == AuthMode.OPEN:
            if pake_message:
                raise self._error(AuthErrorKind.PROTOCOL, "open HELLO with trailing bytes")
            if self._pake is not None:
                raise self._error(
                    AuthErrorKind.PEER_HAS_NO_PASSPHRASE,
                    f"peer {self.peer_id} has no passphrase for private channel "
                    f"{self.channel!r}; it cannot join",
                )
            self.complete = True
            return []
        if self._pake is None:
            raise self._error(
                AuthErrorKind.PASSPHRASE_REQUIRED,
                f"channel {self.channel!r} is private: peer {self.peer_id} requires a "
                "passphrase; join again with the channel passphrase",
            )
        if len(pake_message) != SPAKE2_MESSAGE_BYTES:
            raise self._error(AuthErrorKind.PROTOCOL, "PAKE HELLO of the wrong length")
        try:
            key = self._pake.finish(pake_message)
        except (SPAKEError, ValueError, AssertionError) as exc:
            raise self._error(AuthErrorKind.PROTOCOL, f"invalid PAKE message ({exc})") from None
        msg_a, msg_b = (
            (self._own_pake_message, pake_message)
            if self.is_side_a
            else (pake_message, self._own_pake_message)
        )
        transcript = self._context + _length_prefixed(msg_a, msg_b)
        bound = transcript + self._fingerprints

        def macs(side: bytes) -> tuple[bytes, bytes]:
            return (
                _mac(_hkdf(key, b"key confirm " + side), transcript),
                _mac(_hkdf(key, b"dtls binding " + side), bound),
            )

        own, theirs = (b"A", b"B") if self.is_side_a else (b"B", b"A")
        self._expected_confirm = macs(theirs)
        return [encode_confirm(*macs(own))]

    def _on_confirm(self, body: bytes) -> None:
        assert self._expected_confirm is not None
        if len(body) != 2 * MAC_BYTES:
            raise self._error(AuthErrorKind.PROTOCOL, "CONFIRM of the wrong length")
        expected_key_mac, expected_binding_mac = self._expected_confirm
        if not hmac.compare_digest(body[:MAC_BYTES], expected_key_mac):
            raise self._error(
                AuthErrorKind.WRONG_PASSPHRASE,
                f"wrong passphrase for channel {self.channel!r}: peer {self.peer_id} "
                "does not share it (or someone without it is in between); check the passphrase",
            )
        if not hmac.compare_digest(body[MAC_BYTES:], expected_binding_mac):
            raise self._error(
                AuthErrorKind.INTERCEPTED,
                f"connection to peer {self.peer_id} in channel {self.channel!r} is "
                "intercepted: both ends know the passphrase but see different DTLS "
                "certificates (the signaling server or network is in the middle)",
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
