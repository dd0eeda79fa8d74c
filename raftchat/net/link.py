"""One peer link of the mesh: an RTCPeerConnection with its "raft" DataChannel.

A link owns the negotiation with one peer (offer/answer over signaling, each
attempt tagged with a random *session* id so late signals of an old attempt are
ignored), the send queue with batching, chunking and backpressure, the receive
path, RTT pings, and reconnection with backoff. The mesh drives it.

The send queue has two lanes. *Urgent* messages (small control messages: heartbeats,
votes, responses) go out before anything in the normal lane and regardless of the
send-buffer high-water mark, so they never wait behind a backlog of bulk data in this
queue; each lane keeps its own order, but an urgent message may overtake normal ones.

Every new DataChannel first runs the channel handshake (``net/auth.py``): the link
stays CONNECTING until the peer is authenticated, messages sent meanwhile wait in the
queue, and any frame but a handshake frame that arrives before is dropped. Only then
does the link become OPEN. A failed handshake, or a peer that keeps sending frames
that are malformed, out of turn or over the rate limits, fails the link with a longer
backoff (``auth_retry_*``), during which that peer's offers are ignored.

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
Traffic dropped by the mesh's fault filter counts as silence, and a connection
attempt fails while the filter drops the peer's traffic, as in a real partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from cryptography.hazmat.primitives import hashes

from raftchat.net import framing
from raftchat.net.auth import AuthError, AuthErrorKind, Handshake, encode_reject
from raftchat.net.certificate import new_peer_connection
from raftchat.net.ice import build_rtc_configuration, host_candidates, selected_pair
from raftchat.net.sctp_tuning import limit_flight
from raftchat.net.udp_buffer import enlarge_receive_buffer

if TYPE_CHECKING:
    from raftchat.net.mesh import MeshConfig

logger = logging.getLogger(__name__)

CHANNEL_LABEL = "raft"

# Signal payload types exchanged between the two ends of a link.
SIGNAL_OFFER = "offer"
SIGNAL_ANSWER = "answer"
SIGNAL_RESTART = "restart"

Direction = Literal["send", "recv"]


class SignalSender(Protocol):
    """The part of the signaling client the mesh uses."""

    async def send_signal(self, to: str, payload: dict) -> bool: ...


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkInfo:
    """A snapshot of one link's state and counters."""

    peer: str
    state: LinkState
    rtt_ms: float | None
    "Round-trip time of the mesh's last ping/pong on the DataChannel."
    messages_sent: int
    messages_received: int
    bytes_sent: int
    "Application payload bytes handed to the DataChannel."
    bytes_received: int
    frames_sent: int
    frames_received: int
    malformed_frames: int
    "Frames (or chunked messages) received that did not follow the format; dropped."
    dropped_overflow: int
    "Messages refused because the send queue was full (the newest are dropped)."
    dropped_by_fault: int
    "Messages/frames dropped by the fault filter (simulated partition)."
    queued_messages: int
    queued_bytes: int
    buffered_amount: int
    "Bytes queued inside aiortc's DataChannel (SCTP send buffer)."
    max_frame_bytes: int | None
    "Largest frame sent on the current connection (from the remote's max message size)."
    connects: int
    "How many times this link has opened."
    local_candidate_type: str | None
    remote_candidate_type: str | None
    authenticated: bool = False
    "The peer proved it knows the channel passphrase on this connection (False if open)."
    auth_error: str | None = None
    """Why the last handshake with this peer failed, in words a user can act on (e.g.
    "wrong passphrase for channel 'x' ..."); None once a handshake succeeds."""
    auth_error_kind: AuthErrorKind | None = None
    "The kind of ``auth_error`` (wrong passphrase, passphrase required, intercepted...)."
    auth_failures: int = 0
    "Handshakes with this peer that failed since the last one that succeeded."
    last_error: str | None = None
    "Why the link last went down (handshake, misbehaviour, timeout, closed...)."
    unauthenticated_frames: int = 0
    "Frames dropped because they arrived before the handshake was done."
    rate_limited_frames: int = 0
    "Frames dropped because the peer sent faster than the inbound limits allow."
    abuse_disconnects: int = 0
    "Times the link was cut because the peer kept sending bad or excess frames."
    ignored_signals: int = 0
    "Offers/restart requests ignored while the peer was in its penalty backoff."


class Link:
    """The connection to one peer. Created and driven by :class:`~raftchat.net.mesh.Mesh`."""

    def __init__(
        self,
        self_id: str,
        peer: str,
        config: MeshConfig,
        signaling: SignalSender,
        deliver: Callable[[str, bytes], None],
        notify: Callable[[Link], None],
        should_drop: Callable[[str, Direction], bool],
        partitioned: Callable[[str], bool] | None = None,
        guess_budget: framing.TokenBucket | None = None,
    ) -> None:
        self.self_id = self_id
        self.peer = peer
        self.is_offerer = self_id < peer
        self._config = config
        self._signaling = signaling
        self._deliver = deliver
        self._notify = notify
        self._should_drop = should_drop
        self._partitioned = partitioned or (lambda peer: False)
        "Whether the fault filter drops the peer's traffic now (a simulated partition)."
        self._guess_budget = guess_budget
        "Shared by the mesh's links: wrong-passphrase handshakes allowed over all peers."
        self._loop = asyncio.get_running_loop()

        self.state = LinkState.CONNECTING
        self._closing = False
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._session: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        "Negotiation tasks; cancelled on close."
        self._teardowns: set[asyncio.Task[None]] = set()
        "Peer connections being closed; never cancelled (a half-closed one leaks tasks)."
        self._attempt_started = self._loop.time()
        self._offer_sent_at: float | None = None
        "When the offer of the current attempt went out (offerer); None until it has."
        self._offer_requested_at: float | None = None
        "When we last asked the offerer for an offer (answerer)."
        self._offer_wait = config.offer_wait
        "How long to wait before asking again; doubles per request within an attempt."
        self._last_received = self._attempt_started
        "When the last frame from the peer arrived (fault-filtered frames do not count)."
        self._last_maintained = self._attempt_started
        self._retry_at: float | None = None
        self._backoff = config.reconnect_initial

        self._outbox: deque[bytes] = deque()
        self._urgent: deque[bytes] = deque()
        "Messages that go out before the outbox (each fits in one batch frame)."
        self._outbox_bytes = 0
        "Bytes queued in both lanes."
        self._chunk_frames: deque[bytes] = deque()
        self._flush_handle: asyncio.Handle | None = None
        self._next_message_id = 0
        self._max_frame_bytes: int | None = None
        self._reassembler = framing.Reassembler(config.max_message_bytes)

        self._ping_nonce: int | None = None
        self._last_ping = 0.0
        self._rtt_ms: float | None = None

        self._messages_sent = 0
        self._messages_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._frames_sent = 0
        self._frames_received = 0
        self._malformed_frames = 0
        self._dropped_overflow = 0
        self._dropped_by_fault = 0
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
        self._rate_limited_frames = 0
        self._abuse_disconnects = 0
        self._ignored_signals = 0
        now = self._loop.time()
        self._frame_budget = framing.TokenBucket(
            config.inbound_frames_per_second, config.inbound_frame_burst, now
        )
        self._message_budget = framing.TokenBucket(
            config.inbound_messages_per_second, config.inbound_message_burst, now
        )
        self._offence_budget = framing.TokenBucket(
            config.offences_forgiven_per_second, config.max_offences, now
        )

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
        channel = self._channel
        return LinkInfo(
            peer=self.peer,
            state=self.state,
            rtt_ms=self._rtt_ms,
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            malformed_frames=self._malformed_frames + self._reassembler.interrupted_messages,
            dropped_overflow=self._dropped_overflow,
            dropped_by_fault=self._dropped_by_fault,
            queued_messages=len(self._outbox) + len(self._urgent),
            queued_bytes=self._outbox_bytes,
            buffered_amount=channel.bufferedAmount if channel is not None else 0,
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
            rate_limited_frames=self._rate_limited_frames,
            abuse_disconnects=self._abuse_disconnects,
            ignored_signals=self._ignored_signals,
        )

    def send(self, data: bytes, urgent: bool = False) -> bool:
        """Queue one message; False if the link is not open or its queue is full.

        While the handshake runs on a fresh DataChannel the message is queued and
        sent once the peer is authenticated (dropped if it never is). An ``urgent``
        message jumps the queue of normal ones (see the module docstring); one too large
        for a single frame is sent as a normal message.
        """
        if len(data) > self._config.max_message_bytes:
            raise ValueError(
                f"message of {len(data)} bytes exceeds max_message_bytes="
                f"{self._config.max_message_bytes}; split it before sending"
            )
        if not self._accepts_messages():
            return False
        if self._should_drop(self.peer, "send"):
            self._dropped_by_fault += 1
            return True
        if (
            len(self._outbox) + len(self._urgent) >= self._config.max_queued_messages
            or self._outbox_bytes + len(data) > self._config.max_queued_bytes
        ):
            # Raft tolerates lost messages, and what is already queued is older and
            # usually needed first, so the newest message is the one refused.
            self._dropped_overflow += 1
            return False
        if urgent and framing.fits_in_batch(
            data, self._max_frame_bytes or self._config.max_frame_bytes
        ):
            self._urgent.append(bytes(data))
        else:
            self._outbox.append(bytes(data))
        self._outbox_bytes += len(data)
        if self._flush_handle is None:
            # Flush once the current burst of sends is over, so it becomes one frame.
            self._flush_handle = self._loop.call_soon(self._flush)
        return True

    def _accepts_messages(self) -> bool:
        if self.state == LinkState.OPEN:
            return True
        handshake = self._handshake
        return self._channel is not None and handshake is not None and not handshake.failed

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
                if self._partitioned(self.peer):
                    self._fail("connection attempt timed out (traffic dropped by the fault filter)")
                elif self._handshake is not None and not self._handshake.failed:
                    self._auth_failed(
                        AuthError(
                            AuthErrorKind.TIMEOUT,
                            f"peer {self.peer} did not finish the channel handshake within "
                            f"{self._config.connect_timeout:g} s (an incompatible raftchat?)",
                        )
                    )
                else:
                    self._fail("connection attempt timed out")
            elif (
                not self.is_offerer
                and self._pc is None
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

    def partition_healed(self) -> None:
        """The fault filter stopped dropping the peer's traffic: reconnect now if down.

        Attempts made during the partition failed and backed off; a real network
        would let the next attempt through as soon as it healed.
        """
        if self._closing or self.state == LinkState.OPEN or self._penalties:
            return
        logger.info("link %s: fault filter lifted, reconnecting", self.peer)
        self._backoff = self._config.reconnect_initial
        self._retry_at = None
        self._mark_down(LinkState.CONNECTING)
        self._start_attempt()

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
        await self._close_pc()
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
            self._drop_pc()
            session = secrets.token_hex(8)
            self._session = session
            self._attempt_started = self._loop.time()
            pc = self._new_peer_connection()
            channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
            self._attach_channel(pc, channel)
            async with self._unless_replaced(pc):
                with host_candidates(self._config.host_candidate_addresses()):
                    await pc.setLocalDescription(await pc.createOffer())
            if pc is not self._pc:
                return
            sdp = pc.localDescription.sdp
            self._offer_sent_at = self._loop.time()
        await self._send_signal({"type": SIGNAL_OFFER, "session": session, "sdp": sdp})

    @contextlib.asynccontextmanager
    async def _unless_replaced(self, pc: RTCPeerConnection) -> AsyncIterator[None]:
        """Swallow an error of ``pc``'s negotiation if ``pc`` was dropped meanwhile.

        A reset, failure or newer offer closes the connection under a negotiation in
        progress; its "connection is closed" error says nothing about the current one.
        """
        try:
            yield
        except Exception as exc:
            if pc is self._pc:
                raise
            logger.debug("link %s: negotiation of a replaced connection ended: %r", self.peer, exc)

    async def _accept_offer(self, session: str, sdp: str) -> None:
        async with self._lock:
            self._drop_pc()
            if self.state != LinkState.CONNECTING:
                self._mark_down(LinkState.CONNECTING)
            self._session = session
            self._attempt_started = self._loop.time()
            pc = self._new_peer_connection()

            @pc.on("datachannel")
            def on_datachannel(channel: RTCDataChannel) -> None:
                if channel.label != CHANNEL_LABEL:
                    logger.warning(
                        "link %s: unexpected channel %r closed", self.peer, channel.label
                    )
                    channel.close()
                    return
                self._attach_channel(pc, channel)
                if channel.readyState == "open":
                    self._on_open(pc, channel)

            async with self._unless_replaced(pc):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if pc.sctp is None:
                    raise ValueError("the offer has no data channel (application) section")
                with host_candidates(self._config.host_candidate_addresses()):
                    await pc.setLocalDescription(await pc.createAnswer())
            if pc is not self._pc:
                return
            answer = pc.localDescription.sdp
        await self._send_signal({"type": SIGNAL_ANSWER, "session": session, "sdp": answer})

    async def _accept_answer(self, session: str, sdp: str) -> None:
        async with self._lock:
            pc = self._pc
            if pc is None or session != self._session or pc.signalingState != "have-local-offer":
                logger.debug("link %s: answer arrived with no offer pending", self.peer)
                return
            async with self._unless_replaced(pc):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _send_signal(self, payload: dict[str, Any]) -> None:
        if not await self._signaling.send_signal(self.peer, payload):
            # The connect timeout retries; nothing else to do while signaling is down.
            logger.info("link %s: could not send %s (signaling down)", self.peer, payload["type"])

    def _new_peer_connection(self) -> RTCPeerConnection:
        config = build_rtc_configuration(self._config.ice_servers, self._config.relay_only)
        pc = new_peer_connection(config)
        self._pc = pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is self._pc and pc.connectionState in ("failed", "closed"):
                self._fail(f"peer connection {pc.connectionState}")

        return pc

    def _attach_channel(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        channel.bufferedAmountLowThreshold = self._config.send_buffer_low_bytes

        @channel.on("open")
        def on_open() -> None:
            self._on_open(pc, channel)

        @channel.on("message")
        def on_message(frame: bytes | str) -> None:
            if channel is self._channel:
                self._on_frame(frame)

        @channel.on("close")
        def on_close() -> None:
            if channel is self._channel:
                self._fail("data channel closed")

        @channel.on("bufferedamountlow")
        def on_low() -> None:
            if channel is self._channel:
                self._flush()

    def _on_open(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        if pc is not self._pc or self._closing or self._channel is channel:
            return
        self._channel = channel
        self._max_frame_bytes = self._frame_limit(pc)
        self._reassembler.reset()
        self._authenticated = False
        if self._partitioned(self.peer):
            self._fail("peer unreachable (traffic dropped by the fault filter)")
            return
        sctp = pc.sctp
        ice_connection = sctp.transport.transport._connection if sctp else None
        pair = selected_pair(ice_connection) if ice_connection else None
        self._candidate_types = (pair.local_type, pair.remote_type) if pair else (None, None)
        if ice_connection is not None and self._config.udp_receive_buffer_bytes:
            enlarge_receive_buffer(ice_connection, self._config.udp_receive_buffer_bytes)
        if sctp is not None and self._config.sctp_max_flight_bytes:
            limit_flight(sctp, self._config.sctp_max_flight_bytes)
        try:
            local_fingerprint, remote_fingerprint = dtls_fingerprints(pc)
        except Exception as exc:  # aiortc internals changed, or the transport went away
            logger.exception("link %s: cannot read the DTLS certificates", self.peer)
            self._fail(f"cannot read the DTLS certificates ({exc!r})")
            return
        if (
            self._config.passphrase is not None
            and self._guess_budget is not None
            and self._guess_budget.available(self._loop.time()) < 1
        ):
            self._auth_failed(
                AuthError(
                    AuthErrorKind.THROTTLED,
                    f"too many wrong-passphrase handshakes in channel {self._config.channel!r} "
                    f"lately (someone may be guessing it); peer {self.peer} must wait",
                )
            )
            return
        self._handshake = Handshake(
            channel=self._config.channel,
            self_id=self.self_id,
            peer_id=self.peer,
            passphrase=self._config.passphrase,
            local_fingerprint=local_fingerprint,
            remote_fingerprint=remote_fingerprint,
        )
        logger.debug("link %s: data channel open, authenticating", self.peer)
        self._send_control(framing.encode_auth(self._handshake.start()))

    def _on_authenticated(self) -> None:
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
            "peer authenticated" if self._config.passphrase else "open channel",
            self._max_frame_bytes,
        )
        self._last_received = self._loop.time()
        self._set_state(LinkState.OPEN)
        self._send_ping(self._loop.time())
        self._flush()

    def _auth_failed(self, error: AuthError) -> None:
        if error.kind == AuthErrorKind.WRONG_PASSPHRASE and self._guess_budget is not None:
            self._guess_budget.take(self._loop.time())
        self._auth_error = error
        self._auth_failures += 1
        logger.warning("link %s: handshake failed: %s", self.peer, error.message)
        self._fail(f"handshake failed: {error.message}", penalty=True)

    def _frame_limit(self, pc: RTCPeerConnection) -> int:
        """Largest frame to send: our limit, or less if the remote accepts less.

        aiortc enforces the remote's SDP ``max-message-size`` (0 = unlimited) but
        exposes it only as ``RTCSctpTransport._remote_max_message_size``.
        """
        remote = getattr(pc.sctp, "_remote_max_message_size", None)
        limit = self._config.max_frame_bytes
        if remote:
            limit = min(limit, remote)
        return max(limit, framing.MIN_FRAME_BYTES)

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
        self._channel = None
        self._handshake = None
        self._authenticated = False
        self._discard_queue()
        pc, self._pc = self._pc, None
        if pc is not None:
            self._close_in_background(pc)
        self._set_state(state)

    def _drop_pc(self) -> None:
        """Forget the current connection (a new one replaces it); it closes in the background."""
        pc, self._pc = self._pc, None
        self._channel = None
        self._handshake = None
        self._authenticated = False
        if pc is not None:
            self._close_in_background(pc)

    async def _close_pc(self) -> None:
        pc, self._pc = self._pc, None
        self._channel = None
        self._handshake = None
        self._authenticated = False
        if pc is not None:
            await asyncio.shield(self._close_in_background(pc))

    def _close_in_background(self, pc: RTCPeerConnection) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._close_given_pc(pc))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return task

    @staticmethod
    async def _close_given_pc(pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        except Exception:
            logger.exception("closing a peer connection failed")

    def _discard_queue(self) -> None:
        self._outbox.clear()
        self._urgent.clear()
        self._outbox_bytes = 0
        self._chunk_frames.clear()
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
        """Move queued messages into DataChannel frames: urgent ones all at once, then
        normal ones until the send buffer reaches its high-water mark."""
        self._flush_handle = None
        channel = self._channel
        if channel is None or self._max_frame_bytes is None or not self._authenticated:
            return
        max_frame = self._max_frame_bytes
        high_water = self._config.send_buffer_high_bytes
        try:
            while self._urgent:
                frame = self._next_urgent_frame(max_frame)
                if frame is None:
                    break
                channel.send(frame)
                self._frames_sent += 1
            while channel.bufferedAmount < high_water:
                if self._chunk_frames:
                    frame = self._chunk_frames.popleft()
                elif self._outbox:
                    frame = self._next_frame(max_frame)
                else:
                    return
                channel.send(frame)
                self._frames_sent += 1
        except (InvalidStateError, ValueError) as exc:
            self._fail(f"send failed ({exc!r})")

    def _next_urgent_frame(self, max_frame: int) -> bytes | None:
        """A batch frame of urgent messages; None if the first one does not fit in a frame
        on this connection (then it joins the front of the normal lane)."""
        urgent = self._urgent
        if not framing.fits_in_batch(urgent[0], max_frame):
            self._outbox.appendleft(urgent.popleft())
            return None
        batch = framing.pop_batch(urgent, max_frame, self._config.max_messages_per_frame)
        self._count_sent(batch)
        return framing.encode_batch(batch)

    def _next_frame(self, max_frame: int) -> bytes:
        """The next frame from the queue: a batch of small messages, or a chunked one."""
        if framing.fits_in_batch(self._outbox[0], max_frame):
            batch = framing.pop_batch(self._outbox, max_frame, self._config.max_messages_per_frame)
            self._count_sent(batch)
            return framing.encode_batch(batch)
        message = self._outbox.popleft()
        self._count_sent([message])
        frames = framing.encode_chunks(self._next_message_id, message, max_frame)
        self._next_message_id += 1
        self._chunk_frames.extend(frames[1:])
        return frames[0]

    def _count_sent(self, messages: list[bytes]) -> None:
        size = sum(len(message) for message in messages)
        self._outbox_bytes -= size
        self._messages_sent += len(messages)
        self._bytes_sent += size

    def _send_ping(self, now: float) -> None:
        self._last_ping = now
        nonce = time.monotonic_ns()
        if self._send_control(framing.encode_ping(nonce)):
            self._ping_nonce = nonce

    def _send_control(self, frame: bytes) -> bool:
        channel = self._channel
        if channel is None:
            return False
        if self._should_drop(self.peer, "send"):
            self._dropped_by_fault += 1
            return False
        try:
            channel.send(frame)
        except (InvalidStateError, ValueError) as exc:
            self._fail(f"send failed ({exc!r})")
            return False
        self._frames_sent += 1
        return True

    # --- receiving ------------------------------------------------------------------

    def _on_frame(self, data: bytes | str) -> None:
        """Handle one received frame. Never raises: bad frames are counted and dropped."""
        if self._should_drop(self.peer, "recv"):
            self._dropped_by_fault += 1
            return
        self._frames_received += 1
        now = self._loop.time()
        self._last_received = now
        if not self._frame_budget.take(now):
            self._rate_limited_frames += 1
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
                if not self._message_budget.take(now, len(frame.messages)):
                    self._rate_limited_frames += 1
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
        except Exception:  # a bug here must not reach aiortc's event dispatch
            self._malformed_frames += 1
            logger.exception("link %s: receiving a frame failed", self.peer)

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
        if handshake.complete and self._channel is not None:
            self._on_authenticated()

    def _offence(self, what: str) -> None:
        """Count one dropped frame against the peer; disconnect it once it has too many."""
        if self._offence_budget.take(self._loop.time()):
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


def dtls_fingerprints(pc: RTCPeerConnection) -> tuple[bytes, bytes]:
    """SHA-256 digests of our DTLS certificate and of the one the peer presented.

    The peer's comes from the certificate it used in the DTLS handshake, not from the
    SDP the signaling server relayed: that is what makes an interception visible.
    aiortc offers no public accessor for it; ``RTCDtlsTransport._ssl`` is the
    pyOpenSSL connection it checked the SDP fingerprint against.
    """
    if pc.sctp is None:
        raise ValueError("no SCTP transport")
    dtls = pc.sctp.transport
    local = next(
        fingerprint
        for fingerprint in dtls.getLocalParameters().fingerprints
        if fingerprint.algorithm == "sha-256"
    )
    certificate = dtls._ssl.get_peer_certificate(as_cryptography=True)
    if certificate is None:
        raise ValueError("the peer presented no DTLS certificate")
    return bytes.fromhex(local.value.replace(":", "")), certificate.fingerprint(hashes.SHA256())
