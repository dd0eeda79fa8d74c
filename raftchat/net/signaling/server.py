"""The signaling server: introduces peers of a channel and relays their offers/answers.

A peer is present in a channel through a *session* (``session``): on a WebSocket of its own
at ``/channels/{channel}/ws``, or on a shared one at ``/ws`` that carries a client's
sessions in several channels, each tagged with its channel (frames in ``protocol``). The
server opens every session with a challenge, and admits a peer only with a hello that
proves its id with the id's key (``net/identity.py``), so nobody can hold another peer's
id. A bad frame of one session never ends another. A few HTTP endpoints:

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSMsgType, web

from raftchat.net.signaling.addresses import Addresses
from raftchat.net.signaling.config import LOOPBACK_ADDRESSES, ServerConfig
from raftchat.net.signaling.connection import Connection, QueueBudget, RateGate, RateVerdict
from raftchat.net.signaling.guard import HEADERS_TOO_LARGE, ConnectionGuard
from raftchat.net.signaling.metrics import CONTENT_TYPE, Metrics
from raftchat.net.signaling.presence import SignalingState
from raftchat.net.signaling.protocol import (
    SHARED_WS_PATH,
    ClientFrame,
    ErrorCode,
    Hello,
    Keepalive,
    LeaveSession,
    OpenSession,
    ProtocolError,
    RoleUpdate,
    SignalRequest,
    WitnessRelay,
    client_frame_of,
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
    parse_tagged_client_frame,
    utf8_length,
)
from raftchat.net.signaling.session import Session

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
        ErrorCode.SERVER_FULL,
        ErrorCode.TOO_MANY_SESSIONS_FROM_ADDRESS,
    }
)
"""Errors in a hello that end the session (on a channel's own socket: the socket); other
bad frames only get an error frame."""

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
        self.app.router.add_get(SHARED_WS_PATH, self._handle_shared_ws)
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
            (
                "shared_websockets",
                "Open shared WebSockets (sessions in several channels).",
                lambda: sum(1 for conn in self.state.connections if conn.shared),
            ),
            (
                "sessions",
                "Channel sessions open (joined or waiting for their hello), on all WebSockets.",
                lambda: sum(len(conn.sessions) for conn in self.state.connections),
            ),
            ("peers", "Peers present in a channel (joined sessions).", self.state.peer_count),
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
        session = self.state.peers_of(channel).get(peer_id)
        if session is None:
            return False
        self.metrics.inc("witness_frames_sent_total")
        session.send(encode_witness_relay(relay, channel=session.tag))
        return True

    async def _on_shutdown(self, app: web.Application) -> None:
        conns = list(self.state.connections)
        for conn in conns:
            conn.fail(ErrorCode.SHUTTING_DOWN, "signaling server is shutting down")
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)

    # ------------------------------------------------------------ WebSocket

    async def _open_socket(self, request: web.Request, shared: bool) -> Connection:
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
        conn.shared = shared
        self.state.connections.add(conn)
        return conn

    async def _close_socket(self, conn: Connection) -> None:
        self.state.connections.discard(conn)
        for session in list(conn.sessions.values()):
            self._end(session)
        await conn.close()
        if conn.usage is not None:
            self.addresses.release(conn.usage, self.clock())

    async def _handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        """A channel's own WebSocket: one session, untagged frames."""
        conn = await self._open_socket(request, shared=False)
        try:
            await self._serve_channel_socket(conn, request.match_info["channel"])
        finally:
            await self._close_socket(conn)
        return conn.ws

    async def _handle_shared_ws(self, request: web.Request) -> web.WebSocketResponse:
        """A shared WebSocket: sessions opened, tagged and ended by the client."""
        conn = await self._open_socket(request, shared=True)
        self.metrics.inc("shared_websockets_total")
        try:
            await self._serve_shared_socket(conn)
        finally:
            await self._close_socket(conn)
        return conn.ws

    async def _serve_channel_socket(self, conn: Connection, raw_channel: str) -> None:
        try:
            channel = normalize_channel(raw_channel)
        except ProtocolError as exc:
            logger.info("refusing %s: %s", conn.remote, exc.message)
            conn.fail(exc.code, exc.message)
            return
        session = self._open_session(conn, channel, tagged=False)
        async for text in self._texts(conn, conn.gate):
            try:
                self._handle_frame(session, parse_client_frame(self._checked_size(text)))
            except ProtocolError as exc:
                self._refuse(session, exc)

    async def _serve_shared_socket(self, conn: Connection) -> None:
        async for text in self._texts(conn, conn.ceiling):
            session: Session | None = None
            channel: str | None = None
            charged = False
            try:
                tagged = parse_tagged_client_frame(self._checked_size(text))
                channel = tagged.channel
                session = conn.sessions.get(channel) if channel is not None else None
                charged = True  # to the session's gate, or the socket's for no session
                if not self._within_rate(conn, session.gate if session else conn.gate, session):
                    continue
                frame = client_frame_of(tagged)
                if isinstance(frame, Keepalive) and channel is None:
                    continue
                if channel is None:
                    raise ProtocolError(
                        ErrorCode.BAD_FIELD,
                        "on a shared socket every frame but keepalive names its 'channel'",
                    )
                if isinstance(frame, OpenSession):
                    self._open_tagged(conn, channel, session)
                elif session is None:
                    raise ProtocolError(
                        ErrorCode.NO_SESSION,
                        f"no session in channel {channel!r} on this socket; send open first",
                    )
                elif isinstance(frame, LeaveSession):
                    self._end(session)
                else:
                    self._handle_frame(session, frame)
            except ProtocolError as exc:
                if not charged and not self._within_rate(conn, conn.gate, None):
                    continue
                if session is not None:
                    self._refuse(session, exc)
                else:
                    logger.info("bad frame from %s: %s", conn.describe(), exc.message)
                    conn.error(exc.code, exc.message, channel=channel)

    async def _texts(self, conn: Connection, gate: RateGate) -> AsyncIterator[str]:
        """The socket's text frames, past ``gate`` (checked before anything is parsed)."""
        while not conn.closing:
            msg = await conn.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:
                logger.info("websocket error from %s: %s", conn.describe(), msg.data)
                return
            self.metrics.inc("frames_received_total")
            if not self._within_rate(conn, gate, None):
                continue
            if msg.type == WSMsgType.BINARY:
                logger.info("binary frame from %s", conn.describe())
                conn.error(ErrorCode.BINARY_FRAME, "frames must be JSON text, not binary")
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            if conn.joined_sessions:
                conn.heard()
            yield msg.data

    def _checked_size(self, text: str) -> str:
        if utf8_length(text) > self.config.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame is larger than {self.config.max_frame_bytes} bytes; dropped",
            )
        return text

    def _within_rate(self, conn: Connection, gate: RateGate, session: Session | None) -> bool:
        """Whether a frame passes ``gate``; past it the frame is dropped, and a sender
        limited too often is closed: the session's own, else the socket."""
        verdict = gate.check(self.clock())
        if verdict is RateVerdict.PASS:
            return True
        scale = self.config.max_sessions_per_connection if gate is conn.ceiling else 1
        limit = self.config.messages_per_second * scale
        if verdict is RateVerdict.LIMITED:
            message = f"more than {limit:g} frames/s; frame dropped"
            if session is not None:
                session.error(ErrorCode.RATE_LIMITED, message)
            else:
                conn.error(ErrorCode.RATE_LIMITED, message)
            return False
        if session is not None and session.tagged:
            logger.warning("ending flooding session %s", session.describe())
            self._fail(session, ErrorCode.FLOODING, "kept sending over the rate limit; left")
        else:
            logger.warning("closing flooding peer %s", conn.describe())
            conn.fail(ErrorCode.FLOODING, "kept sending over the rate limit; disconnected")
        return False

    # ------------------------------------------------------------ sessions

    def _open_session(self, conn: Connection, channel: str, tagged: bool) -> Session:
        session = Session(conn, channel, tagged, self.clock())
        conn.sessions[channel] = session
        self.metrics.inc("sessions_opened_total")
        session.send(encode_challenge(session.nonce, channel=session.tag))
        return session

    def _open_tagged(self, conn: Connection, channel: str, current: Session | None) -> None:
        if current is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_JOINED, f"this socket already has a session in {channel!r}"
            )
        if len(conn.sessions) >= self.config.max_sessions_per_connection:
            conn.error(
                ErrorCode.TOO_MANY_SESSIONS,
                f"this socket has its maximum of {self.config.max_sessions_per_connection} "
                "sessions; leave one first or open another socket",
                channel=channel,
            )
            return
        session = self._open_session(conn, channel, tagged=True)
        session.expect_hello(self.config.hello_timeout, self._hello_expired)

    def _hello_expired(self, session: Session) -> None:
        logger.info("no hello from %s in time", session.describe())
        self._fail(
            session,
            ErrorCode.HELLO_TIMEOUT,
            f"no hello within {self.config.hello_timeout:g} s of opening the session",
        )

    def _refuse(self, session: Session, exc: ProtocolError) -> None:
        """Answer a frame of ``session`` that broke a rule: a refused hello ends the
        session, anything else gets an error frame."""
        if exc.code in _JOIN_REFUSALS:
            logger.warning("refusing %s: %s", session.describe(), exc.message)
            self._fail(session, exc.code, exc.message)
        else:
            logger.info("bad frame from %s: %s", session.describe(), exc.message)
            session.error(exc.code, exc.message)

    def _fail(self, session: Session, code: ErrorCode, message: str) -> None:
        """End ``session`` with a fatal error: on a channel's own socket, the socket."""
        if not session.tagged:
            session.conn.fail(code, message)
            return
        if session.ended:
            return
        self.metrics.inc("errors_total", code)
        session.send(session.fatal_frame(code, message))
        self._end(session)

    def _end(self, session: Session) -> None:
        """The session is over: the peer left its channel (the others are told)."""
        if not session.end():
            return
        if self.state.leave(session):
            logger.info("peer left: %s", session.describe())
            self._broadcast(
                session.channel,
                lambda tag: encode_peer_left(session.peer_id or "", channel=tag),
                exclude=None,
            )

    def _handle_frame(self, session: Session, frame: ClientFrame) -> None:
        if isinstance(frame, OpenSession | LeaveSession):
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE, "open and leave are frames of a shared socket (/ws)"
            )
        if isinstance(frame, Hello):
            if session.peer_id is not None:
                raise ProtocolError(ErrorCode.ALREADY_JOINED, "hello was already accepted")
            self._admit(session, frame)
            return
        if session.peer_id is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello before anything else")
        if isinstance(frame, Keepalive):
            return
        if isinstance(frame, RoleUpdate):
            self._set_role(session, frame.role)
            return
        if isinstance(frame, WitnessRelay):
            self._to_witness(session, frame)
            return
        assert isinstance(frame, SignalRequest)
        self._relay(session, frame)

    def _to_witness(self, session: Session, relay: WitnessRelay) -> None:
        if self.witness is None:
            raise ProtocolError(ErrorCode.WITNESS_UNAVAILABLE, "this server hosts no witness")
        self.metrics.inc("witness_frames_received_total")
        refusal = self.witness.receive(session.channel, session.peer_id or "", relay)
        if refusal is not None:
            raise ProtocolError(ErrorCode.WITNESS_UNAVAILABLE, refusal)

    def _admit(self, session: Session, hello: Hello) -> None:
        if self.witness is not None and hello.peer_id == self.witness.witness_id:
            raise ProtocolError(ErrorCode.ID_TAKEN, "that peer id is the witness's")
        channel = session.channel
        token = new_token()
        replaced = self.state.join(session, channel, hello, token)
        self.metrics.inc("joins_total")
        session.conn.joined()
        peers = self.state.peers_of(channel)
        others = sorted(peer for peer in peers if peer != hello.peer_id)
        roles = {peer: peers[peer].role for peer in others if peers[peer].role is not None}
        witness = self.witness.witness_id if self.witness is not None else None
        session.send(
            encode_welcome(
                channel, hello.peer_id, others, roles, witness, token, tagged=session.tagged
            )
        )
        if replaced is not None:
            logger.info("peer reconnected, replacing its old session: %s", session.describe())
            self._fail(
                replaced,
                ErrorCode.REPLACED,
                "this peer connected again on another socket (with its identity key)",
            )
            # The others were told the old session's role: keep it unless the hello has one.
            session.role = replaced.role
            if hello.role is not None:
                self._set_role(session, hello.role)
        else:
            logger.info("peer joined: %s", session.describe())
            session.role = hello.role
            self._broadcast(
                channel,
                lambda tag: encode_peer_joined(hello.peer_id, hello.role, channel=tag),
                exclude=session,
            )

    def _set_role(self, session: Session, role: str) -> None:
        """Record ``session``'s role and tell the others, unless it is unchanged."""
        if role == session.role:
            return
        session.role = role
        logger.debug("peer %s announces role %s", session.describe(), role)
        peer_id = session.peer_id or ""
        self._broadcast(
            session.channel,
            lambda tag: encode_peer_role(peer_id, role, channel=tag),
            exclude=session,
        )

    def _relay(self, session: Session, request: SignalRequest) -> None:
        channel = session.channel
        target = self.state.peers_of(channel).get(request.to)
        if target is None or target is session:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PEER,
                f"no peer {request.to!r} in channel {channel!r}; wait for its peer_joined",
            )
        try:
            text = encode_relayed_signal(session.peer_id or "", request.payload, channel=target.tag)
        except (ValueError, RecursionError):
            raise ProtocolError(ErrorCode.BAD_FIELD, "payload is nested too deeply") from None
        if utf8_length(text) > self.config.max_frame_bytes:  # re-encoding can grow it
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"relayed frame would exceed {self.config.max_frame_bytes} bytes; dropped",
            )
        self.metrics.inc("signals_relayed_total")
        target.send(text)

    def _broadcast(
        self, channel: str, encode: Callable[[str | None], str], exclude: Session | None
    ) -> None:
        """Send a frame to every peer of ``channel``, encoded once per tag."""
        texts: dict[str | None, str] = {}
        for peer in list(self.state.peers_of(channel).values()):
            if peer is not exclude:
                tag = peer.tag
                if tag not in texts:
                    texts[tag] = encode(tag)
                peer.send(texts[tag])


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
