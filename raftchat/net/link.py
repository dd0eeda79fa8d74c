"""One peer link of the mesh: a peer connection with its "raft" DataChannel.

A link owns the negotiation with one peer (offer/answer over signaling, each
attempt tagged with a random *session* id so late signals of an old attempt are
ignored), its send queue (``net/send_queue.py``), the receive path, RTT pings, and
reconnection with backoff. The mesh drives it; the engine (``net/engines/``) makes its
peer connections and reports their events to it.

Every new DataChannel first runs the channel handshake (``net/auth.py``): the peer
proves with its identity key that it holds the id this link is for (and, in a private
channel, that it knows the passphrase). The link stays CONNECTING until then, messages
sent meanwhile wait in the queue, and any frame but a handshake frame that arrives
before is dropped. Only then does the link become OPEN. A failed handshake, or a peer
that keeps sending frames that are malformed, out of turn or over the rate limits
(``net/inbound_limits.py``), fails the link with a longer backoff (``auth_retry_*``),
during which that peer's offers are ignored. In a private channel a failed handshake is
also charged to the peer and to its address (``net/guess_throttle.py``): when either
budget is spent, no handshake with that peer starts until it refills, while every other
peer is unaffected.

Glare is avoided by rule: the peer with the smaller id always offers. The
answerer never offers; when it wants a new connection it sends a ``restart``
request and waits for the next offer. A request names the last session the
answerer saw (None for a fresh process): a request that does not name the offer
in flight tells the offerer that offer was lost (e.g. it went to a process of the
peer that died since), so it offers again at once instead of waiting for the
connect timeout. A new answering link asks at once, and again after
``offer_wait`` (then twice as long each time) until an offer arrives.

Dead peers are noticed by silence: an open link that receives no frame at all for
``dead_after`` (each side pings every ``ping_interval``) fails and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from raftchat.net import framing
from raftchat.net.auth import AuthError, AuthErrorKind, Handshake, encode_reject
from raftchat.net.engines.base import Engine, EngineError, PeerConnection
from raftchat.net.guess_throttle import GuessThrottle, remote_address
from raftchat.net.identity import NodeIdentity
from raftchat.net.inbound_limits import InboundLimits
from raftchat.net.link_info import LinkInfo, LinkState
from raftchat.net.link_signals import SIGNAL_ANSWER, SIGNAL_OFFER, SIGNAL_RESTART, SignalSender
from raftchat.net.mesh_config import MeshConfig
from raftchat.net.send_queue import SendQueue

logger = logging.getLogger(__name__)

_NOT_A_GUESS = frozenset(
    {
        AuthErrorKind.THROTTLED,  # no handshake was started
        AuthErrorKind.PASSPHRASE_REQUIRED,  # an open and a private node: no passphrase tried
        AuthErrorKind.PEER_HAS_NO_PASSPHRASE,
        AuthErrorKind.INCOMPATIBLE,  # another release of raftchat: nothing was tried
    }
)
"""Handshake failures that are not charged to the peer's guess budget."""


class Link:
    """The connection to one peer. Created and driven by :class:`~raftchat.net.mesh.Mesh`.

    It is the :class:`~raftchat.net.engines.base.ConnectionHandler` of its connections.
    """

    def __init__(
        self,
        identity: NodeIdentity,
        peer: str,
        config: MeshConfig,
        engine: Engine,
        signaling: SignalSender,
        deliver: Callable[[str, bytes], None],
        notify: Callable[[Link], None],
        guess_throttle: GuessThrottle | None = None,
    ) -> None:
        self.self_id = identity.node_id
        self._identity = identity
        "Proves ``self_id`` in every handshake."
        self.peer = peer
        self.is_offerer = self.self_id < peer
        self._config = config
        self._connection_settings = config.connection_settings()
        self._engine = engine
        self._signaling = signaling
        self._deliver = deliver
        self._notify = notify
        self._guess_throttle = guess_throttle
        "Shared by the mesh's links: failed handshakes allowed per peer and per address."
        self._remote_address: str | None = None
        "Where the open connection comes from, as the guess throttle counts it."
        self._loop = asyncio.get_running_loop()

        self.state = LinkState.CONNECTING
        self._closing = False
        self._connection: PeerConnection | None = None
        "The connection of the current attempt."
        self._open_connection: PeerConnection | None = None
        "The same once its DataChannel is open (frames can flow); None before."
        self._session: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        "Negotiation tasks; cancelled on close."
        self._teardowns: set[asyncio.Task[None]] = set()
        "Connections being closed; never cancelled (a half-closed one leaks tasks)."
        self._attempt_started = self._loop.time()
        self._offer_sent_at: float | None = None
        "When the offer of the current attempt went out (offerer); None until it has."
        self._offer_requested_at: float | None = None
        "When we last asked the offerer for an offer (answerer)."
        self._offer_wait = config.offer_wait
        "How long to wait before asking again; doubles per request within an attempt."
        self._last_received = self._attempt_started
        "When the last frame from the peer arrived."
        self._last_maintained = self._attempt_started
        self._retry_at: float | None = None
        self._backoff = config.reconnect_initial

        self._queue = SendQueue(
            max_messages=config.max_queued_messages,
            max_bytes=config.max_queued_bytes,
            max_messages_per_frame=config.max_messages_per_frame,
            high_water_bytes=config.send_buffer_high_bytes,
        )
        self._flush_handle: asyncio.Handle | None = None
        self._max_frame_bytes: int | None = None
        self._reassembler = framing.Reassembler(config.max_message_bytes)
        self._limits = InboundLimits(config, self._loop.time())

        self._ping_nonce: int | None = None
        self._last_ping = 0.0
        self._rtt_ms: float | None = None

        self._messages_received = 0
        self._bytes_received = 0
        self._frames_sent = 0
        self._frames_received = 0
        self._malformed_frames = 0
        self._connects = 0
        self._candidate_types: tuple[str | None, str | None] = (None, None)

        self._handshake: Handshake | None = None
        "The handshake on the current DataChannel; None before it opens."
        self._authenticated = False
        self._auth_error: AuthError | None = None
        self._auth_failures = 0
        self._penalties = 0
        "Consecutive penalized failures (handshake, misbehaviour); sets the long backoff."
        self._quiet_until = 0.0
        "Until then, offers and restart requests from the peer are ignored."
        self._last_error: str | None = None
        self._unauthenticated_frames = 0
        self._abuse_disconnects = 0
        self._ignored_signals = 0

    # --- public, used by the mesh ---------------------------------------------------

    def start(self) -> None:
        """Begin connecting: the offerer offers; the answerer asks for an offer.

        The answerer's request matters when this process is a restarted one: the
        peer may still hold a link to the previous process and would otherwise notice
        only when that link times out.
        """
        if self.is_offerer:
            self._spawn(self._offer())
        else:
            self._request_offer()

    def info(self) -> LinkInfo:
        connection = self._open_connection
        return LinkInfo(
            peer=self.peer,
            state=self.state,
            rtt_ms=self._rtt_ms,
            messages_sent=self._queue.messages_sent,
            messages_received=self._messages_received,
            bytes_sent=self._queue.bytes_sent,
            bytes_received=self._bytes_received,
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            malformed_frames=self._malformed_frames + self._reassembler.interrupted_messages,
            dropped_overflow=self._queue.dropped_overflow,
            dropped_by_fault=self._engine.frames_dropped(self.peer),
            queued_messages=self._queue.queued_messages,
            queued_bytes=self._queue.queued_bytes,
            buffered_amount=connection.buffered_amount if connection is not None else 0,
            max_frame_bytes=self._max_frame_bytes,
            connects=self._connects,
            local_candidate_type=self._candidate_types[0],
            remote_candidate_type=self._candidate_types[1],
            authenticated=self._authenticated and self._config.passphrase is not None,
            auth_error=self._auth_error.message if self._auth_error else None,
            auth_error_kind=self._auth_error.kind if self._auth_error else None,
            auth_failures=self._auth_failures,
            last_error=self._last_error,
            unauthenticated_frames=self._unauthenticated_frames,
            rate_limited_frames=self._limits.rate_limited_frames,
            abuse_disconnects=self._abuse_disconnects,
            ignored_signals=self._ignored_signals,
        )

    def send(self, data: bytes, urgent: bool = False) -> bool:
        """Queue one message; False if the link is not open or its queue is full.

        While the handshake runs on a fresh DataChannel the message is queued and
        sent once the peer is authenticated (dropped if it never is). An ``urgent``
        message jumps the queue of normal ones (see ``net/send_queue.py``); one too large
        for a single frame is sent as a normal message.
        """
        if len(data) > self._config.max_message_bytes:
            raise ValueError(
                f"message of {len(data)} bytes exceeds max_message_bytes="
                f"{self._config.max_message_bytes}; split it before sending"
            )
        if not self._accepts_messages():
            return False
        max_frame = self._max_frame_bytes or self._config.max_frame_bytes
        if not self._queue.push(data, urgent, max_frame):
            return False
        if self._flush_handle is None:
            # Flush once the current burst of sends is over, so it becomes one frame.
            self._flush_handle = self._loop.call_soon(self._flush)
        return True

    def _accepts_messages(self) -> bool:
        if self.state == LinkState.OPEN:
            return True
        handshake = self._handshake
        return self._open_connection is not None and handshake is not None and not handshake.failed

    def handle_signal(self, payload: dict[str, Any]) -> None:
        """React to a validated signal payload from this link's peer."""
        if self._closing:
            return
        kind = payload["type"]
        session = payload.get("session")
        if kind != SIGNAL_ANSWER and self._loop.time() < self._quiet_until:
            # A peer that just failed the handshake or misbehaved may not make us
            # set up connection after connection.
            self._ignored_signals += 1
            logger.debug("link %s: %s during the penalty backoff ignored", self.peer, kind)
            return
        if kind == SIGNAL_OFFER and not self.is_offerer:
            if session == self._session:
                logger.debug("link %s: duplicate offer for session %s ignored", self.peer, session)
                return
            self._spawn(self._accept_offer(session, payload["sdp"]))
        elif kind == SIGNAL_ANSWER and self.is_offerer:
            if session != self._session:
                logger.debug("link %s: answer for old session %s ignored", self.peer, session)
                return
            self._spawn(self._accept_answer(session, payload["sdp"]))
        elif kind == SIGNAL_RESTART and self.is_offerer:
            self._handle_restart_request(session)
        else:
            logger.warning(
                "link %s: unexpected %r signal for the %s side ignored",
                self.peer,
                kind,
                "offering" if self.is_offerer else "answering",
            )

    def reset(self) -> None:
        """Tear the connection down and connect again now (the caller believes it dead)."""
        if self._closing:
            return
        if self.state == LinkState.FAILED and self._penalties and self._retry_at is not None:
            logger.debug("link %s: reset ignored during the penalty backoff", self.peer)
            return
        logger.info("link %s: reset requested", self.peer)
        self._retry_at = None
        self._mark_down(LinkState.CONNECTING)
        self._start_attempt()

    def maintain(self, now: float) -> None:
        """Periodic work: pings, dead-link detection, connect timeouts, retries."""
        if self._closing:
            return
        if now - self._last_maintained > self._config.dead_after / 2:
            # This process was not running (paused, or starved of CPU): the peer's frames
            # may be waiting unread, so its silence proves nothing yet.
            self._last_received = max(self._last_received, now)
        self._last_maintained = now
        if self.state == LinkState.OPEN:
            if now - self._last_received > self._config.dead_after:
                self._fail(f"nothing received for {self._config.dead_after:g} s")
            elif now - self._last_ping >= self._config.ping_interval:
                self._send_ping(now)
        elif self.state == LinkState.CONNECTING:
            if now - self._attempt_started > self._config.connect_timeout:
                self._attempt_timed_out()
            elif (
                not self.is_offerer
                and self._connection is None
                and self._offer_requested_at is not None
                and now - self._offer_requested_at >= self._offer_wait
            ):
                self._offer_wait *= 2  # the peer may be gone for a while: ask less often
                self._request_offer()
        elif (
            self.state == LinkState.FAILED and self._retry_at is not None and now >= self._retry_at
        ):
            self._retry_at = None
            self._set_state(LinkState.CONNECTING)
            self._start_attempt()

    def _attempt_timed_out(self) -> None:
        if self._handshake is not None and not self._handshake.failed:
            self._auth_failed(
                AuthError(
                    AuthErrorKind.TIMEOUT,
                    f"peer {self.peer} did not finish the channel handshake within "
                    f"{self._config.connect_timeout:g} s (an incompatible raftchat?)",
                )
            )
        else:
            self._fail("connection attempt timed out")

    async def close(self) -> None:
        """Close for good: no more retries, events or deliveries."""
        if self._closing:
            return
        self._closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_connection()
        if self._teardowns:
            await asyncio.gather(*self._teardowns, return_exceptions=True)
        self._discard_queue()
        self._set_state(LinkState.CLOSED)

    # --- negotiation ----------------------------------------------------------------

    def _start_attempt(self) -> None:
        self._attempt_started = self._loop.time()
        if self.is_offerer:
            self._spawn(self._offer())
        else:
            self._offer_wait = self._config.offer_wait
            self._request_offer()

    def _request_offer(self) -> None:
        """Ask the offerer for a new offer, naming the last session we saw."""
        self._offer_requested_at = self._loop.time()
        self._spawn(self._send_signal({"type": SIGNAL_RESTART, "session": self._session}))

    def _handle_restart_request(self, session: str | None) -> None:
        if self.state == LinkState.CONNECTING and session != self._session:
            # The peer has not seen the offer of this attempt: it crossed the request,
            # or it was lost (sent to a process of the peer that is gone).
            sent_at = self._offer_sent_at
            if sent_at is None or self._loop.time() - sent_at < self._config.offer_in_flight:
                logger.debug("link %s: restart request crossed our offer; ignored", self.peer)
                return
            if self._penalties:
                logger.debug("link %s: restart request during the penalty ignored", self.peer)
                return
            logger.info("link %s: peer never got our offer; offering again", self.peer)
        elif self.state == LinkState.OPEN and session is not None and session != self._session:
            logger.debug("link %s: restart request for old session %s ignored", self.peer, session)
            return
        else:
            logger.info("link %s: peer asked for a new connection", self.peer)
        self.reset()

    async def _offer(self) -> None:
        self._offer_sent_at = None
        async with self._lock:
            if self.state != LinkState.CONNECTING:
                return  # the attempt failed while this offer waited for the lock
            self._drop_connection()
            session = secrets.token_hex(8)
            self._session = session
            self._attempt_started = self._loop.time()
            connection = self._new_connection()
            async with self._unless_replaced(connection):
                sdp = await connection.create_offer()
            if connection is not self._connection:
                return
            self._offer_sent_at = self._loop.time()
        await self._send_signal({"type": SIGNAL_OFFER, "session": session, "sdp": sdp})

    @contextlib.asynccontextmanager
    async def _unless_replaced(self, connection: PeerConnection) -> AsyncIterator[None]:
        """Swallow an error of ``connection``'s negotiation if it was dropped meanwhile.

        A reset, failure or newer offer closes the connection under a negotiation in
        progress; its "connection is closed" error says nothing about the current one.
        """
        try:
            yield
        except Exception as exc:
            if connection is self._connection:
                raise
            logger.debug("link %s: negotiation of a replaced connection ended: %r", self.peer, exc)

    async def _accept_offer(self, session: str, sdp: str) -> None:
        async with self._lock:
            self._drop_connection()
            if self.state != LinkState.CONNECTING:
                self._mark_down(LinkState.CONNECTING)
            self._session = session
            self._attempt_started = self._loop.time()
            connection = self._new_connection()
            async with self._unless_replaced(connection):
                answer = await connection.create_answer(sdp)
            if connection is not self._connection:
                return
        await self._send_signal({"type": SIGNAL_ANSWER, "session": session, "sdp": answer})

    async def _accept_answer(self, session: str, sdp: str) -> None:
        async with self._lock:
            connection = self._connection
            if connection is None or session != self._session or not connection.awaiting_answer:
                logger.debug("link %s: answer arrived with no offer pending", self.peer)
                return
            async with self._unless_replaced(connection):
                await connection.accept_answer(sdp)

    async def _send_signal(self, payload: dict[str, Any]) -> None:
        if not await self._signaling.send_signal(self.peer, payload):
            # The connect timeout retries; nothing else to do while signaling is down.
            logger.info("link %s: could not send %s (signaling down)", self.peer, payload["type"])

    def _new_connection(self) -> PeerConnection:
        connection = self._engine.connect(self.peer, self._connection_settings, self)
        self._connection = connection
        return connection

    # --- events of the connection (ConnectionHandler) -------------------------------

    def channel_open(self, connection: PeerConnection) -> None:
        if (
            connection is not self._connection
            or self._closing
            or self._open_connection is connection
        ):
            return
        self._open_connection = connection
        self._max_frame_bytes = self._frame_limit(connection)
        self._reassembler.reset()
        self._authenticated = False
        pair = connection.selected_pair()
        self._candidate_types = (pair.local_type, pair.remote_type) if pair else (None, None)
        self._remote_address = remote_address(pair)
        self._start_handshake(connection)

    def frame_received(self, connection: PeerConnection, frame: bytes | str) -> None:
        if connection is self._open_connection:
            self._on_frame(frame)

    def send_buffer_low(self, connection: PeerConnection) -> None:
        if connection is self._open_connection:
            self._flush()

    def channel_closed(self, connection: PeerConnection) -> None:
        if connection is self._open_connection:
            self._fail("data channel closed")

    def connection_failed(self, connection: PeerConnection, reason: str) -> None:
        if connection is self._connection:
            self._fail(reason)

    def _frame_limit(self, connection: PeerConnection) -> int:
        """Largest frame to send: our limit, or less if the remote accepts less."""
        remote = connection.remote_max_message_size
        limit = self._config.max_frame_bytes
        if remote:
            limit = min(limit, remote)
        return max(limit, framing.MIN_FRAME_BYTES)

    # --- the channel handshake ------------------------------------------------------

    def _start_handshake(self, connection: PeerConnection) -> None:
        try:
            local_fingerprint, remote_fingerprint = connection.dtls_fingerprints()
        except Exception as exc:  # engine internals changed, or the transport went away
            logger.exception("link %s: cannot read the DTLS certificates", self.peer)
            self._fail(f"cannot read the DTLS certificates ({exc!r})")
            return
        refusal = self._guessing_throttled()
        if refusal is not None:
            self._auth_failed(
                AuthError(AuthErrorKind.THROTTLED, f"channel {self._config.channel!r}: {refusal}")
            )
            return
        self._handshake = Handshake(
            channel=self._config.channel,
            identity=self._identity,
            peer_id=self.peer,
            passphrase=self._config.passphrase,
            local_fingerprint=local_fingerprint,
            remote_fingerprint=remote_fingerprint,
        )
        logger.debug("link %s: data channel open, authenticating", self.peer)
        self._send_control(framing.encode_auth(self._handshake.start()))

    def _guessing_throttled(self) -> str | None:
        """Why this peer (or its address) may not start a handshake now, or None."""
        if self._config.passphrase is None or self._guess_throttle is None:
            return None
        return self._guess_throttle.refusal(self.peer, self._remote_address, self._loop.time())

    def _on_auth(self, payload: bytes) -> None:
        handshake = self._handshake
        if handshake is None or handshake.complete:
            self._malformed_frames += 1
            self._offence("handshake message out of turn")
            return
        if handshake.failed:
            return  # e.g. the peer's REJECT after we gave up ourselves
        try:
            replies = handshake.receive(payload)
        except AuthError as error:
            if not error.from_peer:
                self._send_control(framing.encode_auth(encode_reject(error.kind)))
            self._auth_failed(error)
            return
        for reply in replies:
            self._send_control(framing.encode_auth(reply))
        if handshake.complete and self._open_connection is not None:
            self._on_authenticated()

    def _on_authenticated(self) -> None:
        if self._config.passphrase is not None and self._guess_throttle is not None:
            self._guess_throttle.vouch(self.peer)
        self._authenticated = True
        self._auth_error = None
        self._auth_failures = 0
        self._penalties = 0
        self._quiet_until = 0.0
        self._connects += 1
        self._backoff = self._config.reconnect_initial
        self._retry_at = None
        logger.info(
            "link %s: open, %s (frames up to %s bytes)",
            self.peer,
            "peer's id and passphrase proven" if self._config.passphrase else "peer's id proven",
            self._max_frame_bytes,
        )
        self._last_received = self._loop.time()
        self._set_state(LinkState.OPEN)
        self._send_ping(self._loop.time())
        self._flush()

    def _auth_failed(self, error: AuthError) -> None:
        if (
            self._config.passphrase is not None
            and self._guess_throttle is not None
            and error.kind not in _NOT_A_GUESS
        ):
            # The failure is the peer's (a wrong guess, a REJECT, garbage, silence): it
            # costs the peer and its address, never the other peers' handshakes.
            self._guess_throttle.charge(self.peer, self._remote_address, self._loop.time())
        self._auth_error = error
        self._auth_failures += 1
        logger.warning("link %s: handshake failed: %s", self.peer, error.message)
        self._fail(f"handshake failed: {error.message}", penalty=True)

    # --- failure and teardown -------------------------------------------------------

    def _fail(self, reason: str, penalty: bool = False) -> None:
        """The connection is dead: retry later; ``penalty`` for the peer's fault (long wait)."""
        if self._closing or self.state == LinkState.FAILED:
            return
        now = self._loop.time()
        if penalty:
            self._penalties += 1
            delay = min(
                self._config.auth_retry_initial * 2 ** (self._penalties - 1),
                self._config.auth_retry_max,
            )
            self._quiet_until = now + delay / 2
        else:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self._config.reconnect_max)
        logger.info("link %s: %s; retrying in %.1f s", self.peer, reason, delay)
        self._last_error = reason
        self._retry_at = now + delay
        self._mark_down(LinkState.FAILED)

    def _mark_down(self, state: LinkState) -> None:
        """Drop the current connection (closed in the background) and its queue."""
        self._drop_connection()
        self._discard_queue()
        self._set_state(state)

    def _forget_connection(self) -> PeerConnection | None:
        """Detach the current connection (returned, for closing) and its channel state."""
        connection, self._connection = self._connection, None
        self._open_connection = None
        self._handshake = None
        self._authenticated = False
        return connection

    def _drop_connection(self) -> None:
        """Forget the current connection (a new one replaces it); it closes in the background."""
        connection = self._forget_connection()
        if connection is not None:
            self._close_in_background(connection)

    async def _close_connection(self) -> None:
        connection = self._forget_connection()
        if connection is not None:
            await asyncio.shield(self._close_in_background(connection))

    def _close_in_background(self, connection: PeerConnection) -> asyncio.Task[None]:
        task = asyncio.ensure_future(connection.close())
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return task

    def _discard_queue(self) -> None:
        self._queue.clear()
        self._ping_nonce = None

    def _set_state(self, state: LinkState) -> None:
        if state == self.state:
            return
        self.state = state
        self._notify(self)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(self._guarded(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coroutine: Awaitable[None]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Bad SDP from a peer, a closed connection mid-negotiation, ...
            logger.warning("link %s: negotiation failed: %r", self.peer, exc)
            self._fail(f"negotiation failed ({exc!r})")

    # --- sending --------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand queued messages to the DataChannel as frames (see ``net/send_queue.py``)."""
        self._flush_handle = None
        connection = self._open_connection
        if connection is None or self._max_frame_bytes is None or not self._authenticated:
            return
        try:
            for frame in self._queue.frames(
                self._max_frame_bytes, lambda: connection.buffered_amount
            ):
                connection.send(frame)
                self._frames_sent += 1
        except EngineError as exc:
            self._fail(f"send failed ({exc})")

    def _send_ping(self, now: float) -> None:
        self._last_ping = now
        nonce = time.monotonic_ns()
        if self._send_control(framing.encode_ping(nonce)):
            self._ping_nonce = nonce

    def _send_control(self, frame: bytes) -> bool:
        connection = self._open_connection
        if connection is None:
            return False
        try:
            connection.send(frame)
        except EngineError as exc:
            self._fail(f"send failed ({exc})")
            return False
        self._frames_sent += 1
        return True

    # --- receiving ------------------------------------------------------------------

    def _on_frame(self, data: bytes | str) -> None:
        """Handle one received frame. Never raises: bad frames are counted and dropped."""
        self._frames_received += 1
        now = self._loop.time()
        self._last_received = now
        if not self._limits.admit_frame(now):
            self._offence("frames above inbound_frames_per_second")
            return
        try:
            if not isinstance(data, bytes):
                raise framing.FramingError("text frame on the binary raft channel")
            frame = framing.decode_frame(data)
            if isinstance(frame, framing.Auth):
                self._on_auth(frame.payload)
                return
            if not self._authenticated:
                self._unauthenticated_frames += 1
                self._offence("frame before the handshake")
                return
            if isinstance(frame, framing.Batch):
                if not self._limits.admit_messages(now, len(frame.messages)):
                    self._offence("messages above inbound_messages_per_second")
                    return
                for message in frame.messages:
                    self._deliver_message(message)
            elif isinstance(frame, framing.Chunk):
                message = self._reassembler.feed(frame)
                if message is not None:
                    self._deliver_message(message)
            elif isinstance(frame, framing.Ping):
                self._send_control(framing.encode_pong(frame.nonce))
            elif isinstance(frame, framing.Pong) and frame.nonce == self._ping_nonce:
                self._ping_nonce = None
                self._rtt_ms = (time.monotonic_ns() - frame.nonce) / 1e6
        except framing.FramingError as exc:
            self._malformed_frames += 1
            logger.debug("link %s: malformed frame dropped: %s", self.peer, exc)
            self._offence("malformed frames")
        except Exception:  # a bug here must not reach the engine's event dispatch
            self._malformed_frames += 1
            logger.exception("link %s: receiving a frame failed", self.peer)

    def _offence(self, what: str) -> None:
        """Count one dropped frame against the peer; disconnect it once it has too many."""
        if self._limits.forgive_offence(self._loop.time()):
            return
        self._abuse_disconnects += 1
        logger.warning("link %s: disconnecting a misbehaving peer (%s)", self.peer, what)
        self._fail(f"peer misbehaved: too many dropped frames ({what})", penalty=True)

    def _deliver_message(self, message: bytes) -> None:
        self._messages_received += 1
        self._bytes_received += len(message)
        try:
            self._deliver(self.peer, message)
        except Exception:
            logger.exception("link %s: message handler failed", self.peer)
