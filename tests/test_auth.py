"""The link handshake: identity proofs in every channel, SPAKE2 in private ones; alone
(sans-I/O), then over real links.

The mesh tests use loopback only, with an explicit empty ICE server list (TEST_CONFIG),
on each engine and on a mix of both (the ``webrtc`` fixture): the handshake binds the
DTLS fingerprints each engine reads, so a mix checks that both read the same ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mesh_utils import (
    CLOSE_WAIT_S,
    FakeRelay,
    InterceptingRelay,
    Peer,
    all_open,
    engine_of,
    identity_of,
    ids,
    make_peer,
    pending_tasks,
    private_config,
    with_settings,
)
from support.waiting import wait_until

from raftchat.net import LinkState, Mesh, MeshConfig
from raftchat.net.auth import (
    AUTH_VERSION,
    IDENTITY_PROOF_BYTES,
    MAC_BYTES,
    AuthError,
    AuthErrorKind,
    AuthMessageType,
    Handshake,
    encode_reject,
)
from raftchat.net.identity import NONCE_BYTES, NodeIdentity

FP_A = bytes(range(32))
FP_B = bytes(range(32, 64))
ALICE, BOB = identity_of(ids.alice), identity_of(ids.bob)
MALLORY = NodeIdentity.generate()


@dataclass
class Impostor:
    """Claims ``node_id`` while holding another key: presents ``public_key`` and signs
    with ``signer`` (what a peer without the id's key can do)."""

    node_id: str
    public_key: bytes
    signer: NodeIdentity

    def sign(self, message: bytes) -> bytes:
        return self.signer.sign(message)


def pair(
    pass_a: str | None = "correct horse",
    pass_b: str | None = "correct horse",
    *,
    channel_a: str = "room",
    channel_b: str = "room",
    a_sees: tuple[bytes, bytes] = (FP_A, FP_B),
    b_sees: tuple[bytes, bytes] = (FP_A, FP_B),
    bob: NodeIdentity | Impostor = BOB,
) -> tuple[Handshake, Handshake]:
    """Peers alice (side A, smaller id) and ``bob``; ``x_sees`` = (A's cert, B's cert)."""
    alice_side = Handshake(
        channel=channel_a,
        identity=ALICE,
        peer_id=ids.bob,
        passphrase=pass_a,
        local_fingerprint=a_sees[0],
        remote_fingerprint=a_sees[1],
    )
    bob_side = Handshake(
        channel=channel_b,
        identity=bob,  # type: ignore[arg-type]
        peer_id=ids.alice,
        passphrase=pass_b,
        local_fingerprint=b_sees[1],
        remote_fingerprint=b_sees[0],
    )
    return alice_side, bob_side


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


def proofs(alice: Handshake, bob: Handshake) -> tuple[bytes, bytes]:
    """Exchange the hellos; return (alice's proof, bob's proof), neither delivered yet."""
    hello_a, hello_b = alice.start(), bob.start()
    [proof_a] = alice.receive(hello_b)
    [proof_b] = bob.receive(hello_a)
    return proof_a, proof_b


PRIVACY = pytest.mark.parametrize("passphrase", [None, "correct horse"], ids=["open", "private"])


def test_same_passphrase_authenticates_both_sides():
    alice, bob = pair()
    assert run(alice, bob) == {"alice": None, "bob": None}
    assert alice.complete and bob.complete
    assert alice.is_side_a and not bob.is_side_a


def test_open_channels_prove_identities_without_a_pake():
    alice, bob = pair(None, None)
    hello = alice.start()
    assert hello[:3] == bytes([AUTH_VERSION, AuthMessageType.HELLO, 0])
    assert len(hello) == 3 + NONCE_BYTES
    [proof_a] = alice.receive(bob.start())
    proof_b = bob.receive(hello)
    assert len(proof_a) == 2 + IDENTITY_PROOF_BYTES and not alice.complete
    assert alice.receive(*proof_b) == [] and alice.complete
    assert bob.receive(proof_a) == [] and bob.complete


def test_private_proof_carries_the_confirmation_macs():
    proof_a, _ = proofs(*pair())
    assert len(proof_a) == 2 + IDENTITY_PROOF_BYTES + 2 * MAC_BYTES


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


def test_channel_name_is_bound_into_the_identity_proofs():
    errors = run(*pair(None, None, channel_a="room", channel_b="other-room"))
    assert errors["alice"].kind == errors["bob"].kind == AuthErrorKind.BAD_SIGNATURE


@PRIVACY
def test_different_dtls_certificates_reveal_an_interception(passphrase):
    # A man in the middle terminates both DTLS connections: each end sees its own
    # certificate and the interceptor's, even if it forwards the handshake untouched.
    mitm_1, mitm_2 = b"\x01" * 32, b"\x02" * 32
    errors = run(*pair(passphrase, passphrase, a_sees=(FP_A, mitm_1), b_sees=(mitm_2, FP_B)))
    for name in ("alice", "bob"):
        assert errors[name].kind == AuthErrorKind.INTERCEPTED
        assert "intercepted" in errors[name].message


@PRIVACY
def test_a_key_of_another_id_is_refused(passphrase):
    # Mallory is on the link to bob (the signaling server says so), with her own key.
    errors = run(*pair(passphrase, passphrase, bob=Impostor(ids.bob, MALLORY.public_key, MALLORY)))
    assert errors["alice"].kind == AuthErrorKind.WRONG_IDENTITY
    assert f"presented the key of another id ({MALLORY.node_id})" in errors["alice"].message


@PRIVACY
def test_the_right_key_without_its_private_half_is_refused(passphrase):
    # Mallory presents bob's public key, but can only sign with her own.
    errors = run(*pair(passphrase, passphrase, bob=Impostor(ids.bob, BOB.public_key, MALLORY)))
    assert errors["alice"].kind == AuthErrorKind.BAD_SIGNATURE
    assert f"peer {ids.bob} could not prove its id" in errors["alice"].message


@PRIVACY
def test_a_proof_replayed_from_another_handshake_is_refused(passphrase):
    _, recorded = proofs(*pair(passphrase, passphrase))  # bob's proof, with old nonces
    alice, bob = pair(passphrase, passphrase)
    proofs(alice, bob)
    with pytest.raises(AuthError) as caught:
        alice.receive(recorded)
    # In a private channel the old SPAKE2 run gives other MACs as well.
    expected = AuthErrorKind.WRONG_PASSPHRASE if passphrase else AuthErrorKind.BAD_SIGNATURE
    assert caught.value.kind == expected
    assert not alice.complete


@PRIVACY
def test_a_reflected_proof_is_refused(passphrase):
    alice, bob = pair(passphrase, passphrase)
    proof_a, _ = proofs(alice, bob)
    with pytest.raises(AuthError) as caught:
        alice.receive(proof_a)
    assert caught.value.kind in (AuthErrorKind.WRONG_IDENTITY, AuthErrorKind.WRONG_PASSPHRASE)


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
    assert f"peer {ids.bob} rejected the handshake" in caught.value.message


@PRIVACY
def test_hello_is_fresh_and_does_not_contain_the_passphrase(passphrase):
    first, _ = pair(passphrase, passphrase)
    second, _ = pair(passphrase, passphrase)
    hello_1, hello_2 = first.start(), second.start()
    assert hello_1 != hello_2
    assert b"correct" not in hello_1


def test_proof_before_hello_is_a_protocol_error():
    alice, _bob = pair()
    alice.start()
    proof = bytes([AUTH_VERSION, AuthMessageType.PROOF]) + bytes(IDENTITY_PROOF_BYTES + 64)
    with pytest.raises(AuthError) as caught:
        alice.receive(proof)
    assert caught.value.kind == AuthErrorKind.PROTOCOL
    assert alice.failed


@PRIVACY
def test_reflected_hello_is_refused(passphrase):
    alice, _bob = pair(passphrase, passphrase)
    hello = alice.start()
    with pytest.raises(AuthError) as caught:
        alice.receive(hello)
    assert caught.value.kind == AuthErrorKind.PROTOCOL


@pytest.mark.parametrize("version", [1, 9])
def test_another_protocol_version_is_a_clear_error(version):
    alice, _bob = pair()
    alice.start()
    with pytest.raises(AuthError) as caught:
        alice.receive(bytes([version, 1, 1]))
    assert caught.value.kind == AuthErrorKind.INCOMPATIBLE
    assert f"speaks handshake version {version}" in caught.value.message
    assert "both peers need a compatible raftchat" in caught.value.message


def test_fingerprints_must_be_sha256_digests():
    with pytest.raises(ValueError, match="32 bytes"):
        Handshake(
            channel="room",
            identity=ALICE,
            peer_id=ids.bob,
            passphrase=None,
            local_fingerprint=b"short",
            remote_fingerprint=FP_B,
        )


@given(garbage=st.binary(max_size=240), private=st.booleans(), after_hello=st.booleans())
@settings(max_examples=150, deadline=None)
def test_garbage_raises_only_auth_error(garbage, private, after_hello):
    alice, bob = pair("pw" if private else None, "pw" if private else None)
    alice.start()
    if after_hello:
        alice.receive(bob.start())
    try:
        alice.receive(garbage)
    except AuthError as error:
        assert alice.failed and error.kind in AuthErrorKind
    assert not alice.complete


@given(data=st.data(), private=st.booleans())
@settings(max_examples=120, deadline=None)
def test_any_flipped_bit_in_a_proof_fails_it(data, private):
    passphrase = "pw" if private else None
    alice, bob = pair(passphrase, passphrase)
    proof_a, _ = proofs(alice, bob)
    position = data.draw(st.integers(2, len(proof_a) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    tampered = bytearray(proof_a)
    tampered[position] ^= 1 << bit
    with pytest.raises(AuthError) as caught:
        bob.receive(bytes(tampered))
    assert caught.value.kind in (
        AuthErrorKind.WRONG_PASSPHRASE,
        AuthErrorKind.WRONG_IDENTITY,
        AuthErrorKind.BAD_SIGNATURE,
        AuthErrorKind.INTERCEPTED,
    )
    assert not bob.complete


@given(data=st.data(), private=st.booleans())
@settings(max_examples=80, deadline=None)
def test_any_flipped_bit_in_a_hello_fails_the_proofs(data, private):
    # A hello changed on the way (nonce, mode, SPAKE2 message): the two sides sign
    # different transcripts, and neither accepts the other.
    passphrase = "pw" if private else None
    alice, bob = pair(passphrase, passphrase)
    hello_a, hello_b = alice.start(), bob.start()
    position = data.draw(st.integers(3, len(hello_a) - 1), label="position")
    tampered = bytearray(hello_a)
    tampered[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    [proof_a] = alice.receive(hello_b)
    try:
        [proof_b] = bob.receive(bytes(tampered))
    except AuthError:
        return  # e.g. not a point of the SPAKE2 group
    with pytest.raises(AuthError):
        alice.receive(proof_b)
    with pytest.raises(AuthError):
        bob.receive(proof_a)


# --- over real links ----------------------------------------------------------------------


class Network:
    """Peers on one relay, on the engines ``mode`` gives them (``mesh_utils.engine_of``);
    everything is closed cleanly at the end."""

    def __init__(self, relay: FakeRelay, mode: str = "aiortc") -> None:
        self.relay = relay
        self.mode = mode
        self.peers: list[Peer] = []

    def add(self, peer_id: str, passphrase: str | None, **changes) -> Peer:
        engine = engine_of(self.mode, len(self.peers))
        peer = make_peer(self.relay, peer_id, private_config(passphrase, **changes), webrtc=engine)
        self.peers.append(peer)
        return peer

    def add_impostor(self, impostor: Impostor, passphrase: str | None) -> Peer:
        """A mesh that joins under ``impostor.node_id`` without holding its key."""
        config = with_settings(
            private_config(passphrase), webrtc=engine_of(self.mode, len(self.peers))
        )
        mesh = Mesh(impostor, self.relay.endpoint(impostor.node_id), config)  # type: ignore[arg-type]
        peer = Peer(impostor.node_id, mesh)
        self.relay.join(impostor.node_id, mesh)
        self.peers.append(peer)
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.mesh.close()
        if isinstance(self.relay, InterceptingRelay):
            await self.relay.close()
        await wait_until(
            lambda: not pending_tasks(),
            CLOSE_WAIT_S,
            "tasks to finish after close",
            details=lambda: "\n".join(repr(task) for task in pending_tasks()),
        )


@pytest.fixture
async def net(webrtc):
    network = Network(FakeRelay(), webrtc)
    yield network
    await network.close()


@pytest.fixture
async def intercepted(webrtc):
    network = Network(InterceptingRelay(), webrtc)
    yield network
    await network.close()


def link_error(peer: Peer, other: str) -> AuthErrorKind | None:
    info = peer.mesh.links().get(other)
    return info.auth_error_kind if info and info.state == LinkState.FAILED else None


def test_passphrase_needs_a_channel_name():
    with pytest.raises(ValueError, match="needs the channel name"):
        MeshConfig(passphrase="secret")
    with pytest.raises(ValueError, match="non-empty"):
        MeshConfig(channel="room", passphrase="")
    assert "secret" not in repr(MeshConfig(channel="room", passphrase="secret"))


async def test_same_passphrase_connects_and_exchanges_messages(net):
    a, b = net.add(ids.a, "open sesame"), net.add(ids.b, "open sesame")
    link = a.mesh._links[ids.b]
    original_on_open = link.channel_open
    during_handshake = []

    def on_open(connection):
        original_on_open(connection)
        # The DataChannel is open, the handshake has only started: queued, not sent.
        during_handshake.append((a.state_of(ids.b), a.mesh.send(ids.b, b"early")))

    link.channel_open = on_open
    await wait_until(lambda: all_open([a, b]), 10, "authenticated links")
    assert during_handshake == [(LinkState.CONNECTING, True)]
    assert b.mesh.send(ids.a, b"hello a")
    await wait_until(lambda: b.received[ids.a] == [b"early"] and a.received[ids.b] == [b"hello a"])
    for peer, other in ((a, ids.b), (b, ids.a)):
        info = peer.mesh.links()[other]
        assert info.authenticated and info.auth_error is None
        assert info.unauthenticated_frames == 0


async def test_wrong_passphrase_fails_on_both_sides_and_no_message_crosses(net):
    a, b = net.add(ids.a, "right"), net.add(ids.b, "wrong")
    sent = []

    def try_send() -> bool:
        sent.append(a.mesh.send(ids.b, b"secret chat") | b.mesh.send(ids.a, b"secret chat"))
        return link_error(a, ids.b) is not None and link_error(b, ids.a) is not None

    await wait_until(try_send, 10, "both sides to reject the handshake")
    for peer, other in ((a, ids.b), (b, ids.a)):
        info = peer.mesh.links()[other]
        assert info.auth_error_kind == AuthErrorKind.WRONG_PASSPHRASE
        assert info.auth_error.startswith("wrong passphrase for channel 'room'")
        assert not info.authenticated and info.messages_received == 0
    assert a.received == {} and b.received == {}
    assert any(sent)  # messages were accepted into the queue during the handshake...
    assert a.mesh.links()[ids.b].messages_sent == 0  # ...and never left it


async def test_failed_handshakes_back_off_and_the_members_are_unaffected(net):
    a, b = net.add(ids.a, "right"), net.add(ids.b, "right")
    await wait_until(lambda: all_open([a, b]))
    failures: dict[int, float] = {}

    def record() -> bool:
        count = a.mesh.links()[ids.z].auth_failures
        failures.setdefault(count, time.monotonic())
        return count >= 3

    z = net.add(ids.z, "guess")  # z sorts last: a and b offer to it
    await wait_until(record, 15, "three failed handshakes")
    # The wait grows: 0.3 s, then 0.6 s (auth_retry_initial doubling).
    assert failures[2] - failures[1] >= 0.3 and failures[3] - failures[2] >= 0.6
    # During the penalty, the rejected peer cannot make us start over.
    ignored = a.mesh.links()[ids.z].ignored_signals
    a.mesh.handle_signal(ids.z, {"type": "restart", "session": None})
    assert a.mesh.links()[ids.z].ignored_signals == ignored + 1
    assert a.state_of(ids.z) == LinkState.FAILED
    a.mesh.reset_link(ids.z)
    assert a.state_of(ids.z) == LinkState.FAILED
    assert z.received == {}
    assert a.mesh.send(ids.b, b"members still talk")
    await wait_until(lambda: b.received[ids.a] == [b"members still talk"])
    assert a.mesh.links()[ids.b].connects == 1


async def test_peer_without_passphrase_cannot_join_a_private_channel(net):
    a, b = net.add(ids.a, "members only"), net.add(ids.b, None, channel="room")
    await wait_until(lambda: link_error(a, ids.b) and link_error(b, ids.a), 10, "both to fail")
    assert link_error(a, ids.b) == AuthErrorKind.PEER_HAS_NO_PASSPHRASE
    assert link_error(b, ids.a) == AuthErrorKind.PASSPHRASE_REQUIRED
    assert "requires a passphrase" in b.mesh.links()[ids.a].auth_error


async def test_signaling_server_joining_as_a_peer_is_refused(net):
    a, b = net.add(ids.a, "members only"), net.add(ids.b, "members only")
    await wait_until(lambda: all_open([a, b]))
    # The server announces a peer of its own, which guesses the passphrase.
    intruder = net.add(ids.m, "password123")
    await wait_until(
        lambda: all(
            link_error(x, y)
            for x, y in [(intruder, ids.a), (intruder, ids.b), (a, ids.m), (b, ids.m)]
        ),
        10,
        "intruder refused",
    )
    for member in (a, b):
        assert member.mesh.links()[ids.m].auth_error_kind == AuthErrorKind.WRONG_PASSPHRASE
        assert member.mesh.links()[ids.m].messages_received == 0
    assert intruder.received == {}
    assert a.mesh.broadcast(b"for members") == 1
    await wait_until(lambda: b.received[ids.a] == [b"for members"])


async def test_interception_of_an_open_channel_is_detected_and_reported(intercepted):
    # Without a passphrase too: the interceptor cannot sign for either end.
    a, b = intercepted.add(ids.a, None), intercepted.add(ids.b, None)
    await wait_until(lambda: link_error(a, ids.b) and link_error(b, ids.a), 10, "both to detect")
    for peer, other in ((a, ids.b), (b, ids.a)):
        info = peer.mesh.links()[other]
        assert info.auth_error_kind == AuthErrorKind.INTERCEPTED
        assert "intercepted" in info.auth_error and info.messages_received == 0
    assert sum(splice.forwarded for splice in intercepted.relay.splices) >= 4
    assert a.received == {} and b.received == {}


async def test_interception_of_a_private_channel_is_detected_and_reported(intercepted):
    a, b = intercepted.add(ids.a, "shared"), intercepted.add(ids.b, "shared")
    await wait_until(lambda: link_error(a, ids.b) and link_error(b, ids.a), 10, "both to detect it")
    for peer, other in ((a, ids.b), (b, ids.a)):
        info = peer.mesh.links()[other]
        assert info.auth_error_kind == AuthErrorKind.INTERCEPTED
        assert "intercepted" in info.auth_error and info.messages_received == 0
    # The relay did forward the handshake: the PAKE itself succeeded end to end.
    assert sum(splice.forwarded for splice in intercepted.relay.splices) >= 4
    assert a.received == {} and b.received == {}


@PRIVACY
@pytest.mark.parametrize("presents", ["own_key", "victims_key"])
async def test_a_peer_cannot_take_another_peers_id_on_a_link(net, passphrase, presents):
    # The signaling server (or anyone) announces an impostor under b's id, which b
    # never joined with: the impostor knows the passphrase but not b's private key.
    a = net.add(ids.a, passphrase)
    public_key = MALLORY.public_key if presents == "own_key" else identity_of(ids.b).public_key
    impostor = net.add_impostor(Impostor(ids.b, public_key, MALLORY), passphrase)
    await wait_until(lambda: link_error(a, ids.b), 10, "the impostor refused")
    info = a.mesh.links()[ids.b]
    expected = (
        AuthErrorKind.WRONG_IDENTITY if presents == "own_key" else AuthErrorKind.BAD_SIGNATURE
    )
    assert info.auth_error_kind == expected and info.auth_failures >= 1
    assert not info.authenticated and info.messages_received == 0
    # In a private channel the failure costs the impostor's guess budget, like a wrong guess.
    charged = ids.b in a.mesh._guess_throttle._peers
    assert charged == (passphrase is not None)
    assert a.mesh.send(ids.b, b"for b only") is False
    assert not any(change.state == LinkState.OPEN for peer, change in a.changes if peer == ids.b)
    assert a.received == {} and impostor.received == {}


async def test_guessing_through_many_invented_peers_is_throttled_by_address(net):
    settings = {
        "failed_handshakes_per_address_per_minute": 1.0,
        "failed_handshakes_per_peer_per_minute": 100.0,
    }
    a = net.add(ids.a, "members only", **settings)
    b = net.add(ids.b, "members only", **settings)
    await wait_until(lambda: all_open([a, b]))
    first = net.add(ids.m1, "guess one")
    await wait_until(lambda: link_error(a, ids.m1) == AuthErrorKind.WRONG_PASSPHRASE, 10)
    # The next invented peer from that address gets no handshake at all: no guess is spent.
    second = net.add(ids.m2, "guess two")
    await wait_until(lambda: link_error(a, ids.m2) == AuthErrorKind.THROTTLED, 10, "throttled")
    # libwebrtc does not tell a peer-reflexive candidate's address: such peers share one.
    address = "127.0.0.1" if net.mode == "aiortc" else ""
    assert f"from address {address}" in a.mesh.links()[ids.m2].auth_error
    assert second.mesh.links()[ids.a].auth_error_kind != AuthErrorKind.WRONG_PASSPHRASE
    assert first.received == {} and second.received == {}
    await assert_members_talk(a, b)
    # A member from that address that proved the passphrase before still gets back in.
    a.mesh.reset_link(ids.b)
    await wait_until(lambda: a.mesh.links()[ids.b].connects == 2, 15, "b back in")
    await assert_members_talk(a, b)
    # (Peers from other addresses are not affected: test_the_guess_throttle_is_per_...)


class _RejectAtOnce(Handshake):
    """An attacker that answers every handshake with REJECT(wrong_passphrase) at once,
    without running SPAKE2: it learns nothing, and must not lock anyone else out."""

    def start(self) -> bytes:
        super().start()
        return encode_reject(AuthErrorKind.WRONG_PASSPHRASE)


async def test_a_reject_costs_the_peer_that_sends_it_not_the_others(net, monkeypatch):
    import raftchat.net.link as link_module

    def handshake(**kwargs):
        kind = _RejectAtOnce if kwargs["identity"].node_id == ids.m else Handshake
        return kind(**kwargs)

    monkeypatch.setattr(link_module, "Handshake", handshake)
    settings = {
        "failed_handshakes_per_peer_per_minute": 1.0,
        "failed_handshakes_per_address_per_minute": 100.0,
    }
    a = net.add(ids.a, "members only", **settings)
    net.add(ids.m, "members only", **settings)  # it even knows the passphrase
    await wait_until(lambda: a.mesh.links()[ids.m].auth_failures >= 1, 10, "m's REJECT")
    assert a.mesh.links()[ids.m].auth_error_kind == AuthErrorKind.WRONG_PASSPHRASE
    await wait_until(lambda: link_error(a, ids.m) == AuthErrorKind.THROTTLED, 10, "m throttled")
    assert f"peer {ids.m} failed the channel handshake" in a.mesh.links()[ids.m].auth_error
    # Its budget is spent, the node's is not: a newcomer from the same address gets in.
    c = net.add(ids.c, "members only", **settings)
    await wait_until(lambda: all_open([a, c]), 15, "the newcomer admitted")
    await assert_members_talk(a, c)


def test_the_guess_throttle_is_per_peer_and_per_address():
    from raftchat.net.guess_throttle import GuessThrottle

    throttle = GuessThrottle(per_peer_per_minute=2, per_address_per_minute=3)
    for _ in range(2):
        assert throttle.refusal("m", "192.0.2.1", 0.0) is None
        throttle.charge("m", "192.0.2.1", 0.0)
    assert "peer m" in throttle.refusal("m", "192.0.2.1", 0.0)
    assert throttle.refusal("x", "198.51.100.9", 0.0) is None  # nobody else pays
    throttle.charge("m2", "192.0.2.1", 0.0)  # a new id from the same address
    assert "address 192.0.2.1" in throttle.refusal("m3", "192.0.2.1", 0.0)
    throttle.vouch("member")
    assert throttle.refusal("member", "192.0.2.1", 0.0) is None
    assert throttle.refusal("m", "192.0.2.1", 30.0) is None  # one a minute comes back


async def assert_members_talk(a: Peer, b: Peer) -> None:
    assert a.mesh.send(b.peer_id, b"members still talk")
    await wait_until(lambda: b"members still talk" in b.received[a.peer_id])
