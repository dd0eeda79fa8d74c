"""The WebRTC mesh: bytes to and from peer ids over aiortc DataChannels.

One :class:`~raftchat.net.link.Link` (one RTCPeerConnection, one reliable
ordered DataChannel labelled "raft") per other peer. Presence from the
signaling server decides which links exist (:meth:`Mesh.set_peers`); the
offer/answer exchange rides on the signaling relay (:meth:`Mesh.handle_signal`).
Offers and answers carry complete SDP: aiortc gathers every candidate before
it creates a description, so there is no trickle ICE.

With ``MeshConfig.passphrase`` set, a link opens only after the peer proved it
knows the passphrase (``net/auth.py``); a failed handshake shows in the link's
:class:`LinkInfo` (``state`` FAILED, ``auth_error``, ``auth_error_kind``) and
reaches ``on_link_change``.

Typical wiring::

    listener = MeshSignalingListener()
    client = SignalingClient(url, channel, my_id, token, listener)
    mesh = Mesh(my_id, client, MeshConfig(signaling_url=url), on_message)
    listener.bind(mesh)
    await client.start()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from raftchat.net.framing import MIN_FRAME_BYTES, TokenBucket
from raftchat.net.ice import IceServer, loopback_address_of
from raftchat.net.link import (
    SIGNAL_ANSWER,
    SIGNAL_OFFER,
    SIGNAL_RESTART,
    Direction,
    Link,
    LinkInfo,
    LinkState,
    SignalSender,
)

logger = logging.getLogger(__name__)

MAX_SESSION_ID_LENGTH = 64

FaultFilter = Callable[[str, Direction], bool]
"""``(peer, "send" | "recv") -> True`` to silently drop that traffic."""


@dataclass(frozen=True)
class MeshConfig:
    """Settings of the mesh. Defaults suit a chat; tests shorten the timers."""

    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers; the only ones ever used (no public default server)."""
    relay_only: bool = False
    "Use only TURN relay candidates (iceTransportPolicy relay); needs a TURN server."
    ice_host: str | None = None
    "Gather host candidates only on this address (e.g. '127.0.0.1' or a LAN address)."
    signaling_url: str | None = None
    "If set and its host is loopback (and ice_host is not set), host candidates are loopback."
    max_frame_bytes: int = 64 * 1024
    "Largest DataChannel frame sent; lowered to the remote's max-message-size."
    max_messages_per_frame: int = 4096
    "Most messages batched into one frame (bounds one frame's work); 1 disables batching."
    max_message_bytes: int = 16 * 1024 * 1024
    "Largest message accepted by send() and reassembled on receipt."
    max_queued_messages: int = 100_000
    "Per-link send queue cap (messages); beyond it send() drops the new message."
    max_queued_bytes: int = 16 * 1024 * 1024
    """Per-link send queue cap (bytes). Raft resends what is dropped; a longer queue only
    delays everything behind it (seconds, at the rate a busy link drains)."""
    send_buffer_high_bytes: int = 128 * 1024
    """Stop handing frames to aiortc once its bufferedAmount reaches this. aiortc's queue
    is first in, first out: an urgent message handed over after it waits for all of it
    (plus what is in flight), so a large value delays heartbeats behind a burst."""
    send_buffer_low_bytes: int = 32 * 1024
    "Resume when bufferedAmount falls to this (bufferedAmountLowThreshold)."
    sctp_max_flight_bytes: int = 128 * 1024
    """Most bytes aiortc's SCTP keeps unacknowledged on a connection (0: no limit, as in
    aiortc, whose window grows until a loss). Bounds the queueing delay every message,
    heartbeats included, sees behind a burst; see ``net/sctp_tuning.py``."""
    udp_receive_buffer_bytes: int = 4 * 1024 * 1024
    """Receive buffer asked for on each open connection's UDP socket (0: aioice's 256 KiB).
    A larger one keeps bursts from being dropped while the process is busy; see
    ``net/udp_buffer.py``. The kernel caps it at net.core.rmem_max."""
    ping_interval: float = 1.0
    "Seconds between RTT pings on an open link."
    connect_timeout: float = 15.0
    "Seconds a connection attempt may take before it counts as failed."
    dead_after: float = 5.0
    """Seconds without any frame from the peer (pongs included) after which an open link
    counts as dead and is reconnected. ICE consent checks alone take ~30 s to notice."""
    offer_wait: float = 2.0
    """Seconds the answering side waits for an offer before it asks for one again (the
    offerer may have sent its offer to a previous, now dead, process of ours); the wait
    doubles with each request of one connection attempt."""
    offer_in_flight: float = 1.0
    """An offer younger than this may still be on its way: a request for a new offer that
    does not name it crossed it and is ignored (the requester asks again after
    ``offer_wait`` if the offer never arrives)."""
    reconnect_initial: float = 0.5
    "First retry delay after a failure; doubles per failure up to reconnect_max."
    reconnect_max: float = 10.0
    maintenance_interval: float = 0.25
    "Period of the timer that pings, times out attempts and starts retries."
    max_sdp_bytes: int = 64 * 1024
    "Largest SDP accepted in a signal."

    channel: str = ""
    """Channel name, bound into the authentication handshake (keys never carry over
    between channels). Required with a passphrase."""
    passphrase: str | None = field(default=None, repr=False)
    """Channel passphrase. With one, every link runs a SPAKE2 handshake bound to both
    DTLS certificates before any message crosses: only peers that know it can join,
    the signaling server included. None: an open channel (a handshake still checks
    that the peer's channel is open too)."""
    auth_retry_initial: float = 5.0
    """Delay before reconnecting to a peer after a failed handshake or a disconnect for
    misbehaviour; doubles per failure up to ``auth_retry_max``. Offers and restart
    requests from that peer are ignored for the first half of the delay."""
    auth_retry_max: float = 300.0
    inbound_frames_per_second: float = 5000.0
    "Sustained frame rate accepted from one peer; frames beyond it are dropped."
    inbound_frame_burst: int = 10_000
    inbound_messages_per_second: float = 50_000.0
    "Sustained message rate (records in batch frames) accepted from one peer."
    inbound_message_burst: int = 100_000
    max_offences: int = 100
    """Dropped frames (malformed, over the rate, out of turn) tolerated from one peer
    before it is disconnected (with ``auth_retry_*`` backoff)..."""
    offences_forgiven_per_second: float = 2.0
    "...forgiven at this rate, so a rare bad frame is never fatal."
    max_links: int = 256
    "Most peers linked at once; offers from further unknown peers are dropped."
    max_wrong_passphrase_per_minute: float = 20.0
    """Wrong-passphrase handshakes tolerated per minute over *all* peers. Each is one
    online guess; the per-peer backoff alone would not stop a signaling server that
    keeps inventing new peers. Beyond it, no new handshake starts until it refills."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        for server in self.ice_servers:
            if not isinstance(server, IceServer):
                raise TypeError(f"ice_servers must hold IceServer objects, got {server!r}")
        if self.relay_only and not any(server.is_turn for server in self.ice_servers):
            raise ValueError("relay_only needs a TURN server (turn: URL) in ice_servers")
        if self.max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")
        for name in ("max_message_bytes", "max_queued_messages", "max_messages_per_frame"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_queued_bytes < self.max_message_bytes:
            raise ValueError("max_queued_bytes must be at least max_message_bytes")
        if self.sctp_max_flight_bytes < 0:
            raise ValueError("sctp_max_flight_bytes must be >= 0 (0: no limit)")
        if self.udp_receive_buffer_bytes < 0:
            raise ValueError("udp_receive_buffer_bytes must be >= 0 (0 keeps the default)")
        if not 0 <= self.send_buffer_low_bytes < self.send_buffer_high_bytes:
            raise ValueError("need 0 <= send_buffer_low_bytes < send_buffer_high_bytes")
        for name in (
            "ping_interval",
            "connect_timeout",
            "reconnect_initial",
            "reconnect_max",
            "offer_wait",
            "offer_in_flight",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.dead_after < 2 * self.ping_interval:
            raise ValueError("dead_after must be at least twice ping_interval")
        if self.offer_in_flight >= self.offer_wait:
            raise ValueError("offer_in_flight must be less than offer_wait")
        if not 0 < self.maintenance_interval < self.dead_after / 2:
            raise ValueError("maintenance_interval must be positive and below dead_after / 2")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        if self.passphrase is not None:
            if not isinstance(self.passphrase, str) or not self.passphrase:
                raise ValueError("passphrase must be a non-empty string (None: open channel)")
            if not self.channel:
                raise ValueError("a passphrase needs the channel name (MeshConfig.channel)")
        for name in (
            "max_wrong_passphrase_per_minute",
            "auth_retry_initial",
            "inbound_frames_per_second",
            "inbound_messages_per_second",
            "offences_forgiven_per_second",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.auth_retry_max < self.auth_retry_initial:
            raise ValueError("auth_retry_max must be at least auth_retry_initial")
        for name in ("inbound_frame_burst", "inbound_message_burst", "max_offences", "max_links"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.inbound_message_burst < self.max_messages_per_frame:
            raise ValueError("inbound_message_burst must be at least max_messages_per_frame")

    def host_candidate_addresses(self) -> tuple[str, ...] | None:
        """Addresses for ICE host candidates, or None for aioice's default choice."""
        if self.ice_host is not None:
            return (self.ice_host,)
        if self.signaling_url is not None:
            loopback = loopback_address_of(self.signaling_url)
            if loopback is not None:
                return (loopback,)
        return None


class Mesh:
    """Links to every other peer present in the channel; bytes in, bytes out.

    Create it inside the running event loop (aiortc needs one). ``on_message``
    and ``on_link_change`` are called from the loop; an exception they raise is
    logged and never reaches the network code.
    """

    def __init__(
        self,
        self_id: str,
        signaling: SignalSender,
        config: MeshConfig | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        on_link_change: Callable[[str, LinkInfo], None] | None = None,
    ) -> None:
        self.self_id = self_id
        self.config = config or MeshConfig()
        self._signaling = signaling
        self._on_message = on_message
        self._on_link_change = on_link_change
        self._loop = asyncio.get_running_loop()
        self._links: dict[str, Link] = {}
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self._fault_filter: FaultFilter | None = None
        self._blocked: set[str] = set()
        self._partitioned_peers: set[str] = set()
        "Peers whose traffic the fault filter dropped at the last maintenance round."
        self._closed = False
        self.malformed_signals = 0
        "Signals dropped because they were not valid mesh payloads."
        self.refused_offers = 0
        "Offers from unknown peers dropped because ``max_links`` links exist."
        self._guess_budget = TokenBucket(
            self.config.max_wrong_passphrase_per_minute / 60,
            max(1.0, self.config.max_wrong_passphrase_per_minute),
            self._loop.time(),
        )
        "Wrong-passphrase handshakes, over all links (see max_wrong_passphrase_per_minute)."
        self._timer = self._loop.call_later(self.config.maintenance_interval, self._maintain)

    # --- presence and signaling -----------------------------------------------------

    def set_peers(self, peers: Iterable[str]) -> None:
        """Open links to new peers and close links to peers that left."""
        if self._closed:
            return
        wanted = set(peers) - {self.self_id}
        for peer in list(self._links):
            if peer not in wanted:
                self._drop_link(peer)
        for peer in sorted(wanted - set(self._links)):
            if len(self._links) >= self.config.max_links:
                logger.warning(
                    "%d peers present; linking only max_links=%d of them",
                    len(wanted),
                    self.config.max_links,
                )
                break
            self._add_link(peer).start()

    def handle_signal(self, sender: str, payload: dict[str, Any]) -> None:
        """A relayed signal from ``sender``. Invalid payloads are counted and dropped."""
        if self._closed:
            return
        problem = self._signal_problem(sender, payload)
        if problem is not None:
            self.malformed_signals += 1
            logger.warning("signal from %r dropped: %s", sender, problem)
            return
        link = self._links.get(sender)
        if link is None:
            if payload["type"] != SIGNAL_OFFER:
                logger.debug("%s signal from %r with no link ignored", payload["type"], sender)
                return
            # The offer can overtake the presence update that announces its sender.
            if len(self._links) >= self.config.max_links:
                self.refused_offers += 1
                logger.warning("offer from %r dropped: max_links=%d", sender, self.config.max_links)
                return
            link = self._add_link(sender)
        link.handle_signal(payload)

    def _signal_problem(self, sender: str, payload: Any) -> str | None:
        if not isinstance(sender, str) or not sender or sender == self.self_id:
            return f"invalid sender {sender!r}"
        if not isinstance(payload, dict):
            return "payload is not an object"
        kind = payload.get("type")
        if kind not in (SIGNAL_OFFER, SIGNAL_ANSWER, SIGNAL_RESTART):
            return f"unknown type {kind!r}"
        session = payload.get("session")
        valid_session = isinstance(session, str) and 0 < len(session) <= MAX_SESSION_ID_LENGTH
        # A restart request may carry no session: the peer has not seen any offer yet.
        if not valid_session and not (kind == SIGNAL_RESTART and session is None):
            return "missing or invalid session id"
        if kind in (SIGNAL_OFFER, SIGNAL_ANSWER):
            sdp = payload.get("sdp")
            if not isinstance(sdp, str) or not sdp:
                return "missing sdp"
            if len(sdp) > self.config.max_sdp_bytes:
                return f"sdp of {len(sdp)} bytes exceeds max_sdp_bytes={self.config.max_sdp_bytes}"
        if kind == SIGNAL_OFFER and self.self_id < sender:
            return "an offer from a peer with a larger id breaks the no-glare rule"
        return None

    # --- data -----------------------------------------------------------------------

    def send(self, peer: str, data: bytes, urgent: bool = False) -> bool:
        """Queue ``data`` for ``peer`` without blocking.

        Returns False if there is no open link to ``peer`` or its send queue is
        full (the message is then dropped and counted; Raft retransmits).
        Raises ValueError for a message above ``max_message_bytes``. An ``urgent``
        message (a small control message) goes out before the normal ones already
        queued: messages of one kind keep their order, but not across kinds.
        """
        link = self._links.get(peer)
        return link is not None and link.send(data, urgent)

    def broadcast(self, data: bytes, urgent: bool = False) -> int:
        """Queue ``data`` for every open link; return how many accepted it."""
        return sum(link.send(data, urgent) for link in list(self._links.values()))

    def links(self) -> dict[str, LinkInfo]:
        return {peer: link.info() for peer, link in self._links.items()}

    def reset_link(self, peer: str) -> bool:
        """Force a new connection to ``peer`` (e.g. Raft heartbeats say it is dead).

        ICE consent checks take ~30 s to notice a silent peer; this is faster.
        """
        link = self._links.get(peer)
        if link is None:
            return False
        link.reset()
        return True

    # --- fault injection ------------------------------------------------------------

    def set_fault_filter(self, fault_filter: FaultFilter | None) -> None:
        """Drop traffic for which ``fault_filter(peer, direction)`` is True, silently.

        A simulated partition: sends report success, frames received are discarded
        before decoding, pings too. As in a real partition, an open link that hears
        nothing for ``dead_after`` fails, and new connection attempts fail while the
        filter drops the peer's traffic; once it stops, a failed link reconnects at
        once. None removes the filter.
        """
        self._fault_filter = fault_filter

    def block(self, peer: str) -> None:
        """Drop all traffic to and from ``peer`` (a partition, see :meth:`set_fault_filter`)."""
        self._blocked.add(peer)

    def unblock(self, peer: str) -> None:
        self._blocked.discard(peer)

    def _partitioned(self, peer: str) -> bool:
        """Whether the fault filter drops any of ``peer``'s traffic (either direction)."""
        return self._should_drop(peer, "send") or self._should_drop(peer, "recv")

    def _should_drop(self, peer: str, direction: Direction) -> bool:
        if peer in self._blocked:
            return True
        fault_filter = self._fault_filter
        if fault_filter is None:
            return False
        try:
            return bool(fault_filter(peer, direction))
        except Exception:
            logger.exception("fault filter failed; traffic passes")
            return False

    # --- lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Close every link and stop all timers; leaves no task behind."""
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links))
        if self._closing_tasks:
            await asyncio.gather(*self._closing_tasks, return_exceptions=True)

    def _add_link(self, peer: str) -> Link:
        link = Link(
            self.self_id,
            peer,
            self.config,
            self._signaling,
            deliver=self._deliver,
            notify=self._notify,
            should_drop=self._should_drop,
            partitioned=self._partitioned,
            guess_budget=self._guess_budget,
        )
        self._links[peer] = link
        self._notify(link)
        return link

    def _drop_link(self, peer: str) -> None:
        link = self._links.pop(peer)
        task = asyncio.ensure_future(link.close())
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    def _maintain(self) -> None:
        now = self._loop.time()
        partitioned = {peer for peer in self._links if self._partitioned(peer)}
        healed = self._partitioned_peers - partitioned
        self._partitioned_peers = partitioned
        for link in list(self._links.values()):
            try:
                if link.peer in healed:
                    link.partition_healed()
                link.maintain(now)
            except Exception:
                logger.exception("link %s: maintenance failed", link.peer)
        self._timer = self._loop.call_later(self.config.maintenance_interval, self._maintain)

    def _deliver(self, peer: str, message: bytes) -> None:
        if self._on_message is not None:
            self._on_message(peer, message)

    def _notify(self, link: Link) -> None:
        if self._on_link_change is None:
            return
        try:
            self._on_link_change(link.peer, link.info())
        except Exception:
            logger.exception("link change handler failed")


class MeshSignalingListener:
    """Forwards a SignalingClient's events to a mesh bound after both exist.

    The client needs its listener at construction and the mesh needs the client,
    so create this first, then :meth:`bind` the mesh before starting the client.
    """

    def __init__(self, on_state: Callable[[str], None] | None = None) -> None:
        self._mesh: Mesh | None = None
        self._on_state = on_state
        self._peers: frozenset[str] | None = None

    def bind(self, mesh: Mesh) -> None:
        self._mesh = mesh
        if self._peers is not None:
            mesh.set_peers(self._peers)

    def on_peers(self, peers: frozenset[str]) -> None:
        self._peers = frozenset(peers)
        if self._mesh is not None:
            self._mesh.set_peers(peers)

    def on_signal(self, sender: str, payload: dict) -> None:
        if self._mesh is not None:
            self._mesh.handle_signal(sender, payload)

    def on_state(self, state: str) -> None:
        if self._on_state is not None:
            self._on_state(state)


__all__ = [
    "FaultFilter",
    "IceServer",
    "LinkInfo",
    "LinkState",
    "Mesh",
    "MeshConfig",
    "MeshSignalingListener",
    "SignalSender",
]
