"""The signaling server: introduces peers of a channel and relays their offers/answers.

One WebSocket per peer per channel at ``/channels/{channel}/ws`` (frames in
``protocol``), plus a few HTTP endpoints:

- ``GET /channels/{channel}/peers`` -> JSON list of connected peer ids
- ``POST /channels`` -> ``{"channel": NAME}``, a new random channel name
- ``GET /healthz`` -> ``{"ok": true, "channels": N, "peers": N, "connections": N}``

The server never sees chat content: it only relays small opaque JSON objects (SDP and
authentication fields) between two named peers of the same channel, stamping the sender,
and passes on the role each peer announces (an unchecked hint, kept only while it is here).
Every limit in ``ServerConfig`` answers with an error frame; a misbehaving client is
logged (no traceback) and never affects the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields

from aiohttp import WSCloseCode, WSMsgType, web

from raftchat.net.rate_limit import TokenBucket
from raftchat.net.signaling.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    ErrorCode,
    Hello,
    ProtocolError,
    RoleUpdate,
    SignalRequest,
    encode_error,
    encode_peer_joined,
    encode_peer_left,
    encode_peer_role,
    encode_relayed_signal,
    encode_welcome,
    new_channel_name,
    normalize_channel,
    parse_client_frame,
    utf8_length,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the signaling server. All must be positive."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame accepted; a larger one (up to ``hard_max_frame_bytes``) gets
    ``frame_too_large`` and is dropped, the connection stays."""
    hard_max_frame_bytes: int = 4 * DEFAULT_MAX_FRAME_BYTES
    """Frames beyond this are not even buffered: the WebSocket layer closes the
    connection with close code 1009 (message too big)."""
    messages_per_second: float = 50.0
    """Sustained frame rate per connection (token bucket refill rate)."""
    burst_messages: int = 200
    """Token bucket capacity: frames a connection may send at once. A peer joining a
    full channel offers to (or answers) every other peer at once, and each link may
    need a few attempts: room for several times ``max_peers_per_channel``."""
    max_rate_violations: int = 20
    """Rate-limited frames tolerated (each answered with ``rate_limited``) before the
    connection is closed with ``flooding``..."""
    rate_violations_forgiven_per_second: float = 1.0
    """...forgiven at this rate, so an occasional burst is never fatal."""
    max_peers_per_channel: int = 64
    max_channels: int = 1000
    max_connections: int = 4096
    """Open WebSockets in total, including those that have not said hello yet."""
    hello_timeout: float = 10.0
    """Seconds a new WebSocket has to send its hello."""
    heartbeat_interval: float = 20.0
    """WebSocket ping interval; a peer that misses its pong is disconnected."""
    remembered_peer_ttl: float = 600.0
    """Seconds a departed peer's id stays bound to its token (id_taken for others)."""
    max_remembered_peers: int = 100_000
    """Bound on remembered ids over all channels; the oldest are forgotten first."""
    send_queue_frames: int = 256
    """Frames queued for a peer that does not read; beyond, it is closed as too slow."""
    close_timeout: float = 2.0
    """Seconds to wait for a closing WebSocket's handshake and pending frames."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"ServerConfig.{field.name} must be positive, got {value!r}")
        if self.hard_max_frame_bytes < self.max_frame_bytes:
            raise ValueError("ServerConfig.hard_max_frame_bytes must be >= max_frame_bytes")


def _hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class _Connection:
    """One WebSocket with an outbound queue drained by its own task, so that a peer that
    does not read never blocks the peers that send to it."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, config: ServerConfig, now: float
    ) -> None:
        self.ws = ws
        self.remote = request.remote or "?"
        self._transport = request.transport
        self.config = config
        self.peer_id: str | None = None
        self.channel: str | None = None
        self.token_hash = b""
        self.role: str | None = None
        """The role this peer announced, if any (a hint passed on to the others)."""
        self.rate = TokenBucket(config.messages_per_second, config.burst_messages, now)
        self.violations = TokenBucket(
            config.rate_violations_forgiven_per_second, config.max_rate_violations, now
        )
        self.closing = False
        self._close_code = WSCloseCode.OK
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())
        self._watchdog: asyncio.TimerHandle | None = None

    def describe(self) -> str:
        return f"{self.remote} peer={self.peer_id or '?'} channel={self.channel or '?'}"

    def send(self, text: str) -> None:
        """Queue a frame without waiting; a peer too slow to read is disconnected."""
        if self.closing:
            return
        if self._queue.qsize() >= self.config.send_queue_frames:
            logger.warning(
                "closing slow peer %s: %d frames unread", self.describe(), self._queue.qsize()
            )
            self.fail(ErrorCode.SLOW_CONSUMER, "too many unread frames; disconnected")
            return
        self._queue.put_nowait(text)

    def error(self, code: ErrorCode, message: str) -> None:
        self.send(encode_error(code, message))

    def fail(self, code: ErrorCode, message: str) -> None:
        """Send a fatal error frame, then close the socket once it is written."""
        if self.closing:
            return
        self._queue.put_nowait(encode_error(code, message))
        closing_code = (
            WSCloseCode.GOING_AWAY
            if code == ErrorCode.SHUTTING_DOWN
            else WSCloseCode.POLICY_VIOLATION
        )
        self._begin_close(closing_code)

    def _begin_close(self, code: WSCloseCode) -> None:
        self.closing = True
        self._close_code = code
        self._queue.put_nowait(None)
        # A peer that stops reading can block the writer forever: cut it off in the end.
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(2 * self.config.close_timeout, self._abort)

    def _abort(self) -> None:
        if not self._writer.done():
            logger.info("aborting unresponsive connection %s", self.describe())
            self._writer.cancel()
        if self._transport is not None:
            self._transport.close()

    async def _write_loop(self) -> None:
        try:
            while (text := await self._queue.get()) is not None:
                await self.ws.send_str(text)
        except ConnectionError as exc:
            logger.info("cannot write to %s: %s", self.describe(), exc)
        except Exception as exc:  # the socket broke in some other way; drop just this peer
            logger.warning("write to %s failed: %r", self.describe(), exc)
        finally:
            self.closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.ws.close(code=self._close_code), self.config.close_timeout
                )

    async def close(self) -> None:
        """Flush queued frames and close the socket (bounded by ``close_timeout``)."""
        if not self.closing:
            self._begin_close(WSCloseCode.OK)
        try:
            await asyncio.shield(self._writer)
        except asyncio.CancelledError:
            if not self._writer.cancelled():
                raise  # we were cancelled, not the writer
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()


class SignalingState:
    """Channels, connected peers and remembered ids. Pure bookkeeping, no I/O."""

    def __init__(self, config: ServerConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.channels: dict[str, dict[str, _Connection]] = {}
        self.connections: set[_Connection] = set()
        # (channel, peer id) -> (token hash, expiry); ordered by expiry.
        self._remembered: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()

    def peer_count(self) -> int:
        return sum(len(peers) for peers in self.channels.values())

    def _expire_remembered(self) -> None:
        now = self.clock()
        while self._remembered:
            key, (_, expiry) = next(iter(self._remembered.items()))
            if expiry > now:
                break
            del self._remembered[key]

    def remember(self, channel: str, peer_id: str, token_hash: bytes) -> None:
        key = (channel, peer_id)
        self._remembered.pop(key, None)
        self._remembered[key] = (token_hash, self.clock() + self.config.remembered_peer_ttl)
        while len(self._remembered) > self.config.max_remembered_peers:
            self._remembered.popitem(last=False)

    def join(self, conn: _Connection, channel: str, hello: Hello) -> _Connection | None:
        """Admit ``conn`` as ``hello.peer_id``; return the connection it replaces, if any.

        Raises ProtocolError with a fatal code when the peer cannot join.
        """
        self._expire_remembered()
        token_hash = _hash_token(hello.token)
        peers = self.channels.get(channel)
        current = peers.get(hello.peer_id) if peers else None
        remembered = self._remembered.get((channel, hello.peer_id))
        known_hash = current.token_hash if current else (remembered[0] if remembered else None)
        if known_hash is not None and not hmac.compare_digest(known_hash, token_hash):
            raise ProtocolError(
                ErrorCode.ID_TAKEN,
                f"peer id {hello.peer_id!r} is in use in channel {channel!r} by another peer; "
                "pick a new random id",
            )
        if peers is None:
            if len(self.channels) >= self.config.max_channels:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_CHANNELS,
                    f"server has its maximum of {self.config.max_channels} channels; "
                    "try again later or use another server",
                )
            peers = self.channels[channel] = {}
        elif current is None and len(peers) >= self.config.max_peers_per_channel:
            raise ProtocolError(
                ErrorCode.CHANNEL_FULL,
                f"channel {channel!r} has its maximum of {self.config.max_peers_per_channel} peers",
            )
        self._remembered.pop((channel, hello.peer_id), None)
        conn.peer_id, conn.channel, conn.token_hash = hello.peer_id, channel, token_hash
        peers[hello.peer_id] = conn
        return current

    def leave(self, conn: _Connection) -> bool:
        """Forget ``conn`` if it still holds its id; True if the peer really left."""
        if conn.channel is None or conn.peer_id is None:
            return False
        peers = self.channels.get(conn.channel)
        if peers is None or peers.get(conn.peer_id) is not conn:
            return False  # replaced by a newer connection of the same peer
        del peers[conn.peer_id]
        if not peers:
            del self.channels[conn.channel]
        self.remember(conn.channel, conn.peer_id, conn.token_hash)
        return True


_JOIN_REFUSALS = frozenset(
    {ErrorCode.ID_TAKEN, ErrorCode.CHANNEL_FULL, ErrorCode.TOO_MANY_CHANNELS, ErrorCode.SERVER_FULL}
)
"""Errors in a hello that end the connection; other bad frames only get an error frame."""


class SignalingServer:
    """The aiohttp application and its handlers."""

    def __init__(self, config: ServerConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.state = SignalingState(config, clock)
        self.clock = clock
        self.app = web.Application()
        self.app.router.add_get("/channels/{channel}/ws", self._handle_ws)
        self.app.router.add_get("/channels/{channel}/peers", self._handle_peers)
        self.app.router.add_post("/channels", self._handle_new_channel)
        self.app.router.add_get("/healthz", self._handle_health)
        self.app.on_shutdown.append(self._on_shutdown)

    # ------------------------------------------------------------ HTTP

    async def _handle_peers(self, request: web.Request) -> web.Response:
        try:
            channel = normalize_channel(request.match_info["channel"])
        except ProtocolError as exc:
            return web.json_response({"error": exc.code, "message": exc.message}, status=400)
        return web.json_response(sorted(self.state.channels.get(channel, {})))

    async def _handle_new_channel(self, request: web.Request) -> web.Response:
        name = new_channel_name()
        while name in self.state.channels:
            name = new_channel_name()
        return web.json_response({"channel": name})

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "channels": len(self.state.channels),
                "peers": self.state.peer_count(),
                "connections": len(self.state.connections),
            }
        )

    async def _on_shutdown(self, app: web.Application) -> None:
        conns = list(self.state.connections)
        for conn in conns:
            conn.fail(ErrorCode.SHUTTING_DOWN, "signaling server is shutting down")
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)

    # ------------------------------------------------------------ WebSocket

    async def _handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            timeout=self.config.close_timeout,
            heartbeat=self.config.heartbeat_interval,
            max_msg_size=self.config.hard_max_frame_bytes,
        )
        await ws.prepare(request)
        conn = _Connection(ws, request, self.config, self.clock())
        self.state.connections.add(conn)
        try:
            await self._serve(conn, request.match_info["channel"])
        finally:
            self.state.connections.discard(conn)
            if self.state.leave(conn):
                logger.info("peer left: %s", conn.describe())
                self._broadcast(conn.channel, encode_peer_left(conn.peer_id), exclude=None)
            await conn.close()
        return ws

    async def _serve(self, conn: _Connection, raw_channel: str) -> None:
        if len(self.state.connections) > self.config.max_connections:
            logger.warning("refusing %s: too many connections", conn.remote)
            conn.fail(ErrorCode.SERVER_FULL, "server has too many connections; try again later")
            return
        try:
            channel = normalize_channel(raw_channel)
        except ProtocolError as exc:
            logger.info("refusing %s: %s", conn.remote, exc.message)
            conn.fail(exc.code, exc.message)
            return
        conn.channel = channel
        deadline = asyncio.get_running_loop().time() + self.config.hello_timeout
        while not conn.closing:
            timeout = None
            if conn.peer_id is None:
                timeout = deadline - asyncio.get_running_loop().time()
            try:
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                msg = await conn.ws.receive(timeout=timeout)
            except TimeoutError:
                logger.info("no hello from %s in time", conn.describe())
                conn.fail(
                    ErrorCode.HELLO_TIMEOUT,
                    f"no hello within {self.config.hello_timeout} s of connecting",
                )
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:
                logger.info("websocket error from %s: %s", conn.describe(), msg.data)
                return
            if not self._within_rate(conn):
                continue
            if msg.type == WSMsgType.BINARY:
                logger.info("binary frame from %s", conn.describe())
                conn.error(ErrorCode.BINARY_FRAME, "frames must be JSON text, not binary")
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                self._handle_text(conn, channel, msg.data)
            except ProtocolError as exc:
                if exc.code in _JOIN_REFUSALS:
                    logger.warning("refusing %s: %s", conn.describe(), exc.message)
                    conn.fail(exc.code, exc.message)
                else:
                    logger.info("bad frame from %s: %s", conn.describe(), exc.message)
                    conn.error(exc.code, exc.message)

    def _within_rate(self, conn: _Connection) -> bool:
        now = self.clock()
        if conn.rate.take(now):
            return True
        if conn.violations.take(now):
            conn.error(
                ErrorCode.RATE_LIMITED,
                f"more than {self.config.messages_per_second:g} frames/s; frame dropped",
            )
        else:
            logger.warning("closing flooding peer %s", conn.describe())
            conn.fail(ErrorCode.FLOODING, "kept sending over the rate limit; disconnected")
        return False

    def _handle_text(self, conn: _Connection, channel: str, text: str) -> None:
        if utf8_length(text) > self.config.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame is larger than {self.config.max_frame_bytes} bytes; dropped",
            )
        frame = parse_client_frame(text)
        if isinstance(frame, Hello):
            if conn.peer_id is not None:
                raise ProtocolError(ErrorCode.ALREADY_JOINED, "hello was already accepted")
            self._admit(conn, channel, frame)
            return
        if conn.peer_id is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello before anything else")
        if isinstance(frame, RoleUpdate):
            self._set_role(conn, channel, frame.role)
            return
        assert isinstance(frame, SignalRequest)
        self._relay(conn, channel, frame)

    def _admit(self, conn: _Connection, channel: str, hello: Hello) -> None:
        replaced = self.state.join(conn, channel, hello)
        peers = self.state.channels[channel]
        others = sorted(peer for peer in peers if peer != hello.peer_id)
        roles = {peer: peers[peer].role for peer in others if peers[peer].role is not None}
        conn.send(encode_welcome(channel, hello.peer_id, others, roles))
        if replaced is not None:
            logger.info("peer reconnected, replacing its old socket: %s", conn.describe())
            replaced.fail(ErrorCode.REPLACED, "this peer connected again on another socket")
            # The others were told the old socket's role: keep it unless the hello has one.
            conn.role = replaced.role
            if hello.role is not None:
                self._set_role(conn, channel, hello.role)
        else:
            logger.info("peer joined: %s", conn.describe())
            conn.role = hello.role
            self._broadcast(channel, encode_peer_joined(hello.peer_id, hello.role), exclude=conn)

    def _set_role(self, conn: _Connection, channel: str, role: str) -> None:
        """Record ``conn``'s role and tell the others, unless it is unchanged."""
        if role == conn.role:
            return
        conn.role = role
        logger.debug("peer %s announces role %s", conn.describe(), role)
        self._broadcast(channel, encode_peer_role(conn.peer_id, role), exclude=conn)

    def _relay(self, conn: _Connection, channel: str, request: SignalRequest) -> None:
        target = self.state.channels.get(channel, {}).get(request.to)
        if target is None or target is conn:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PEER,
                f"no peer {request.to!r} in channel {channel!r}; wait for its peer_joined",
            )
        try:
            text = encode_relayed_signal(conn.peer_id, request.payload)
        except (ValueError, RecursionError):
            raise ProtocolError(ErrorCode.BAD_FIELD, "payload is nested too deeply") from None
        if utf8_length(text) > self.config.max_frame_bytes:  # re-encoding can grow it
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"relayed frame would exceed {self.config.max_frame_bytes} bytes; dropped",
            )
        target.send(text)

    def _broadcast(self, channel: str | None, text: str, exclude: _Connection | None) -> None:
        for peer in list(self.state.channels.get(channel or "", {}).values()):
            if peer is not exclude:
                peer.send(text)


@dataclass
class RunningServer:
    """A server listening in this event loop."""

    url: str
    port: int
    server: SignalingServer
    _runner: web.AppRunner

    async def close(self) -> None:
        """Tell every peer the server is going away, close their sockets, stop listening."""
        await self._runner.cleanup()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    config: ServerConfig | None = None,
    *,
    clock: Clock = time.monotonic,
) -> RunningServer:
    """Start listening in the running event loop; ``port=0`` picks a free port."""
    config = config or ServerConfig()
    server = SignalingServer(config, clock)
    runner = web.AppRunner(
        server.app, access_log=None, shutdown_timeout=config.close_timeout, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from exc
    bound_port = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    logger.info("signaling server listening on http://%s:%d", url_host, bound_port)
    return RunningServer(f"http://{url_host}:{bound_port}", bound_port, server, runner)


def run_server(
    host: str = "127.0.0.1",
    port: int = 8765,
    config: ServerConfig | None = None,
    *,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> None:
    """Run a server until interrupted (Ctrl-C / SIGTERM); for ``raftchat serve``."""

    async def serve() -> None:
        running = await start_server(host, port, config)
        if on_ready is not None:
            on_ready(running)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            logger.info("signaling server stopping")
            await running.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
