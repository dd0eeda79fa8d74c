"""Helpers for signaling tests: a raw WebSocket peer and a recording client listener."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from support.waiting import wait_until

from raftchat.net.identity import NodeIdentity, signaling_hello_message

FRAME_TIMEOUT = 5.0


def new_peer_id() -> str:
    """The id of a new identity (whose key nobody keeps): an id no test peer holds."""
    return NodeIdentity.generate().node_id


def signed_hello(
    identity: NodeIdentity,
    nonce: bytes,
    channel: str,
    role: str | None = None,
    *,
    peer_id: str | None = None,
) -> dict[str, Any]:
    """A hello frame claiming ``peer_id`` (default: the identity's id), signed by
    ``identity`` over ``nonce`` (a challenge) for ``channel``."""
    peer_id = peer_id or identity.node_id
    signature = identity.sign(signaling_hello_message(nonce, channel, peer_id))
    hello = {
        "type": "hello",
        "peer_id": peer_id,
        "public_key": identity.public_key.hex(),
        "signature": signature.hex(),
    }
    if role is not None:
        hello["role"] = role
    return hello


class RawPeer:
    """A bare WebSocket to the server, sending and reading frames exactly as given (the
    server's challenge, the first frame, is read on connecting: :attr:`nonce`)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        channel: str,
        nonce: bytes,
    ):
        self.session = session
        self.ws = ws
        self.channel = channel.lower()
        self.nonce = nonce
        "This connection's challenge."
        self.identity = NodeIdentity.generate()
        self.peer_id = ""
        self.token = ""
        "The welcome's token (for GET /channels/<channel>/peers)."

    @classmethod
    async def connect(
        cls,
        base_url: str,
        channel: str,
        *,
        source: str | None = None,
        heartbeat: float | None = None,
    ) -> RawPeer:
        """A WebSocket from ``source`` (a loopback address such as 127.0.0.2, so that tests
        can play several client addresses; default 127.0.0.1). With ``heartbeat`` the
        client library pings the server that often (and answers its pings, as always)."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        session = aiohttp.ClientSession(connector=connector)
        try:
            ws = await session.ws_connect(f"{base_url}/channels/{channel}/ws", heartbeat=heartbeat)
            msg = await ws.receive(timeout=FRAME_TIMEOUT)
        except BaseException:
            await session.close()
            raise
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected the challenge, got {msg}"
        challenge = json.loads(msg.data)
        if challenge["type"] != "challenge":  # e.g. an invalid channel's error
            peer = cls(session, ws, channel, b"")
            peer.first_frame = challenge
            return peer
        return cls(session, ws, channel, bytes.fromhex(challenge["nonce"]))

    first_frame: dict[str, Any] | None = None
    "What the server sent instead of a challenge."

    def hello(self, role: str | None = None, *, identity: NodeIdentity | None = None) -> dict:
        """A valid hello on this connection (with this peer's identity unless given)."""
        return signed_hello(identity or self.identity, self.nonce, self.channel, role)

    @classmethod
    async def join(
        cls,
        base_url: str,
        channel: str,
        identity: NodeIdentity | None = None,
        role: str | None = None,
        *,
        source: str | None = None,
        heartbeat: float | None = None,
    ) -> tuple[RawPeer, dict[str, Any]]:
        """Connect, say hello as ``identity`` (a new one unless given; with ``role`` if
        given) and return the peer with its welcome."""
        peer = await cls.connect(base_url, channel, source=source, heartbeat=heartbeat)
        peer.identity = identity or peer.identity
        peer.peer_id = peer.identity.node_id
        await peer.send_json(peer.hello(role))
        welcome = await peer.recv()
        assert welcome["type"] == "welcome", welcome
        peer.token = welcome["token"]
        return peer, welcome

    async def send_json(self, value: Any) -> None:
        await self.ws.send_str(json.dumps(value))

    async def send_str(self, text: str) -> None:
        await self.ws.send_str(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def keepalive(self) -> None:
        await self.send_json({"type": "keepalive"})

    async def signal(self, to: str, payload: dict[str, Any]) -> None:
        await self.send_json({"type": "signal", "to": to, "payload": payload})

    async def set_role(self, role: object) -> None:
        await self.send_json({"type": "role", "role": role})

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next text frame as JSON; fails on a close or after ``timeout``."""
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
        return json.loads(msg.data)

    async def expect_error(self, code: str) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == "error", frame
        assert frame["code"] == code, frame
        assert isinstance(frame["message"], str) and frame["message"]
        return frame

    async def expect_closed(self, timeout: float = FRAME_TIMEOUT) -> None:
        """Read until the server closes the socket; fail if a text frame arrives first."""
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ), f"expected close, got {msg}"

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def assert_server_serves(
    base_url: str, channel: str = "healthy-check", *, source: str | None = None
) -> None:
    """Two fresh peers (from ``source``, see RawPeer.connect) can join, see each other and
    exchange a signal."""
    first, _ = await RawPeer.join(base_url, channel, source=source)
    second, welcome = await RawPeer.join(base_url, channel, source=source)
    try:
        assert first.peer_id in welcome["peers"]
        assert await first.recv() == {"type": "peer_joined", "peer_id": second.peer_id}
        await second.signal(first.peer_id, {"sdp": "v=0"})
        relayed = await first.recv()
        assert relayed == {"type": "signal", "from": second.peer_id, "payload": {"sdp": "v=0"}}
    finally:
        await first.close()
        await second.close()


class StuckPeer:
    """A hand-made WebSocket client that says hello, reads its welcome, then never reads
    again (asyncio stops reading its socket once its buffer is full, and the kernel's small
    receive buffer fills next): what the server sends it piles up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.identity = NodeIdentity.generate()
        self.peer_id = self.identity.node_id

    @classmethod
    async def join(cls, port: int, channel: str, source: str) -> StuckPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /channels/{channel}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        peer = cls(reader, writer)
        challenge = await cls._read_text(reader)
        assert challenge["type"] == "challenge", challenge
        hello = signed_hello(peer.identity, bytes.fromhex(challenge["nonce"]), channel)
        writer.write(cls._text_frame(json.dumps(hello).encode()))
        assert (await cls._read_text(reader))["type"] == "welcome"
        return peer

    @staticmethod
    async def _read_text(reader: asyncio.StreamReader) -> dict[str, Any]:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        return json.loads(await reader.readexactly(length))

    @staticmethod
    def _text_frame(payload: bytes) -> bytes:
        mask = os.urandom(4)
        if len(payload) < 126:
            head = bytes([0x81, 0x80 | len(payload)])
        else:
            head = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return head + mask + masked

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def get_metrics(base_url: str) -> dict[str, float]:
    """``GET /metrics`` parsed: ``name`` or ``name{label="value"}`` -> value."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


class RecordingListener:
    """A SignalingListener that records every callback and lets tests wait for them."""

    def __init__(self) -> None:
        self.peer_sets: list[frozenset[str]] = []
        self.signals: list[tuple[str, dict[str, Any]]] = []
        self.states: list[str] = []
        self._changed = asyncio.Event()

    def on_peers(self, peers: frozenset[str]) -> None:
        self.peer_sets.append(peers)
        self._changed.set()

    def on_signal(self, sender: str, payload: dict[str, Any]) -> None:
        self.signals.append((sender, payload))
        self._changed.set()

    def on_state(self, state: str) -> None:
        self.states.append(state)
        self._changed.set()

    @property
    def peers(self) -> frozenset[str] | None:
        return self.peer_sets[-1] if self.peer_sets else None

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = FRAME_TIMEOUT, what: str = ""
    ) -> None:
        """Wait until ``condition`` holds, re-checking after every callback."""
        await wait_until(
            condition,
            timeout,
            what,
            changed=self._changed,
            details=lambda: f"states={self.states} peers={self.peer_sets} signals={self.signals}",
        )


class SharedSocket:
    """A bare shared WebSocket (``/ws``) to the server: sessions opened, tagged, signed and
    read by hand; :attr:`identities` holds the identity of each channel's session."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws
        self.identities: dict[str, NodeIdentity] = {}
        self.nonces: dict[str, bytes] = {}

    @classmethod
    async def connect(cls, base_url: str, *, source: str | None = None) -> SharedSocket:
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        session = aiohttp.ClientSession(connector=connector)
        try:
            ws = await session.ws_connect(f"{base_url}/ws")
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    def peer_id(self, channel: str) -> str:
        return self.identities[channel].node_id

    async def send_json(self, value: Any) -> None:
        await self.ws.send_str(json.dumps(value))

    async def send(self, channel: str | None, frame: dict[str, Any]) -> None:
        """``frame`` tagged with ``channel`` (untagged for None)."""
        tag = {} if channel is None else {"channel": channel}
        await self.send_json({**tag, **frame})

    async def open(self, channel: str) -> bytes:
        """Open a session in ``channel`` and return its challenge's nonce."""
        await self.send(channel, {"type": "open"})
        challenge = await self.recv()
        assert challenge["type"] == "challenge" and challenge["channel"] == channel, challenge
        self.nonces[channel] = bytes.fromhex(challenge["nonce"])
        return self.nonces[channel]

    async def join(
        self, channel: str, identity: NodeIdentity | None = None, role: str | None = None
    ) -> dict[str, Any]:
        """Open a session in ``channel``, say hello as ``identity`` (new unless given) and
        return the welcome."""
        nonce = await self.open(channel)
        identity = self.identities[channel] = identity or NodeIdentity.generate()
        await self.send(channel, signed_hello(identity, nonce, channel, role))
        welcome = await self.recv()
        assert welcome["type"] == "welcome" and welcome["channel"] == channel, welcome
        return welcome

    async def signal(self, channel: str, to: str, payload: dict[str, Any]) -> None:
        await self.send(channel, {"type": "signal", "to": to, "payload": payload})

    async def leave(self, channel: str) -> None:
        await self.send(channel, {"type": "leave"})

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg}"
        return json.loads(msg.data)

    async def expect_error(self, code: str, channel: str | None) -> dict[str, Any]:
        """The next frame: an error with ``code``, tagged with ``channel`` (None: untagged)."""
        frame = await self.recv()
        assert frame["type"] == "error" and frame["code"] == code, frame
        assert frame.get("channel") == channel, frame
        assert isinstance(frame["message"], str) and frame["message"]
        return frame

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
