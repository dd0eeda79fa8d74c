"""The signaling wire protocol: frame types, syntax rules and limits shared by server and client.

Every frame is one WebSocket *text* message holding a JSON object with a ``type`` field.

Two WebSockets carry the same frames. A channel's own (``WS_PATH_TEMPLATE``) is one
*session*: one peer in one channel. A shared one (``SHARED_WS_PATH``) carries a session per
channel the client opens: the client sends ``{"channel": NAME, "type": "open"}``, the server
answers with that session's challenge, and from then on every frame of the session, both
ways, carries the ``channel`` tag (``{"channel": NAME, "type": "leave"}`` ends it). Only
``keepalive`` is untagged there: liveness is the socket's. An error frame tagged with a
channel is about that session; a fatal one ends the session and the socket stays. Below,
frames are shown untagged, as on a channel's own socket.

Server to client, first, for every new session::

    {"type": "challenge", "nonce": HEX}                       16 random bytes (32 hex digits),
                                                              new for every session

Client to server::

    {"type": "hello", "peer_id": ID, "public_key": HEX, "signature": HEX, "role": ROLE}
                                                              first frame, exactly once;
                                                              "role" is optional
    {"type": "role", "role": ROLE}                            change the role, after hello
    {"type": "signal", "to": ID, "payload": {...}}            relay an opaque object to a peer
    {"type": "keepalive"}                                     "still here", after hello
    {"type": "witness", "cluster": CLUSTER, "founded_ms": MS,
     "messages": [BASE64, ...]}                               Raft messages for the witness

Server to client::

    {"type": "welcome", "channel": NAME, "peer_id": ID, "peers": [ID, ...],
     "roles": {ID: ROLE, ...}, "witness": ID, "token": TOKEN}
                                                              the other peers (and the roles
                                                              of those that announced one);
                                                              "witness" only if it hosts one;
                                                              "token" for GET .../peers
    {"type": "peer_joined", "peer_id": ID, "role": ROLE}      "role" only if its hello had one
    {"type": "peer_role", "peer_id": ID, "role": ROLE}        a peer's role was set or changed
    {"type": "peer_left", "peer_id": ID}
    {"type": "signal", "from": ID, "payload": {...}}          sender stamped by the server
    {"type": "witness", "cluster": CLUSTER, "founded_ms": MS,
     "messages": [BASE64, ...]}                               the witness's answers
    {"type": "error", "code": CODE, "message": TEXT, "fatal": BOOL}

Ids are proven, not claimed. A peer id is derived from an Ed25519 public key
(``net/identity.py``: the first 32 hex digits of a domain-separated SHA-256 of the key). A
hello carries the key (64 hex digits) and the signature (128 hex digits) of
``identity.signaling_hello_message(nonce, channel, peer_id)``, over the nonce of *this*
WebSocket's challenge. The server refuses, with a fatal error, a hello whose id is not the
key's (``id_not_of_key``) or whose signature does not verify (``bad_signature``: e.g. one
signed for another connection's challenge, so a recorded hello cannot be replayed). A valid
hello for an id whose socket is still open replaces that socket (``replaced``): only the
key's holder can say it, so nobody can take another peer's id, present or gone. The
welcome's ``token`` (random, per connection) lets that peer list the channel's peers over
HTTP (``Authorization: Bearer PEER_ID:TOKEN``).

A server may host a *witness* for the channels (see ``raftchat.witness``): a tie-breaking
Raft vote that keeps only the (index, term) of entries. Its id is in every welcome; a
peer's ``witness`` frames carry Raft messages (each one base64 of the Raft codec's bytes)
for the witness of its cluster (``cluster``: 32 hex digits, and when it was founded), and
the witness answers the same way. The server stamps the sender: the witness takes a
message only if its ``sender`` is the peer whose socket it came in on. A server without a
witness answers ``witness_unavailable``. The witness's id is reserved: no peer may say
hello with it (``id_taken``; a derived id cannot be one anyway).

A fatal error is followed by the server closing the socket. Unknown extra fields in a frame
are ignored (so newer clients can add some); a ``from`` field sent by a client is ignored.

Liveness: a joined client must send *some* frame at least every ``KEEPALIVE_INTERVAL``
seconds, a ``keepalive`` when it has nothing else to say (the server does not answer it).
A peer silent for the server's ``idle_timeout`` (by default three intervals) is dropped
with the fatal error ``idle_timeout`` and reported as gone to the others. WebSocket pings
do not count: a client library answers them on its own, so they only prove the TCP
connection is up, not that a raftchat client is behind it. A connection must say hello
within the server's ``hello_timeout`` however many pings it answers.

Refusals before the WebSocket exists: a client address that holds too many connections,
or a server that holds too many, gets an HTTP ``503`` whose ``ERROR_HEADER`` header (and
JSON body ``{"error": CODE, "message": TEXT}``) names the code, ``too_many_connections`` or
``server_full``. Every other limit of the server (``ServerConfig``) answers with an
error frame.

A ROLE is one of ``ROLES``: the peer's place in the channel's Raft cluster as it says itself
("voter", "learner", or "none" for not a member yet). Roles are *hints*: the server passes
them on unchecked, so a node uses them only to choose which peers to link to first (a
newcomer links to the voters instead of everyone), never to decide anything in Raft. A
client sending an unknown role gets ``bad_field``; a client reading one from the server
drops just that hint (an old server sends no ``roles`` at all, which is fine too).

Channel names are case-insensitive: they are normalized to lower case and then must match
``CHANNEL_NAME_PATTERN``. Peer ids and tokens are case-sensitive url-safe strings; keys,
signatures and nonces are lower-case hex.

This module does no I/O: it only parses, validates and builds frames.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from raftchat.limits import CHANNEL_NAME_PATTERN, CHANNEL_NAME_RULE, PEER_ID_PATTERN
from raftchat.net.identity import NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,256}")
PUBLIC_KEY_PATTERN = re.compile(f"[0-9a-f]{{{2 * PUBLIC_KEY_BYTES}}}")
SIGNATURE_PATTERN = re.compile(f"[0-9a-f]{{{2 * SIGNATURE_BYTES}}}")
NONCE_PATTERN = re.compile(f"[0-9a-f]{{{2 * NONCE_BYTES}}}")
CLUSTER_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
MAX_WITNESS_MESSAGES = 256
"""Raft messages in one ``witness`` frame, at most (the frame size limit applies too)."""
MAX_FOUNDED_MS = 2**53
"""Latest founding time a ``witness`` frame may name (JSON numbers stay exact below it)."""
ROLES = frozenset({"voter", "learner", "none"})

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
"""Largest text frame (UTF-8 bytes) either side accepts; SDP offers are a few KiB."""

KEEPALIVE_INTERVAL = 20.0
"""Seconds a joined client may go without sending a frame; it sends ``keepalive``."""

ERROR_HEADER = "X-Raftchat-Error"
"""HTTP header naming the error code of a refusal answered before any WebSocket."""

WS_PATH_TEMPLATE = "/channels/{channel}/ws"
"""A WebSocket for one channel: frames carry no ``channel`` tag."""
SHARED_WS_PATH = "/ws"
"""A WebSocket shared by sessions in several channels: every session frame is tagged."""


class FrameType(StrEnum):
    CHALLENGE = "challenge"
    HELLO = "hello"
    ROLE = "role"
    SIGNAL = "signal"
    KEEPALIVE = "keepalive"
    WITNESS = "witness"
    OPEN = "open"
    LEAVE = "leave"
    WELCOME = "welcome"
    PEER_JOINED = "peer_joined"
    PEER_ROLE = "peer_role"
    PEER_LEFT = "peer_left"
    ERROR = "error"


class ErrorCode(StrEnum):
    """The ``code`` of an error frame. Fatal ones are in ``FATAL_ERROR_CODES``."""

    BAD_JSON = "bad_json"  # not valid JSON (or not UTF-8 text)
    BINARY_FRAME = "binary_frame"  # a binary WebSocket message
    NOT_OBJECT = "not_object"  # JSON, but not an object
    BAD_FIELD = "bad_field"  # missing field or wrong type/syntax
    UNKNOWN_TYPE = "unknown_type"
    HELLO_REQUIRED = "hello_required"  # anything but hello before hello
    ALREADY_JOINED = "already_joined"  # a second hello
    UNKNOWN_PEER = "unknown_peer"  # signal to an id not in this channel
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"  # frame dropped; slow down
    FLOODING = "flooding"  # rate limited too often: closed
    INVALID_CHANNEL = "invalid_channel"
    ID_TAKEN = "id_taken"  # the witness's id: reserved
    ID_NOT_OF_KEY = "id_not_of_key"  # the hello's id is not derived from its public key
    BAD_SIGNATURE = "bad_signature"  # the hello's signature fails over this socket's nonce
    CHANNEL_FULL = "channel_full"
    TOO_MANY_PEERS_FROM_ADDRESS = "too_many_peers_from_address"  # in this channel
    TOO_MANY_CHANNELS = "too_many_channels"
    TOO_MANY_CHANNELS_FROM_ADDRESS = "too_many_channels_from_address"
    JOIN_RATE_LIMITED = "join_rate_limited"  # too many hellos from this address lately
    SERVER_FULL = "server_full"  # too many connections (HTTP 503)
    TOO_MANY_CONNECTIONS = "too_many_connections"  # from this address (HTTP 503)
    HELLO_TIMEOUT = "hello_timeout"
    IDLE_TIMEOUT = "idle_timeout"  # no frame (not even a keepalive) for too long
    REPLACED = "replaced"  # the same peer connected again from elsewhere
    SLOW_CONSUMER = "slow_consumer"  # did not read its frames: closed
    SHUTTING_DOWN = "shutting_down"
    WITNESS_UNAVAILABLE = "witness_unavailable"  # no witness here (or none for that cluster)
    NO_SESSION = "no_session"  # shared socket: a frame for a channel it has not opened
    TOO_MANY_SESSIONS = "too_many_sessions"  # shared socket: sessions on this socket
    TOO_MANY_SESSIONS_FROM_ADDRESS = "too_many_sessions_from_address"  # over all sockets


FATAL_ERROR_CODES = frozenset(
    {
        ErrorCode.FLOODING,
        ErrorCode.INVALID_CHANNEL,
        ErrorCode.ID_TAKEN,
        ErrorCode.ID_NOT_OF_KEY,
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.CHANNEL_FULL,
        ErrorCode.TOO_MANY_PEERS_FROM_ADDRESS,
        ErrorCode.TOO_MANY_CHANNELS,
        ErrorCode.TOO_MANY_CHANNELS_FROM_ADDRESS,
        ErrorCode.JOIN_RATE_LIMITED,
        ErrorCode.SERVER_FULL,
        ErrorCode.TOO_MANY_CONNECTIONS,
        ErrorCode.HELLO_TIMEOUT,
        ErrorCode.IDLE_TIMEOUT,
        ErrorCode.REPLACED,
        ErrorCode.SLOW_CONSUMER,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.TOO_MANY_SESSIONS,
        ErrorCode.TOO_MANY_SESSIONS_FROM_ADDRESS,
    }
)
"""An error frame with one of these codes ends what it is about: a tagged one the session
of its channel (the shared socket stays), an untagged one the WebSocket."""


class ProtocolError(Exception):
    """A frame or name that breaks the protocol; ``code`` says which rule."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- names


def normalize_channel(name: str) -> str:
    """Return the canonical (lower-case) channel name, or raise ProtocolError."""
    if isinstance(name, str):
        lowered = name.lower()
        if CHANNEL_NAME_PATTERN.fullmatch(lowered):
            return lowered
    raise ProtocolError(
        ErrorCode.INVALID_CHANNEL,
        f"invalid channel name {name!r}: {CHANNEL_NAME_RULE}",
    )


def is_valid_peer_id(peer_id: object) -> bool:
    return isinstance(peer_id, str) and PEER_ID_PATTERN.fullmatch(peer_id) is not None


def is_valid_token(token: object) -> bool:
    return isinstance(token, str) and TOKEN_PATTERN.fullmatch(token) is not None


def is_valid_role(role: object) -> bool:
    return isinstance(role, str) and role in ROLES


def new_token() -> str:
    """A random secret for one connection's HTTP requests (43 url-safe characters)."""
    return secrets.token_urlsafe(32)


def new_channel_name() -> str:
    """A random valid channel name, hard to guess."""
    return secrets.token_hex(8)


# ---------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Challenge:
    """The server's nonce for this WebSocket: the client's hello signs it."""

    nonce: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    peer_id: str
    public_key: bytes
    """The raw Ed25519 public key whose derived id ``peer_id`` must be."""
    signature: bytes
    """Over ``identity.signaling_hello_message(nonce, channel, peer_id)``."""
    role: str | None = None


@dataclass(frozen=True, slots=True)
class RoleUpdate:
    """A client announces its (new) role to the other peers."""

    role: str


@dataclass(frozen=True, slots=True)
class SignalRequest:
    """A client asks the server to relay ``payload`` to ``to``."""

    to: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Keepalive:
    """A joined client says it is still there."""


@dataclass(frozen=True, slots=True)
class WitnessRelay:
    """Raft messages to or from the witness of one cluster of the channel."""

    cluster_id: str
    founded_ms: int
    messages: tuple[bytes, ...]
    """Each one message in the Raft codec, opaque to the signaling layer."""


@dataclass(frozen=True, slots=True)
class Welcome:
    channel: str
    peer_id: str
    peers: frozenset[str]
    roles: dict[str, str] = field(default_factory=dict)
    """Announced roles by peer id; entries that are not valid hints are left out."""
    witness: str | None = None
    """The id of the witness this server hosts (None: it hosts none)."""
    token: str | None = None
    """This connection's token for ``GET /channels/<channel>/peers``."""


@dataclass(frozen=True, slots=True)
class PeerJoined:
    peer_id: str
    role: str | None = None


@dataclass(frozen=True, slots=True)
class PeerRole:
    peer_id: str
    role: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    peer_id: str


@dataclass(frozen=True, slots=True)
class RelayedSignal:
    """A payload relayed by the server; ``sender`` is the authenticated peer id."""

    sender: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    message: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Shared socket: start a session in the frame's channel (the server challenges it)."""


@dataclass(frozen=True, slots=True)
class LeaveSession:
    """Shared socket: end the session in the frame's channel (the peer leaves it)."""


@dataclass(frozen=True, slots=True)
class Tagged:
    """A frame with the ``channel`` it is tagged with (None: untagged)."""

    channel: str | None
    frame: Any


ClientFrame = (
    Hello | RoleUpdate | SignalRequest | Keepalive | WitnessRelay | OpenSession | LeaveSession
)
ServerFrame = (
    Challenge
    | Welcome
    | PeerJoined
    | PeerRole
    | PeerLeft
    | RelayedSignal
    | ErrorFrame
    | WitnessRelay
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_object(text: str) -> dict[str, Any]:
    """Parse one frame's JSON text into an object, or raise ProtocolError."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(
            ErrorCode.NOT_OBJECT, f"frame must be a JSON object, got {type(value).__name__}"
        )
    return value


def _frame_type(obj: dict[str, Any]) -> str:
    frame_type = obj.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "frame needs a string field 'type'")
    return frame_type


def _peer_id_field(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if not is_valid_peer_id(value):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"field {field!r} must be a peer id of 16-64 characters A-Z, a-z, 0-9, '_' or '-'",
        )
    return value


def _hex_field(obj: dict[str, Any], field: str, pattern: re.Pattern[str]) -> bytes:
    value = obj.get(field)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        digits = pattern.pattern.rpartition("{")[2].rstrip("}")
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"field {field!r} must be {digits} lower-case hex digits"
        )
    return bytes.fromhex(value)


def _role_field(obj: dict[str, Any]) -> str:
    role = obj.get("role")
    if not is_valid_role(role):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"field 'role' must be one of {', '.join(sorted(ROLES))}"
        )
    return role


def _role_hints(value: object) -> dict[str, str]:
    """The valid ``peer id -> role`` entries of a server's ``roles`` field; the rest is
    dropped, since a bad hint must not cost the client its welcome."""
    if not isinstance(value, dict):
        return {}
    return {
        peer: role for peer, role in value.items() if is_valid_peer_id(peer) and is_valid_role(role)
    }


def _payload_field(obj: dict[str, Any]) -> dict[str, Any]:
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "field 'payload' must be a JSON object")
    return payload


def _witness_relay(obj: dict[str, Any]) -> WitnessRelay:
    cluster = obj.get("cluster")
    founded = obj.get("founded_ms")
    messages = obj.get("messages")
    if not isinstance(cluster, str) or not CLUSTER_ID_PATTERN.fullmatch(cluster):
        raise ProtocolError(ErrorCode.BAD_FIELD, "field 'cluster' must be 32 hex digits")
    if type(founded) is not int or not 0 <= founded <= MAX_FOUNDED_MS:
        raise ProtocolError(ErrorCode.BAD_FIELD, "field 'founded_ms' must be an integer >= 0")
    if not isinstance(messages, list) or not 0 < len(messages) <= MAX_WITNESS_MESSAGES:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"field 'messages' must be a list of 1 to {MAX_WITNESS_MESSAGES} base64 strings",
        )
    decoded = []
    for message in messages:
        try:
            if not isinstance(message, str):
                raise ValueError
            decoded.append(base64.b64decode(message, validate=True))
        except (ValueError, binascii.Error):
            raise ProtocolError(
                ErrorCode.BAD_FIELD, "field 'messages' must hold base64 strings"
            ) from None
    return WitnessRelay(cluster, founded, tuple(decoded))


def _channel_tag(obj: dict[str, Any]) -> str | None:
    """A shared socket's ``channel`` tag: absent, or a channel name in canonical form."""
    if "channel" not in obj:
        return None
    channel = obj["channel"]
    if not isinstance(channel, str) or not CHANNEL_NAME_PATTERN.fullmatch(channel):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"field 'channel' must be a channel name in lower case: {CHANNEL_NAME_RULE}",
        )
    return channel


def parse_client_frame(text: str) -> ClientFrame:
    """Validate a frame sent by a client on a channel's own WebSocket (server side)."""
    return _client_frame(decode_object(text))


def parse_tagged_client_frame(text: str) -> Tagged:
    """Validate a frame sent by a client on a shared WebSocket (server side). The channel
    tag is checked first, so a frame whose tag is valid gets errors naming its channel."""
    obj = decode_object(text)
    return Tagged(_channel_tag(obj), obj)


def client_frame_of(tagged: Tagged) -> ClientFrame:
    """The frame inside what :func:`parse_tagged_client_frame` returned; raises
    ProtocolError for a frame that breaks the rules."""
    return _client_frame(tagged.frame)


def _client_frame(obj: dict[str, Any]) -> ClientFrame:
    frame_type = _frame_type(obj)
    if frame_type == FrameType.OPEN:
        return OpenSession()
    if frame_type == FrameType.LEAVE:
        return LeaveSession()
    if frame_type == FrameType.HELLO:
        return Hello(
            _peer_id_field(obj, "peer_id"),
            _hex_field(obj, "public_key", PUBLIC_KEY_PATTERN),
            _hex_field(obj, "signature", SIGNATURE_PATTERN),
            _role_field(obj) if "role" in obj else None,
        )
    if frame_type == FrameType.ROLE:
        return RoleUpdate(_role_field(obj))
    if frame_type == FrameType.SIGNAL:
        return SignalRequest(_peer_id_field(obj, "to"), _payload_field(obj))
    if frame_type == FrameType.KEEPALIVE:
        return Keepalive()
    if frame_type == FrameType.WITNESS:
        return _witness_relay(obj)
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:40]!r}")


def parse_server_frame(text: str) -> ServerFrame:
    """Validate a frame sent by the server (client side)."""
    return _server_frame(decode_object(text))


def parse_tagged_server_frame(text: str) -> Tagged:
    """Validate a frame sent by the server on a shared WebSocket (client side)."""
    obj = decode_object(text)
    return Tagged(_channel_tag(obj), _server_frame(obj))


def _server_frame(obj: dict[str, Any]) -> ServerFrame:
    frame_type = _frame_type(obj)
    if frame_type == FrameType.CHALLENGE:
        return Challenge(_hex_field(obj, "nonce", NONCE_PATTERN))
    if frame_type == FrameType.WELCOME:
        channel = obj.get("channel")
        peers = obj.get("peers")
        if not isinstance(channel, str) or not isinstance(peers, list):
            raise ProtocolError(ErrorCode.BAD_FIELD, "welcome needs 'channel' and 'peers'")
        if not all(is_valid_peer_id(peer) for peer in peers):
            raise ProtocolError(ErrorCode.BAD_FIELD, "welcome 'peers' must be peer ids")
        peer_id = _peer_id_field(obj, "peer_id")
        witness = obj.get("witness")
        token = obj.get("token")
        return Welcome(
            channel,
            peer_id,
            frozenset(peers),
            _role_hints(obj.get("roles")),
            witness if is_valid_peer_id(witness) and witness not in peers else None,
            token if is_valid_token(token) else None,
        )
    if frame_type == FrameType.PEER_JOINED:
        role = obj.get("role")
        return PeerJoined(_peer_id_field(obj, "peer_id"), role if is_valid_role(role) else None)
    if frame_type == FrameType.PEER_ROLE:
        return PeerRole(_peer_id_field(obj, "peer_id"), _role_field(obj))
    if frame_type == FrameType.PEER_LEFT:
        return PeerLeft(_peer_id_field(obj, "peer_id"))
    if frame_type == FrameType.SIGNAL:
        return RelayedSignal(_peer_id_field(obj, "from"), _payload_field(obj))
    if frame_type == FrameType.WITNESS:
        return _witness_relay(obj)
    if frame_type == FrameType.ERROR:
        code = obj.get("code")
        message = obj.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError(ErrorCode.BAD_FIELD, "error needs string 'code' and 'message'")
        fatal = obj.get("fatal")
        return ErrorFrame(code, message, fatal if isinstance(fatal, bool) else False)
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:40]!r}")


def _dump(obj: dict[str, Any], channel: str | None = None) -> str:
    """The frame's JSON text; with ``channel``, tagged for that session of a shared
    connection (the tag comes first, so a reader sees at once where it belongs)."""
    if channel is not None:
        obj = {"channel": channel, **obj}
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def encode_challenge(nonce: bytes, *, channel: str | None = None) -> str:
    return _dump({"type": FrameType.CHALLENGE, "nonce": nonce.hex()}, channel)


def encode_hello(
    peer_id: str,
    public_key: bytes,
    signature: bytes,
    role: str | None = None,
    *,
    channel: str | None = None,
) -> str:
    frame = {
        "type": FrameType.HELLO,
        "peer_id": peer_id,
        "public_key": public_key.hex(),
        "signature": signature.hex(),
    }
    if role is not None:
        frame["role"] = role
    return _dump(frame, channel)


def encode_role(role: str, *, channel: str | None = None) -> str:
    return _dump({"type": FrameType.ROLE, "role": role}, channel)


def encode_open(channel: str) -> str:
    return _dump({"type": FrameType.OPEN}, channel)


def encode_leave(channel: str) -> str:
    return _dump({"type": FrameType.LEAVE}, channel)


def encode_keepalive() -> str:
    return _dump({"type": FrameType.KEEPALIVE})


def encode_signal_request(to: str, payload: dict[str, Any], *, channel: str | None = None) -> str:
    return _dump({"type": FrameType.SIGNAL, "to": to, "payload": payload}, channel)


def encode_welcome(
    channel: str,
    peer_id: str,
    peers: list[str],
    roles: dict[str, str] | None = None,
    witness: str | None = None,
    token: str | None = None,
    *,
    tagged: bool = False,
) -> str:
    """``tagged``: for a session of a shared connection (the ``channel`` field then
    comes first, as in every tagged frame)."""
    frame: dict[str, Any] = {
        "type": FrameType.WELCOME,
        "channel": channel,
        "peer_id": peer_id,
        "peers": peers,
        "roles": roles or {},
    }
    if witness is not None:
        frame["witness"] = witness
    if token is not None:
        frame["token"] = token
    return _dump(frame, channel if tagged else None)


def encode_witness_relay(relay: WitnessRelay, *, channel: str | None = None) -> str:
    """Both directions use the same frame."""
    return _dump(
        {
            "type": FrameType.WITNESS,
            "cluster": relay.cluster_id,
            "founded_ms": relay.founded_ms,
            "messages": [base64.b64encode(message).decode("ascii") for message in relay.messages],
        },
        channel,
    )


def encode_peer_joined(peer_id: str, role: str | None = None, *, channel: str | None = None) -> str:
    frame = {"type": FrameType.PEER_JOINED, "peer_id": peer_id}
    if role is not None:
        frame["role"] = role
    return _dump(frame, channel)


def encode_peer_role(peer_id: str, role: str, *, channel: str | None = None) -> str:
    return _dump({"type": FrameType.PEER_ROLE, "peer_id": peer_id, "role": role}, channel)


def encode_peer_left(peer_id: str, *, channel: str | None = None) -> str:
    return _dump({"type": FrameType.PEER_LEFT, "peer_id": peer_id}, channel)


def encode_relayed_signal(
    sender: str, payload: dict[str, Any], *, channel: str | None = None
) -> str:
    """Raises ValueError/RecursionError if ``payload`` cannot be written back as JSON."""
    return _dump({"type": FrameType.SIGNAL, "from": sender, "payload": payload}, channel)


def encode_error(code: ErrorCode, message: str, *, channel: str | None = None) -> str:
    return _dump(
        {
            "type": FrameType.ERROR,
            "code": code,
            "message": message,
            "fatal": code in FATAL_ERROR_CODES,
        },
        channel,
    )


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))
