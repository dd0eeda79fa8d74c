"""One peer's presence in one channel on the signaling server: a session of a WebSocket.

A channel's own WebSocket (``/channels/{channel}/ws``) carries exactly one session, opened
with the socket; its frames are untagged and anything fatal to the session closes the
socket. A shared WebSocket (``/ws``) carries several, each opened by an ``open`` frame and
tagged with its channel in every frame; a fatal error there ends only that session.

Each session has its own challenge nonce, hello, peer id (the channel's identity key:
a peer's ids in two channels need not be related), token, announced role and, on a shared
socket, its own rate gate and hello timer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from raftchat.net.identity import NONCE_BYTES
from raftchat.net.signaling.addresses import AddressUsage
from raftchat.net.signaling.connection import Connection, RateGate
from raftchat.net.signaling.protocol import ErrorCode, encode_error


class Session:
    """A channel session over ``conn``; ``tagged`` on a shared socket."""

    def __init__(self, conn: Connection, channel: str, tagged: bool, now: float) -> None:
        self.conn = conn
        self.channel = channel
        self.tagged = tagged
        self.peer_id: str | None = None
        self.nonce = os.urandom(NONCE_BYTES)
        "This session's challenge: its hello must sign it (no other session's will do)."
        self.token_hash = b""
        "Of the token the welcome gave this peer for its HTTP requests."
        self.role: str | None = None
        """The role this peer announced, if any (a hint passed on to the others)."""
        self.gate = RateGate(conn.config, now) if tagged else conn.gate
        "Its frames per second (a channel's own socket: the socket's gate)."
        self.ended = False
        self._hello_timer: asyncio.TimerHandle | None = None

    @property
    def tag(self) -> str | None:
        """The ``channel`` tag of its frames (None on a channel's own socket)."""
        return self.channel if self.tagged else None

    @property
    def usage(self) -> AddressUsage | None:
        return self.conn.usage

    @property
    def joined(self) -> bool:
        return self.peer_id is not None and not self.ended

    def describe(self) -> str:
        return f"{self.conn.remote} peer={self.peer_id or '?'} channel={self.channel}"

    def send(self, text: str) -> None:
        """Queue a frame (encoded with this session's ``tag``) on its socket."""
        self.conn.send(text)

    def error(self, code: ErrorCode, message: str) -> None:
        """A non-fatal error frame about this session."""
        self.conn.error(code, message, channel=self.tag)

    def expect_hello(self, timeout: float, expired: Callable[[Session], None]) -> None:
        """A shared socket's session must say hello within ``timeout``, else ``expired``."""
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(timeout, self._hello_due, expired)

    def _hello_due(self, expired: Callable[[Session], None]) -> None:
        self._hello_timer = None
        if self.peer_id is None and not self.ended:
            expired(self)

    def end(self) -> bool:
        """Mark it ended (idempotent); True the first time. Frees its place on the socket."""
        if self.ended:
            return False
        was_joined = self.peer_id is not None
        self.ended = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self.conn.sessions.get(self.channel) is self:
            del self.conn.sessions[self.channel]
        self.conn.session_ended(was_joined)
        return True

    def fatal_frame(self, code: ErrorCode, message: str) -> str:
        return encode_error(code, message, channel=self.tag)
