"""The seam between the mesh and a WebRTC implementation (an *engine*).

A link asks little of WebRTC: per connection attempt, one peer connection carrying one
reliable, ordered DataChannel labelled :data:`CHANNEL_LABEL`; its offer and answer as
complete SDP (every candidate gathered first: no trickle ICE); frames in and out;
backpressure (the channel's buffered amount and a low-water event); and, once the
channel is open, what the channel handshake binds (both DTLS certificate fingerprints)
and what the link reports (the selected candidate pair). Which library does it, how it
is tuned and which of its internals are read stays behind this seam. Two engines
implement it: :mod:`raftchat.net.engines.aiortc_engine` (aiortc, pure Python) and
:mod:`raftchat.net.engines.wrtc_engine` (libwebrtc through ``wrtc``); they interoperate,
and :mod:`raftchat.net.engines` picks one.

One test hook lives here too: an engine's :data:`FrameFilter`, consulted for every frame
in and out (None, the default, costs nothing); :class:`FrameFilterHook` is its
bookkeeping, shared by the engines.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from raftchat.net.ice import IceServer

logger = logging.getLogger(__name__)

CHANNEL_LABEL = "raft"
"""The label of the one DataChannel of every connection; others are closed on arrival."""

Direction = Literal["send", "recv"]

FrameFilter = Callable[[str, Direction], bool]
"""A test hook that simulates a network partition: ``(peer, "send" | "recv") -> True``
drops that frame silently (counted in :meth:`Engine.frames_dropped`). As in a real
partition, a connection whose channel opens while the filter drops the peer's traffic
in either direction fails instead of opening (ICE would not have got through), and an
open link that hears nothing fails by itself once its ``dead_after`` passes. Set by
tests only; an engine never sets one itself."""


class EngineError(Exception):
    """The engine cannot do what was asked on this connection (it is closed, the frame
    is too large, its transport went away...)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What an engine needs to know to set up a peer connection (from ``MeshConfig``)."""

    ice_servers: tuple[IceServer, ...]
    "STUN/TURN servers: the only ones used (never a public default)."
    relay_only: bool
    "Use TURN relay candidates only."
    host_addresses: tuple[str, ...] | None
    "Gather host candidates only on these addresses (None: the engine's own choice)."
    send_buffer_low_bytes: int
    "The buffered amount at or below which :meth:`ConnectionHandler.send_buffer_low` fires."


@dataclass(frozen=True)
class SelectedPair:
    """The candidate pair ICE selected for a connection."""

    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int] | None
    """None when the engine does not know it: libwebrtc redacts the address of a
    peer-reflexive remote candidate (one learnt from connectivity checks, not signaled)."""


class ConnectionHandler(Protocol):
    """What a peer connection reports to its owner (the link), from the event loop.

    Every call names the connection, so a report about a replaced one can be ignored.
    None is made for a connection its owner closed with :meth:`PeerConnection.close`.
    """

    def channel_open(self, connection: PeerConnection) -> None:
        """The DataChannel is open: frames can be sent."""

    def frame_received(self, connection: PeerConnection, frame: bytes | str) -> None:
        """One DataChannel message (a text one too: the owner decides what is valid)."""

    def send_buffer_low(self, connection: PeerConnection) -> None:
        """The buffered amount fell to ``send_buffer_low_bytes``: send more."""

    def channel_closed(self, connection: PeerConnection) -> None:
        """The DataChannel closed (the peer closed it, or the connection went down)."""

    def connection_failed(self, connection: PeerConnection, reason: str) -> None:
        """The connection failed or was closed by the other side; ``reason`` says how."""


class PeerConnection(Protocol):
    """One attempt at a connection to one peer, with its DataChannel."""

    peer: str

    async def create_offer(self) -> str:
        """Open the DataChannel and return the complete offer SDP (the offering side)."""
        ...

    async def create_answer(self, offer_sdp: str) -> str:
        """Apply the peer's offer and return the complete answer SDP (the answering side).

        Raises ValueError for an offer without a DataChannel section."""
        ...

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the peer's answer to our offer."""
        ...

    @property
    def awaiting_answer(self) -> bool:
        """Our offer is applied and no answer yet."""
        ...

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to the DataChannel and not yet sent."""
        ...

    @property
    def remote_max_message_size(self) -> int | None:
        """The largest message the peer accepts (from its SDP); None: no limit known."""
        ...

    def send(self, frame: bytes) -> None:
        """Send one DataChannel message; raises :class:`EngineError` if it cannot."""
        ...

    def dtls_fingerprints(self) -> tuple[bytes, bytes]:
        """SHA-256 digests of our DTLS certificate and of the one the peer presented on
        this connection (not of what its SDP claimed). Raises once the transport is gone."""
        ...

    def selected_pair(self) -> SelectedPair | None:
        """The candidate pair in use, once ICE selected one."""
        ...

    async def close(self) -> None:
        """Close the connection; never raises."""
        ...


class Engine(Protocol):
    """Makes peer connections. One engine serves one mesh."""

    name: str
    "Which WebRTC implementation this is (``aiortc``, ``wrtc``), as users are told."
    frame_filter: FrameFilter | None
    "The test hook (see :data:`FrameFilter`); None in production."

    def connect(
        self, peer: str, settings: ConnectionSettings, handler: ConnectionHandler
    ) -> PeerConnection:
        """A new, not yet negotiated, connection to ``peer``."""
        ...

    def frames_dropped(self, peer: str) -> int:
        """Frames to and from ``peer`` that the frame filter dropped so far."""
        ...


class FrameFilterHook:
    """The :data:`FrameFilter` bookkeeping of an engine: whether a frame is dropped, how
    many were, and whether a peer looks partitioned. Engines inherit it."""

    frame_filter: FrameFilter | None = None
    """The test hook. Set on an engine for its mesh only, or on this class for every
    engine of the process (how tests partition node processes)."""

    def __init__(self) -> None:
        self._frames_dropped: Counter[str] = Counter()

    def frames_dropped(self, peer: str) -> int:
        return self._frames_dropped[peer]

    def drops(self, peer: str, direction: Direction) -> bool:
        """Whether the frame filter drops this frame (counted if it does)."""
        if self.frame_filter is None:
            return False
        dropped = self._filter_says(peer, direction)
        if dropped:
            self._frames_dropped[peer] += 1
        return dropped

    def partitioned(self, peer: str) -> bool:
        """Whether the frame filter drops ``peer``'s traffic in either direction."""
        if self.frame_filter is None:
            return False
        return self._filter_says(peer, "send") or self._filter_says(peer, "recv")

    def _filter_says(self, peer: str, direction: Direction) -> bool:
        frame_filter = self.frame_filter
        if frame_filter is None:
            return False
        try:
            return bool(frame_filter(peer, direction))
        except Exception:
            logger.exception("frame filter failed; traffic passes")
            return False
