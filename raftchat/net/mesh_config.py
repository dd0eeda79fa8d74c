"""The settings of the mesh and its links, in one validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from raftchat.net.engines import ENGINE_CHOICES
from raftchat.net.engines.base import ConnectionSettings
from raftchat.net.framing import MIN_FRAME_BYTES
from raftchat.net.ice import IceServer, loopback_address_of


@dataclass(frozen=True)
class MeshConfig:
    """Settings of the mesh. Defaults suit a chat; tests shorten the timers."""

    webrtc: str = "auto"
    """The WebRTC engine: ``"wrtc"`` (libwebrtc), ``"aiortc"``, or ``"auto"`` (see
    :func:`raftchat.net.engines.resolve_engine`). Used when the mesh is given no engine."""
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
    """Stop handing frames to the engine once its bufferedAmount reaches this. A
    DataChannel's queue is first in, first out (in both engines): an urgent message handed
    over after it waits for all of it (plus what is in flight), so a large value delays
    heartbeats behind a burst."""
    send_buffer_low_bytes: int = 32 * 1024
    "Resume when bufferedAmount falls to this (bufferedAmountLowThreshold)."
    sctp_max_flight_bytes: int = 128 * 1024
    """aiortc only: most bytes its SCTP keeps unacknowledged on a connection (0: no limit,
    as in aiortc, whose window grows until a loss). Bounds the queueing delay every
    message, heartbeats included, sees behind a burst; see ``net/engines/aiortc_engine.py``.
    libwebrtc's SCTP honours the receiver's window and needs no cap."""
    udp_receive_buffer_bytes: int = 4 * 1024 * 1024
    """aiortc only: receive buffer asked for on each open connection's UDP socket (0:
    aioice's 256 KiB). A larger one keeps bursts from being dropped while the process is
    busy; see ``net/engines/aiortc_engine.py``. The kernel caps it at net.core.rmem_max."""
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
    """Channel name, bound into the handshake (identity proofs and passphrase keys never
    carry over between channels). Required with a passphrase."""
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
    failed_handshakes_per_peer_per_minute: float = 5.0
    """Failed handshakes (each one online guess at the passphrase) tolerated per minute
    from one peer id, in bursts of as many; beyond, no new handshake with that peer starts
    until its budget refills. Other peers are not affected (``net/guess_throttle.py``)."""
    failed_handshakes_per_address_per_minute: float = 20.0
    """The same for all peers connecting from one address, so that inventing new peer ids
    gains nothing; waived for a peer id that authenticated before."""

    def __post_init__(self) -> None:
        if self.webrtc not in ENGINE_CHOICES:
            raise ValueError(f"webrtc must be one of {', '.join(ENGINE_CHOICES)}")
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
            "failed_handshakes_per_peer_per_minute",
            "failed_handshakes_per_address_per_minute",
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
        """Addresses for ICE host candidates, or None for the engine's default choice."""
        if self.ice_host is not None:
            return (self.ice_host,)
        if self.signaling_url is not None:
            loopback = loopback_address_of(self.signaling_url)
            if loopback is not None:
                return (loopback,)
        return None

    def connection_settings(self) -> ConnectionSettings:
        """What the engine needs from these settings to set up a peer connection."""
        return ConnectionSettings(
            ice_servers=self.ice_servers,
            relay_only=self.relay_only,
            host_addresses=self.host_candidate_addresses(),
            send_buffer_low_bytes=self.send_buffer_low_bytes,
        )
