"""The signaling server: introduces peers of a channel and relays their offers/answers.

One WebSocket per peer per channel at ``/channels/{channel}/ws`` (frames in
``protocol``): the server opens it with a challenge, and admits a peer only with a hello
that proves its id with the id's key (``net/identity.py``), so nobody can hold another
peer's id. A few HTTP endpoints:

- ``GET /channels/{channel}/peers`` -> JSON list of the peer ids connected to the channel,
  only for a peer of that channel: ``Authorization: Bearer PEER_ID:TOKEN`` (its id and the
  token its welcome gave its present connection); anyone else gets 403, whether the
  channel exists or not
- ``POST /channels`` -> ``{"channel": NAME}``, a new random channel name
- ``GET /healthz`` -> ``{"ok": true, "channels": N, "peers": N, "connections": N,
  "sockets": N}`` (connections: WebSockets; sockets: every open TCP connection)
- ``GET /metrics`` -> counters and gauges in Prometheus text format (``metrics``)

A server may host a witness (a :class:`WitnessService`, e.g. ``raftchat.witness``): it
names the witness in every welcome, refuses a hello that takes the witness's id, and
passes ``witness`` frames on with the sender's authenticated peer id; the witness's
answers go back the same way. The server itself decodes nothing of them.

The server never sees chat content: it only relays small opaque JSON objects (SDP and
authentication fields) between two named peers of the same channel, stamping the sender,
and passes on the role each peer announces (an unchecked hint, kept only while it is here).
Every limit in ``ServerConfig`` answers with an error (a frame, or an HTTP 503 before a
WebSocket exists) and is counted; a misbehaving client is logged (no traceback) and never
affects the others. Sockets pass the guard (``guard``) before aiohttp reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSMsgType, web

from raftchat.net.signaling.addresses import Addresses
from raftchat.net.signaling.config import LOOPBACK_ADDRESSES, ServerConfig
from raftchat.net.signaling.connection import Connection, QueueBudget
from raftchat.net.signaling.guard import HEADERS_TOO_LARGE, ConnectionGuard
from raftchat.net.signaling.metrics import CONTENT_TYPE, Metrics
from raftchat.net.signaling.presence import SignalingState
from raftchat.net.signaling.protocol import (
    ErrorCode,
    Hello,
    Keepalive,
    ProtocolError,
    RoleUpdate,
    SignalRequest,
    WitnessRelay,
    encode_challenge,
    encode_peer_joined,
    encode_peer_left,
    encode_peer_role,
    encode_relayed_signal,
    encode_welcome,
    encode_witness_relay,
    is_valid_peer_id,
    is_valid_token,
    new_channel_name,
    new_token,
    normalize_channel,
    parse_client_frame,
    utf8_length,
)

__all__ = [
    "LOOPBACK_ADDRESSES",
    "RunningServer",
    "ServerConfig",
    "SignalingServer",
    "run_server",
    "start_server",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class WitnessService(Protocol):
    """What answers a channel's ``witness`` frames."""

    witness_id: str

    def attach(self, send: Callable[[str, str, WitnessRelay], bool]) -> None:
        """Called once the server runs, with its way to a peer: (channel, peer, frame)."""

    def receive(self, channel: str, sender: str, relay: WitnessRelay) -> str | None:
        """Take ``relay`` from ``sender``; None if taken, else why it was refused."""

    async def close(self) -> None: ...


_JOIN_REFUSALS = frozenset(
    {
        ErrorCode.ID_TAKEN,
        ErrorCode.ID_NOT_OF_KEY,
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.CHANNEL_FULL,
        ErrorCode.TOO_MANY_PEERS_FROM_ADDRESS,
        ErrorCode.TOO_MANY_CHANNELS,
        ErrorCode.TOO_MANY_CHANNELS_FROM_ADDRESS,
        ErrorCode.JOIN_RATE_LIMITED,
    }
)
"""Errors in a hello that end the connection; other bad frames only get an error frame."""

_METRIC_CODES = [*(str(code) for code in ErrorCode), HEADERS_TOO_LARGE]


class SignalingServer:
    """The aiohttp application and its handlers."""

    def __init__(
        self,
        config: ServerConfig,
        clock: Clock = time.monotonic,
        witness: WitnessService | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.witness = witness
        self.addresses = Addresses(config)
        self.state = SignalingState(config, clock, self.addresses)
        self.metrics = Metrics(_METRIC_CODES)
        self.budget = QueueBudget(config.max_queued_bytes_total)
        self.guard = ConnectionGuard(config, self.addresses, self.metrics, clock)
        self._add_gauges()
        self.app = web.Application()
        self.app.router.add_get("/channels/{channel}/ws", self._handle_ws)
        self.app.router.add_get("/channels/{channel}/peers", self._handle_peers)
        self.app.router.add_post("/channels", self._handle_new_channel)
        self.app.router.add_get("/healthz", self._handle_health)
        self.app.router.add_get("/metrics", self._handle_metrics)
        self.app.on_response_prepare.append(self._one_request_per_connection)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_startup.append(self._on_startup)

    def _add_gauges(self) -> None:
        gauges = (
            ("open_connections", "Open TCP connections.", lambda: len(self.guard.open)),
            ("websockets", "Open WebSockets.", lambda: len(self.state.connections)),
            ("peers", "Peers present in a channel.", self.state.peer_count),
            ("channels", "Channels with at least one peer.", lambda: len(self.state.channels)),
            ("queued_bytes", "Bytes queued for peers.", lambda: self.budget.total),
            ("tracked_addresses", "Client addresses tracked.", lambda: len(self.addresses)),
        )
        for name, help, read in gauges:
            self.metrics.gauge(name, help, read)

    def peers(self, channel: str) -> set[str]:
        """The peer ids present in ``channel`` (for code in this process, e.g. tests)."""
        return set(self.state.peers_of(normalize_channel(channel)))

    # ------------------------------------------------------------ HTTP

    async def _one_request_per_connection(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        if not isinstance(response, web.WebSocketResponse):
            response.force_close()
            response.headers["Connection"] = "close"

    async def _handle_peers(self, request: web.Request) -> web.Response:
        try:
            channel = normalize_channel(request.match_info["channel"])
        except ProtocolError as exc:
            return web.json_response({"error": exc.code, "message": exc.message}, status=400)
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        peer_id, _, token = credentials.strip().partition(":")
        if (
            scheme.lower() != "bearer"
            or not is_valid_peer_id(peer_id)
            or not is_valid_token(token)
            or not self.state.is_member(channel, peer_id, token)
        ):
            return web.json_response(
                {
                    "error": "forbidden",
                    "message": "only a peer of the channel may list it: send "
                    "'Authorization: Bearer PEER_ID:TOKEN' with your id and the token of "
                    "your welcome",
                },
                status=403,
            )
        return web.json_response(sorted(self.state.peers_of(channel)))

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
                "sockets": len(self.guard.open),
            }
        )

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        response = web.Response(text=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _on_startup(self, app: web.Application) -> None:
        if self.witness is not None:
            self.witness.attach(self.send_witness)

    def send_witness(self, channel: str, peer_id: str, relay: WitnessRelay) -> bool:
        """The witness's answer to a peer; False if it is not connected here."""
        conn = self.state.peers_of(channel).get(peer_id)
        if conn is None:
            return False
        self.metrics.inc("witness_frames_sent_total")
        conn.send(encode_witness_relay(relay))
        return True

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
        self.guard.upgraded(request.transport)
        usage = self.guard.usage_of(request.transport)
        if usage is None:  # a transport the guard did not see (an in-process test server)
            usage = self.addresses.of(request.remote or "?", self.clock())
        conn = Connection(
            ws,
            request,
            self.config,
            self.clock(),
            usage=usage,
            metrics=self.metrics,
            budget=self.budget,
        )
        self.state.connections.add(conn)
        try:
            await self._serve(conn, request.match_info["channel"])
        finally:
            self.state.connections.discard(conn)
            if self.state.leave(conn):
                logger.info("peer left: %s", conn.describe())
                self._broadcast(conn.channel, encode_peer_left(conn.peer_id), exclude=None)
            await conn.close()
            self.addresses.release(usage, self.clock())
        return ws

    async def _serve(self, conn: Connection, raw_channel: str) -> None:
        try:
            channel = normalize_channel(raw_channel)
        except ProtocolError as exc:
            logger.info("refusing %s: %s", conn.remote, exc.message)
            conn.fail(exc.code, exc.message)
            return
        conn.channel = channel
        conn.send(encode_challenge(conn.nonce))
        while not conn.closing:
            msg = await conn.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:
                logger.info("websocket error from %s: %s", conn.describe(), msg.data)
                return
            self.metrics.inc("frames_received_total")
            if not self._within_rate(conn):
                continue
            if msg.type == WSMsgType.BINARY:
                logger.info("binary frame from %s", conn.describe())
                conn.error(ErrorCode.BINARY_FRAME, "frames must be JSON text, not binary")
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            if conn.peer_id is not None:
                conn.heard()
            try:
                self._handle_text(conn, channel, msg.data)
            except ProtocolError as exc:
                if exc.code in _JOIN_REFUSALS:
                    logger.warning("refusing %s: %s", conn.describe(), exc.message)
                    conn.fail(exc.code, exc.message)
                else:
                    logger.info("bad frame from %s: %s", conn.describe(), exc.message)
                    conn.error(exc.code, exc.message)

    def _within_rate(self, conn: Connection) -> bool:
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

    def _handle_text(self, conn: Connection, channel: str, text: str) -> None:
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
        if isinstance(frame, Keepalive):
            return
        if isinstance(frame, RoleUpdate):
            self._set_role(conn, channel, frame.role)
            return
        if isinstance(frame, WitnessRelay):
            self._to_witness(conn, channel, frame)
            return
        assert isinstance(frame, SignalRequest)
        self._relay(conn, channel, frame)

    def _to_witness(self, conn: Connection, channel: str, relay: WitnessRelay) -> None:
        if self.witness is None:
            raise ProtocolError(ErrorCode.WITNESS_UNAVAILABLE, "this server hosts no witness")
        self.metrics.inc("witness_frames_received_total")
        refusal = self.witness.receive(channel, conn.peer_id, relay)
        if refusal is not None:
            raise ProtocolError(ErrorCode.WITNESS_UNAVAILABLE, refusal)

    def _admit(self, conn: Connection, channel: str, hello: Hello) -> None:
        if self.witness is not None and hello.peer_id == self.witness.witness_id:
            raise ProtocolError(ErrorCode.ID_TAKEN, "that peer id is the witness's")
        token = new_token()
        replaced = self.state.join(conn, channel, hello, token)
        self.metrics.inc("joins_total")
        conn.joined()
        peers = self.state.peers_of(channel)
        others = sorted(peer for peer in peers if peer != hello.peer_id)
        roles = {peer: peers[peer].role for peer in others if peers[peer].role is not None}
        witness = self.witness.witness_id if self.witness is not None else None
        conn.send(encode_welcome(channel, hello.peer_id, others, roles, witness, token))
        if replaced is not None:
            logger.info("peer reconnected, replacing its old socket: %s", conn.describe())
            replaced.fail(
                ErrorCode.REPLACED,
                "this peer connected again on another socket (with its identity key)",
            )
            # The others were told the old socket's role: keep it unless the hello has one.
            conn.role = replaced.role
            if hello.role is not None:
                self._set_role(conn, channel, hello.role)
        else:
            logger.info("peer joined: %s", conn.describe())
            conn.role = hello.role
            self._broadcast(channel, encode_peer_joined(hello.peer_id, hello.role), exclude=conn)

    def _set_role(self, conn: Connection, channel: str, role: str) -> None:
        """Record ``conn``'s role and tell the others, unless it is unchanged."""
        if role == conn.role:
            return
        conn.role = role
        logger.debug("peer %s announces role %s", conn.describe(), role)
        self._broadcast(channel, encode_peer_role(conn.peer_id, role), exclude=conn)

    def _relay(self, conn: Connection, channel: str, request: SignalRequest) -> None:
        target = self.state.peers_of(channel).get(request.to)
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
        self.metrics.inc("signals_relayed_total")
        target.send(text)

    def _broadcast(self, channel: str | None, text: str, exclude: Connection | None) -> None:
        for peer in list(self.state.peers_of(channel or "").values()):
            if peer is not exclude:
                peer.send(text)


@dataclass
class RunningServer:
    """A server listening in this event loop."""

    url: str
    port: int
    server: SignalingServer
    _runner: web.AppRunner
    _listener: asyncio.AbstractServer

    def peers(self, channel: str) -> set[str]:
        """The peer ids present in ``channel`` (for code in this process, e.g. tests)."""
        return self.server.peers(channel)

    async def close(self) -> None:
        """Tell every peer the server is going away, close their sockets, stop listening."""
        self._listener.close()
        await self._runner.cleanup()
        self.server.guard.close_all()
        await self._listener.wait_closed()
        if self.server.witness is not None:
            await self.server.witness.close()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    config: ServerConfig | None = None,
    *,
    clock: Clock = time.monotonic,
    witness: WitnessService | None = None,
) -> RunningServer:
    """Start listening in the running event loop; ``port=0`` picks a free port."""
    config = config or ServerConfig()
    server = SignalingServer(config, clock, witness)
    runner = web.AppRunner(
        server.app,
        access_log=None,
        shutdown_timeout=config.close_timeout,
        handle_signals=False,
        # The guard closes a connection whose request does not arrive in time (and counts
        # it); aiohttp's own timer is only a backstop behind it.
        keepalive_timeout=config.header_timeout + config.body_timeout,
        lingering_time=config.body_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    try:
        listener = await asyncio.get_running_loop().create_server(
            server.guard.factory(runner.server), host, port, backlog=1024
        )
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from exc
    bound_port = listener.sockets[0].getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    logger.info("signaling server listening on http://%s:%d", url_host, bound_port)
    return RunningServer(f"http://{url_host}:{bound_port}", bound_port, server, runner, listener)


def run_server(
    host: str = "127.0.0.1",
    port: int = 8765,
    config: ServerConfig | None = None,
    *,
    on_ready: Callable[[RunningServer], None] | None = None,
    witness: Callable[[], WitnessService] | None = None,
) -> None:
    """Run a server until interrupted (Ctrl-C / SIGTERM); for ``raftchat serve``.
    ``witness`` makes the witness it hosts (in the server's event loop)."""

    async def serve() -> None:
        hosted = witness() if witness is not None else None
        running = await start_server(host, port, config, witness=hosted)
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
