"""Helpers for signaling tests: a raw WebSocket peer and a recording client listener."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from support.waiting import wait_until

from raftchat.net.signaling.protocol import new_peer_id, new_token

FRAME_TIMEOUT = 5.0


class RawPeer:
    """A bare WebSocket to the server, sending and reading frames exactly as given."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws
        self.peer_id = ""
        self.token = ""

    @classmethod
    async def connect(cls, base_url: str, channel: str) -> RawPeer:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(f"{base_url}/channels/{channel}/ws")
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    @classmethod
    async def join(
        cls,
        base_url: str,
        channel: str,
        peer_id: str | None = None,
        token: str | None = None,
        role: str | None = None,
    ) -> tuple[RawPeer, dict[str, Any]]:
        """Connect, say hello (with ``role`` if given) and return the peer with its welcome."""
        peer = await cls.connect(base_url, channel)
        peer.peer_id = peer_id or new_peer_id()
        peer.token = token or new_token()
        hello = {"type": "hello", "peer_id": peer.peer_id, "token": peer.token}
        if role is not None:
            hello["role"] = role
        await peer.send_json(hello)
        welcome = await peer.recv()
        assert welcome["type"] == "welcome", welcome
        return peer, welcome

    async def send_json(self, value: Any) -> None:
        await self.ws.send_str(json.dumps(value))

    async def send_str(self, text: str) -> None:
        await self.ws.send_str(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

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


async def assert_server_serves(base_url: str, channel: str = "healthy-check") -> None:
    """Two fresh peers can join, see each other and exchange a signal."""
    first, _ = await RawPeer.join(base_url, channel)
    second, welcome = await RawPeer.join(base_url, channel)
    try:
        assert first.peer_id in welcome["peers"]
        assert await first.recv() == {"type": "peer_joined", "peer_id": second.peer_id}
        await second.signal(first.peer_id, {"sdp": "v=0"})
        relayed = await first.recv()
        assert relayed == {"type": "signal", "from": second.peer_id, "payload": {"sdp": "v=0"}}
    finally:
        await first.close()
        await second.close()


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
