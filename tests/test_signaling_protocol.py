"""Signaling frames: the challenge and the signed hello, and the role hints (hello, role,
welcome, peer_role)."""

from __future__ import annotations

import json

import pytest

from raftchat.net.identity import NodeIdentity
from raftchat.net.signaling.protocol import (
    ROLES,
    Challenge,
    ErrorCode,
    Hello,
    PeerJoined,
    PeerRole,
    ProtocolError,
    RoleUpdate,
    Welcome,
    encode_challenge,
    encode_hello,
    encode_peer_joined,
    encode_peer_role,
    encode_role,
    encode_welcome,
    parse_client_frame,
    parse_server_frame,
)

ALICE = "alice-peer-id-0000"
BOB = "bob-peer-id-000000"


def test_roles_are_the_three_hints() -> None:
    assert {"voter", "learner", "none"} == ROLES


IDENTITY = NodeIdentity.generate()
SIGNATURE = IDENTITY.sign(b"anything")


@pytest.mark.parametrize("role", sorted(ROLES))
def test_client_frames_with_a_role_round_trip(role: str) -> None:
    peer_id, key = IDENTITY.node_id, IDENTITY.public_key
    text = encode_hello(peer_id, key, SIGNATURE, role)
    assert parse_client_frame(text) == Hello(peer_id, key, SIGNATURE, role)
    assert parse_client_frame(encode_role(role)) == RoleUpdate(role)


def test_hello_without_role_has_none_and_no_field() -> None:
    text = encode_hello(IDENTITY.node_id, IDENTITY.public_key, SIGNATURE)
    assert "role" not in json.loads(text)
    assert json.loads(text)["public_key"] == IDENTITY.public_key.hex()
    assert parse_client_frame(text) == Hello(IDENTITY.node_id, IDENTITY.public_key, SIGNATURE, None)


def test_the_challenge_round_trips_and_needs_16_bytes_in_hex() -> None:
    nonce = bytes(range(16))
    assert json.loads(encode_challenge(nonce)) == {"type": "challenge", "nonce": nonce.hex()}
    assert parse_server_frame(encode_challenge(nonce)) == Challenge(nonce)
    for bad in ("00" * 15, "00" * 17, "ZZ" * 16, "AA" * 16, 5, None):
        with pytest.raises(ProtocolError) as info:
            parse_server_frame(json.dumps({"type": "challenge", "nonce": bad}))
        assert info.value.code == ErrorCode.BAD_FIELD


def test_a_hello_without_key_or_signature_is_bad_field() -> None:
    hello = json.loads(encode_hello(IDENTITY.node_id, IDENTITY.public_key, SIGNATURE))
    for field in ("public_key", "signature"):
        for value in (None, "", hello[field][:-2], hello[field].upper(), 7):
            with pytest.raises(ProtocolError, match=f"'{field}' must be") as info:
                parse_client_frame(json.dumps({**hello, field: value}))
            assert info.value.code == ErrorCode.BAD_FIELD
    with pytest.raises(ProtocolError):  # a hello of an earlier release: a token, no key
        parse_client_frame(json.dumps({"type": "hello", "peer_id": "a" * 20, "token": "t" * 20}))


def test_the_welcome_token_is_optional_and_checked() -> None:
    text = encode_welcome("room", ALICE, [], token="t" * 43)
    assert parse_server_frame(text).token == "t" * 43
    assert parse_server_frame(encode_welcome("room", ALICE, [])).token is None
    bad = {**json.loads(text), "token": "no spaces allowed"}
    assert parse_server_frame(json.dumps(bad)).token is None


@pytest.mark.parametrize("role", ["king", "Voter", "", 3, None, ["voter"], {"voter": 1}])
def test_client_frames_with_an_invalid_role_are_bad_field(role: object) -> None:
    hello = {
        **json.loads(encode_hello(IDENTITY.node_id, IDENTITY.public_key, SIGNATURE)),
        "role": role,
    }
    for frame in (hello, {"type": "role", "role": role}):
        with pytest.raises(ProtocolError) as info:
            parse_client_frame(json.dumps(frame))
        assert info.value.code == ErrorCode.BAD_FIELD
        assert "'role' must be one of learner, none, voter" in info.value.message


def test_role_frame_needs_a_role() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame('{"type": "role"}')
    assert info.value.code == ErrorCode.BAD_FIELD


def test_welcome_carries_roles_and_stays_valid_without_them() -> None:
    text = encode_welcome("room", ALICE, [BOB], {BOB: "voter"})
    assert json.loads(text)["roles"] == {BOB: "voter"}
    assert parse_server_frame(text) == Welcome("room", ALICE, frozenset({BOB}), {BOB: "voter"})
    assert json.loads(encode_welcome("room", ALICE, [BOB]))["roles"] == {}
    old_server = {"type": "welcome", "channel": "room", "peer_id": ALICE, "peers": [BOB]}
    assert parse_server_frame(json.dumps(old_server)) == Welcome("room", ALICE, frozenset({BOB}))


@pytest.mark.parametrize(
    "roles",
    [
        {BOB: "king"},
        {"short": "voter"},
        {BOB: None},
        {BOB: 1},
        ["voter"],
        "voter",
        None,
    ],
)
def test_welcome_drops_invalid_role_hints_only(roles: object) -> None:
    good = "carol-peer-id-0000"
    frame = {"type": "welcome", "channel": "room", "peer_id": ALICE, "peers": [BOB, good]}
    frame["roles"] = {**roles, good: "learner"} if isinstance(roles, dict) else roles
    welcome = parse_server_frame(json.dumps(frame))
    assert isinstance(welcome, Welcome)
    assert welcome.peers == {BOB, good}
    assert welcome.roles == ({good: "learner"} if isinstance(roles, dict) else {})


def test_peer_joined_role_is_optional_and_an_invalid_one_is_dropped() -> None:
    assert "role" not in json.loads(encode_peer_joined(BOB))
    assert parse_server_frame(encode_peer_joined(BOB)) == PeerJoined(BOB, None)
    assert parse_server_frame(encode_peer_joined(BOB, "learner")) == PeerJoined(BOB, "learner")
    bad = json.dumps({"type": "peer_joined", "peer_id": BOB, "role": "king"})
    assert parse_server_frame(bad) == PeerJoined(BOB, None)


def test_peer_role_round_trips_and_an_invalid_one_is_refused() -> None:
    assert parse_server_frame(encode_peer_role(BOB, "none")) == PeerRole(BOB, "none")
    for frame in (
        {"type": "peer_role", "peer_id": BOB, "role": "king"},
        {"type": "peer_role", "peer_id": BOB},
        {"type": "peer_role", "peer_id": "short", "role": "voter"},
    ):
        with pytest.raises(ProtocolError) as info:
            parse_server_frame(json.dumps(frame))
        assert info.value.code == ErrorCode.BAD_FIELD


def test_role_frames_are_not_accepted_from_the_wrong_side() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_server_frame(encode_role("voter"))
    assert info.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(encode_peer_role(BOB, "voter"))
    assert info.value.code == ErrorCode.UNKNOWN_TYPE
