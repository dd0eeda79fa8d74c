"""The client's shared WebSocket: one socket to a signaling server for every channel
session of the process.

It opens the socket when a session needs it (:meth:`SignalingConnection.ensure_open`),
routes each tagged frame to the session of its channel, sends a ``keepalive`` whenever the
socket was silent for ``keepalive_interval`` (liveness is the socket's, not a session's),
and tells every session when the socket is gone; each session then joins again on its own
(with backoff), over whichever socket the first of them opens. It closes the socket when
the last session leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import aiohttp

from raftchat.net.signaling.client_config import (
    ClientConfig,
    ServerGone,
    ServerRejectedError,
    shared_websocket_url,
)
from raftchat.net.signaling.protocol import (
    ERROR_HEADER,
    ErrorFrame,
    ProtocolError,
    encode_keepalive,
    parse_tagged_server_frame,
)

if TYPE_CHECKING:
    from raftchat.net.identity import NodeIdentity
    from raftchat.net.signaling.client import SignalingListener, SignalingSession

logger = logging.getLogger(__name__)


class SignalingConnection:
    """One WebSocket to ``server_url`` shared by channel sessions (:meth:`session`)."""

    def __init__(self, server_url: str, config: ClientConfig | None = None) -> None:
        self.server_url = server_url
        self.ws_url = shared_websocket_url(server_url)
        self.config = config or ClientConfig()
        self.sockets_opened = 0
        "WebSockets opened so far (for tests and status displays)."
        self._sessions: dict[str, SignalingSession] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._open_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._last_sent = 0.0

    def session(
        self, channel: str, identity: NodeIdentity, listener: SignalingListener
    ) -> SignalingSession:
        """A new session in ``channel`` over this socket (start it with ``start()``)."""
        from raftchat.net.signaling.client import SignalingSession

        return SignalingSession(self, channel, identity, listener)

    @property
    def socket(self) -> aiohttp.ClientWebSocketResponse | None:
        """The open WebSocket, if any."""
        ws = self._ws
        return ws if ws is not None and not ws.closed else None

    @property
    def channels(self) -> frozenset[str]:
        """The channels with a session attached."""
        return frozenset(self._sessions)

    # ------------------------------------------------------------ sessions

    def attach(self, session: SignalingSession) -> None:
        current = self._sessions.get(session.channel)
        if current is not None and current is not session:
            raise ValueError(f"this connection already has a session in {session.channel!r}")
        self._sessions[session.channel] = session

    async def detach(self, session: SignalingSession) -> None:
        """Forget ``session``; the last one to go closes the socket."""
        if self._sessions.get(session.channel) is session:
            del self._sessions[session.channel]
        if not self._sessions:
            await self.close()

    # ------------------------------------------------------------ the socket

    async def ensure_open(self) -> aiohttp.ClientWebSocketResponse:
        """The open socket, opening it if needed. Raises ServerGone (worth retrying) or
        ServerRejectedError (an HTTP 503 naming the server's limit)."""
        async with self._open_lock:
            if (ws := self.socket) is not None:
                return ws
            if self._http is None:
                self._http = aiohttp.ClientSession()
            try:
                ws = await self._http.ws_connect(
                    self.ws_url,
                    heartbeat=self.config.heartbeat_interval,
                    max_msg_size=self.config.max_frame_bytes,
                    autoclose=True,
                )
            except aiohttp.WSServerHandshakeError as exc:
                code = exc.headers.get(ERROR_HEADER) if exc.headers else None
                if exc.status == 503 and code:
                    raise ServerRejectedError(
                        code,
                        f"signaling server refused us: {code} (HTTP 503; server {self.server_url})",
                    ) from None
                raise ServerGone(
                    f"{self.ws_url} is not a raftchat signaling endpoint (HTTP {exc.status}; a "
                    "server of an earlier raftchat has no shared socket: both need a "
                    "compatible raftchat)"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise ServerGone(str(exc) or type(exc).__name__) from None
            self.sockets_opened += 1
            self._ws = ws
            self._last_sent = asyncio.get_running_loop().time()
            self._reader = asyncio.create_task(self._read(ws), name="signaling-reader")
            self._keepalive = asyncio.create_task(self._keep_alive(ws), name="signaling-keepalive")
            return ws

    async def send(self, ws: aiohttp.ClientWebSocketResponse | None, text: str, what: str) -> bool:
        """Write one frame on ``ws`` if it is still the open socket; False if not now."""
        if ws is None or ws is not self._ws or ws.closed:
            return False
        try:
            async with asyncio.timeout(self.config.send_timeout), self._send_lock:
                await ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError) as exc:
            logger.info("%s not sent: %s", what, exc)
            return False
        self._last_sent = asyncio.get_running_loop().time()
        return True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Route frames until the socket closes, then tell every session."""
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._route(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.info("signaling connection error: %s", ws.exception())
                    break
                else:
                    logger.warning("ignoring unexpected %s frame from server", msg.type.name)
        finally:
            if self._ws is ws:
                self._ws = None
            await self._stop_keepalive()
            with contextlib.suppress(Exception):
                await ws.close()
            logger.info("signaling server connection lost (code %s)", ws.close_code)
            for session in list(self._sessions.values()):
                session.socket_lost(ws)

    def _route(self, text: str) -> None:
        try:
            tagged = parse_tagged_server_frame(text)
        except ProtocolError as exc:
            logger.warning("ignoring bad frame from signaling server: %s", exc.message)
            return
        frame = tagged.frame
        if tagged.channel is None:
            if isinstance(frame, ErrorFrame):  # about the socket; a fatal one closes it
                logger.warning("signaling server error %s: %s", frame.code, frame.message)
            else:
                logger.warning("ignoring untagged %s from signaling server", type(frame).__name__)
            return
        session = self._sessions.get(tagged.channel)
        if session is None:
            logger.debug("ignoring %s for channel %s: no session", type(frame), tagged.channel)
            return
        session.on_frame(frame)

    async def _keep_alive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send a keepalive whenever nothing went to the server for keepalive_interval."""
        loop = asyncio.get_running_loop()
        interval = self.config.keepalive_interval
        while self._ws is ws and not ws.closed:
            due = self._last_sent + interval
            if loop.time() < due:
                await asyncio.sleep(due - loop.time())
                continue
            if not await self.send(ws, encode_keepalive(), "keepalive"):
                self._last_sent = loop.time()  # not connected now: try again later

    async def _stop_keepalive(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close the socket (sessions still attached see it lost and will open it again
        when they rejoin: close them first to end them)."""
        await self._stop_keepalive()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        http, self._http = self._http, None
        if http is not None:
            await http.close()
