"""What the mesh reports about a link: its state and a snapshot of its counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raftchat.net.auth import AuthErrorKind


class LinkState(enum.StrEnum):
    """Where a link is: connecting (and authenticating), open, failed (retrying later), closed."""

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
    "Frames dropped by the engine's frame filter (a partition simulated by tests)."
    queued_messages: int
    queued_bytes: int
    buffered_amount: int
    "Bytes queued inside the engine's DataChannel (its SCTP send buffer)."
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
