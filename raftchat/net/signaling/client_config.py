"""What the signaling client's parts share: its timing, its errors and the server's URLs."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from raftchat.net.signaling.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    KEEPALIVE_INTERVAL,
    SHARED_WS_PATH,
    WS_PATH_TEMPLATE,
)


class SignalingError(Exception):
    """A signaling failure that retrying will not fix by itself."""


class ServerUnreachableError(SignalingError):
    """No signaling server answered at the URL."""


class InvalidChannelError(SignalingError, ValueError):
    """The channel name breaks the naming rules."""


class PeerIdTakenError(SignalingError):
    """The id is reserved on this server (the witness's)."""


class IdentityRefusedError(SignalingError):
    """The server did not accept this node's proof of its id (``code`` says why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ServerRejectedError(SignalingError):
    """The server refused the connection (full, too many channels, ...); ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientConfig:
    """Timing of the signaling client. All must be positive."""

    connect_timeout: float = 5.0
    """Seconds for one attempt: TCP + WebSocket handshake + welcome."""
    first_connect_attempts: int = 3
    """Attempts in ``start()`` before giving up with ServerUnreachableError."""
    first_connect_retry_delay: float = 0.3
    """Pause between those first attempts."""
    backoff_initial: float = 0.5
    """First pause before reconnecting after the server went away..."""
    backoff_multiplier: float = 2.0
    """...multiplied by this after each failed attempt..."""
    backoff_max: float = 15.0
    """...up to this."""
    backoff_jitter: float = 0.5
    """Fraction of each pause that is random, so peers do not all come back at once."""
    heartbeat_interval: float = 15.0
    """WebSocket ping interval; a server that misses its pong counts as gone."""
    keepalive_interval: float = KEEPALIVE_INTERVAL
    """Longest silence towards the server: a ``keepalive`` frame is sent after it (the
    server drops a peer silent for its ``idle_timeout``)."""
    send_timeout: float = 5.0
    """A send_signal that cannot be written within this gives up and returns False."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame sent or accepted; must not exceed the server's."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"ClientConfig.{field.name} must be positive, got {value!r}")
        if self.backoff_jitter > 1:
            raise ValueError("ClientConfig.backoff_jitter must be at most 1")

    def backoff_delay(self, attempt: int, rng: random.Random) -> float:
        """Pause before reconnect attempt number ``attempt`` (0-based)."""
        base = min(self.backoff_max, self.backoff_initial * self.backoff_multiplier**attempt)
        return base * (1 - self.backoff_jitter * rng.random())


class ServerGone(Exception):
    """The connection attempt failed for a reason worth retrying."""


def websocket_url(server_url: str, channel: str) -> str:
    """``http://host:port`` -> ``ws://host:port/channels/<channel>/ws`` (https -> wss): a
    channel's own WebSocket."""
    return _ws_url(server_url, WS_PATH_TEMPLATE.format(channel=channel))


def shared_websocket_url(server_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws``: the WebSocket sessions share."""
    return _ws_url(server_url, SHARED_WS_PATH)


def _ws_url(server_url: str, ws_path: str) -> str:
    parts = urlsplit(server_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(
            f"signaling server URL {server_url!r} must look like http://HOST:PORT or https://HOST"
        )
    path = parts.path.rstrip("/") + ws_path
    return urlunsplit((schemes[parts.scheme], parts.netloc, path, "", ""))


async def server_is_up(url: str, timeout: float = 2.0) -> bool:
    """True if a signaling server answers ``GET /healthz`` at ``url`` within ``timeout``."""
    health = url.rstrip("/") + "/healthz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(health) as response,
        ):
            if response.status != 200:
                return False
            body = await response.json(content_type=None)
            return isinstance(body, dict) and body.get("ok") is True
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False
