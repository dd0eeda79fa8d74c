"""The signaling server's limits, in one validated dataclass.

Every limit has a default that suits a public server, a field here, a key in the
``[server]`` table of ``config.toml`` (``raftchat serve --config FILE``), an error the
client is told when it hits it, and a counter in ``GET /metrics``.

*Per-address* limits count what one client address holds or does: an IPv4 address, or
an IPv6 /64 network (what one subscriber usually gets). Addresses in
``exempt_addresses`` only meet the global limits: a reverse proxy in front of the server
(every client then arrives from its address), or loopback for a server that only this
machine uses (:meth:`ServerConfig.one_machine`, what ``raftchat join``, ``demo`` and
``bench`` start).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

from raftchat.net.signaling.protocol import DEFAULT_MAX_FRAME_BYTES, KEEPALIVE_INTERVAL

LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the signaling server. Numbers must be positive."""

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

    max_connections: int = 4096
    """Open TCP connections in total (WebSockets and plain HTTP requests); beyond, a new
    one is answered ``503`` with ``server_full`` and closed."""
    max_connections_per_address: int = 64
    """Open TCP connections from one address; beyond, ``503`` with
    ``too_many_connections``."""
    max_sessions: int = 4096
    """Peers present in channels in total (each a channel's own socket or a session of a
    shared one); beyond, a hello gets ``server_full``."""
    max_sessions_per_connection: int = 16
    """Sessions one shared socket may carry (``open`` beyond: ``too_many_sessions``). Its
    frame rate is this many times a session's at most."""
    max_sessions_per_address: int = 64
    """Peers one address has in channels over all its sockets; beyond, a hello gets
    ``too_many_sessions_from_address`` (so sharing a socket is no way around
    ``max_connections_per_address``)."""
    max_channels: int = 1000
    """Channels with at least one peer; a hello that would open one more gets
    ``too_many_channels``. A channel is gone when its last peer leaves."""
    max_channels_per_address: int = 16
    """Channels opened by one address that still have a peer; beyond,
    ``too_many_channels_from_address``."""
    max_peers_per_channel: int = 256
    """Peers in one channel; beyond, ``channel_full`` (a channel of a hundred members is
    a real use; the per-address limit keeps one machine from filling it)."""
    max_peers_per_channel_per_address: int = 16
    """Peers one address has in one channel; beyond, ``too_many_peers_from_address`` (so
    one machine cannot fill a channel with squatters)."""
    joins_per_minute_per_address: float = 60.0
    """Hellos one address may send per minute, sustained (token bucket refill)..."""
    join_burst_per_address: int = 60
    """...and at once; beyond, ``join_rate_limited``. Every hello counts, refused or not."""

    hello_timeout: float = 10.0
    """Seconds a new WebSocket has to send its hello (``hello_timeout``). WebSocket pings
    do not extend it."""
    idle_timeout: float = 3 * KEEPALIVE_INTERVAL
    """Seconds a joined peer may stay silent; then it is dropped with ``idle_timeout``.
    Clients send a ``keepalive`` frame every ``KEEPALIVE_INTERVAL`` seconds when they have
    nothing else to say (keep this well above it); WebSocket pings, which the client's
    library answers on its own, do not count."""
    heartbeat_interval: float = 20.0
    """WebSocket ping interval; a peer that misses its pong is disconnected."""
    header_timeout: float = 10.0
    """Seconds a new TCP connection has to send a complete request line and headers;
    then it is closed (a half-sent request cannot hold a socket)."""
    max_header_bytes: int = 16 * 1024
    """Bytes of request line and headers a connection may send; beyond, it is closed (a
    WebSocket upgrade request is well under 1 KiB)."""
    body_timeout: float = 10.0
    """Seconds from the end of the headers until the request is answered or has become a
    WebSocket; then the connection is closed (a half-sent body cannot hold a socket)."""

    send_queue_bytes: int = 1024 * 1024
    """Bytes of frames queued for one peer that does not read; beyond, it is closed with
    ``slow_consumer``. A newcomer in a full channel receives one answer per peer."""
    max_queued_bytes_total: int = 256 * 1024 * 1024
    """Bytes queued for all peers together; beyond, the peer with the longest queue is
    closed with ``slow_consumer``."""

    max_tracked_addresses: int = 65_536
    """Bound on the addresses whose join rate is remembered after they leave; the
    longest-idle are forgotten first."""
    close_timeout: float = 2.0
    """Seconds to wait for a closing WebSocket's handshake and pending frames."""

    exempt_addresses: tuple[str, ...] = ()
    """Client addresses the per-address limits do not apply to (only the global ones):
    a reverse proxy in front of the server, or loopback on a server for one machine."""

    def __post_init__(self) -> None:
        exempt = self.exempt_addresses
        if isinstance(exempt, str) or not all(isinstance(a, str) for a in exempt):
            raise ValueError("ServerConfig.exempt_addresses must be a list of IP addresses")
        for address in exempt:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"ServerConfig.exempt_addresses: {address!r} is not an IP address"
                ) from None
        object.__setattr__(self, "exempt_addresses", tuple(exempt))
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "exempt_addresses":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"ServerConfig.{field.name} must be positive, got {value!r}")
        if self.hard_max_frame_bytes < self.max_frame_bytes:
            raise ValueError("ServerConfig.hard_max_frame_bytes must be >= max_frame_bytes")
        if self.send_queue_bytes < 2 * self.max_frame_bytes:
            raise ValueError("ServerConfig.send_queue_bytes must be >= 2 * max_frame_bytes")
        if self.max_queued_bytes_total < self.send_queue_bytes:
            raise ValueError("ServerConfig.max_queued_bytes_total must be >= send_queue_bytes")

    @classmethod
    def one_machine(cls, **changes: object) -> ServerConfig:
        """The defaults for a server only this machine's peers use: every peer arrives
        from loopback, so the per-address limits are left to the global ones."""
        return cls(**{"exempt_addresses": LOOPBACK_ADDRESSES, **changes})  # type: ignore[arg-type]

    @classmethod
    def numeric_fields(cls) -> dict[str, type]:
        """Each numeric limit and its type (int or float), for config files and flags."""
        return {
            field.name: type(field.default)
            for field in fields(cls)
            if isinstance(field.default, int | float) and not isinstance(field.default, bool)
        }
