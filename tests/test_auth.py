"""Channel handshake (sans-I/O): SPAKE2 with key confirmation bound to ids and DTLS certificates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftchat.net.auth import (
    AUTH_VERSION,
    AuthError,
    AuthErrorKind,
    AuthMessageType,
    Handshake,
    encode_reject,
)

FP_A = bytes(range(32))
FP_B = bytes(range(32, 64))


def pair(
    pass_a: str | None = "correct horse",
    pass_b: str | None = "correct horse",
    *,
    channel_a: str = "room",
    channel_b: str = "room",
    a_sees: tuple[bytes, bytes] = (FP_A, FP_B),
    b_sees: tuple[bytes, bytes] = (FP_A, FP_B),
) -> tuple[Handshake, Handshake]:
    """Peers "alice" (side A, smaller id) and "bob"; ``x_sees`` = (A's cert, B's cert)."""
    alice = Handshake(
        channel=channel_a,
        self_id="alice",
        peer_id="bob",
        passphrase=pass_a,
        local_fingerprint=a_sees[0],
        remote_fingerprint=a_sees[1],
    )
    bob = Handshake(
        channel=channel_b,
        self_id="bob",
        peer_id="alice",
        passphrase=pass_b,
        local_fingerprint=b_sees[1],
        remote_fingerprint=b_sees[0],
    )
    return alice, bob


def run(alice: Handshake, bob: Handshake) -> dict[str, AuthError | None]:
    """Deliver messages both ways like an ordered channel; return each side's error."""
    queues: dict[str, list[bytes]] = {"alice": [bob.start()], "bob": [alice.start()]}
    sides = {"alice": alice, "bob": bob}
    errors: dict[str, AuthError | None] = {"alice": None, "bob": None}
    other = {"alice": "bob", "bob": "alice"}
    while any(queues.values()):
        for name in ("alice", "bob"):
            while queues[name] and errors[name] is None:
                try:
                    replies = sides[name].receive(queues[name].pop(0))
                except AuthError as error:
                    errors[name] = error
                    replies = [] if error.from_peer else [encode_reject(error.kind)]
                queues[other[name]].extend(replies)
            if errors[name] is not None:
                queues[name].clear()
    return errors


def test_same_passphrase_authenticates_both_sides():
    alice, bob = pair()
    assert run(alice, bob) == {"alice": None, "bob": None}
    assert alice.complete and bob.complete
    assert alice.is_side_a and not bob.is_side_a


def test_open_channels_complete_without_a_pake():
    alice, bob = pair(None, None)
    hello = alice.start()
    assert hello == bytes([AUTH_VERSION, AuthMessageType.HELLO, 0])
    assert bob.start() == hello
    assert alice.receive(hello) == [] and alice.complete
    assert bob.receive(hello) == [] and bob.complete


def test_unicode_passphrase_is_normalized():
    alice, bob = pair("caf\u00e9", "cafe\u0301")
    assert run(alice, bob) == {"alice": None, "bob": None}


def test_wrong_passphrase_fails_on_both_sides_with_a_clear_error():
    errors = run(*pair("correct horse", "battery staple"))
    for name in ("alice", "bob"):
        assert errors[name].kind == AuthErrorKind.WRONG_PASSPHRASE
        assert "wrong passphrase for channel 'room'" in errors[name].message


def test_channel_name_is_bound_into_the_keys():
    errors = run(*pair(channel_a="room", channel_b="other-room"))
    assert errors["alice"].kind == errors["bob"].kind == AuthErrorKind.WRONG_PASSPHRASE


def test_different_dtls_certificates_reveal_an_interception():
    # A man in the middle terminates both DTLS connections: each end sees its own
    # certificate and the interceptor's, even if it forwards the PAKE untouched.
    mitm_1, mitm_2 = b"\x01" * 32, b"\x02" * 32
    errors = run(*pair(a_sees=(FP_A, mitm_1), b_sees=(mitm_2, FP_B)))
    for name in ("alice", "bob"):
        assert errors[name].kind == AuthErrorKind.INTERCEPTED
        assert "intercepted" in errors[name].message


def test_open_peer_against_a_private_channel_fails_on_both_sides():
    errors = run(*pair("secret", None))
    assert errors["alice"].kind == AuthErrorKind.PEER_HAS_NO_PASSPHRASE
    assert errors["bob"].kind == AuthErrorKind.PASSPHRASE_REQUIRED
    assert "requires a passphrase" in errors["bob"].message


def test_reject_from_the_peer_names_the_reason_and_is_not_answered():
    alice, _bob = pair()
    alice.start()
    with pytest.raises(AuthError) as caught:
        alice.receive(encode_reject(AuthErrorKind.WRONG_PASSPHRASE))
    assert caught.value.from_peer
    assert caught.value.kind == AuthErrorKind.WRONG_PASSPHRASE
    assert "peer bob rejected the handshake" in caught.value.message


def test_hello_is_fresh_and_does_not_contain_the_passphrase():
    first, _ = pair("hunter2-hunter2")
    second, _ = pair("hunter2-hunter2")
    hello_1, hello_2 = first.start(), second.start()
    assert hello_1 != hello_2
    assert b"hunter2" not in hello_1


def test_confirmation_before_hello_is_a_protocol_error():
    alice, _bob = pair()
    alice.start()
    confirm = bytes([AUTH_VERSION, AuthMessageType.CONFIRM]) + bytes(64)
    with pytest.raises(AuthError) as caught:
        alice.receive(confirm)
    assert caught.value.kind == AuthErrorKind.PROTOCOL
    assert alice.failed


def test_reflected_hello_is_refused():
    alice, _bob = pair()
    hello = alice.start()
    with pytest.raises(AuthError) as caught:
        alice.receive(hello)
    assert caught.value.kind == AuthErrorKind.PROTOCOL


def test_newer_protocol_version_is_reported():
    alice, _bob = pair()
    alice.start()
    with pytest.raises(AuthError, match="unsupported handshake version 9"):
        alice.receive(bytes([9, 1, 1]))


@given(garbage=st.binary(max_size=80), private=st.booleans())
@settings(max_examples=150, deadline=None)
def test_garbage_raises_only_auth_error(garbage, private):
    alice, _bob = pair("pw" if private else None)
    alice.start()
    try:
        alice.receive(garbage)
    except AuthError as error:
        assert alice.failed and error.kind in AuthErrorKind


@given(position=st.integers(0, 64), bit=st.integers(0, 7))
@settings(max_examples=60, deadline=None)
def test_any_flipped_bit_in_the_confirmation_fails_it(position, bit):
    alice, bob = pair()
    hello_a, hello_b = alice.start(), bob.start()
    [confirm_a] = alice.receive(hello_b)
    bob.receive(hello_a)
    tampered = bytearray(confirm_a)
    tampered[2 + position % 64] ^= 1 << bit
    with pytest.raises(AuthError) as caught:
        bob.receive(bytes(tampered))
    assert caught.value.kind in (AuthErrorKind.WRONG_PASSPHRASE, AuthErrorKind.INTERCEPTED)
    assert not bob.complete
