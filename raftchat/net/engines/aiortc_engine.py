"""The aiortc engine: the mesh's WebRTC through aiortc and aioice.

This is the one module of raftchat that imports aiortc or aioice. Besides their public
API it adapts or reads a few of their internals, each for a reason given in its section
below. Every one was written and checked for **aiortc 1.16.0 and aioice 0.13.0**;
pyproject.toml pins ``aiortc>=1.16,<1.17`` and ``aioice>=0.13,<0.14`` for that reason.
Before raising a bound, check each of them again:

==========================  ==========================================================
adaptation                  internals it relies on
==========================  ==========================================================
host-candidate adapter      ``aioice.ice.get_host_addresses`` (module function, wrapped)
consent after close         ``aioice.ice.Connection.connect`` (wrapped), ``_closing``,
                            ``_query_consent_task``
shared DTLS certificate     ``RTCCertificate.generateCertificate`` (swapped while an
                            ``RTCPeerConnection`` is constructed)
SCTP flight cap             ``RTCSctpTransport._cwnd`` (a class property replaces the
                            attribute), compared with ``_flight_size`` before sends;
                            applied only on aiortc 1.16.x (``CHECKED_AIORTC_VERSIONS``)
UDP receive buffer          ``aioice.ice.Connection._nominated``; ``pair.protocol.transport``
selected candidate pair     ``aioice.ice.Connection._nominated``
the ICE connection          ``RTCIceTransport._connection`` (``sctp.transport.transport``)
peer's DTLS certificate     ``RTCDtlsTransport._ssl`` (the pyOpenSSL connection)
remote max message size     ``RTCSctpTransport._remote_max_message_size``
==========================  ==========================================================

The ICE configuration itself uses only public API: ``RTCConfiguration.iceServers`` is
always an explicit list, because with ``None`` aiortc adds a public STUN server.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioice.ice
import aiortc
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint
from aiortc.rtcsctptransport import RTCSctpTransport
from cryptography.hazmat.primitives import hashes

from raftchat.net.engines.base import (
    CHANNEL_LABEL,
    ConnectionHandler,
    ConnectionSettings,
    EngineError,
    FrameFilterHook,
    SelectedPair,
)

if TYPE_CHECKING:
    from raftchat.net.ice import IceServer

logger = logging.getLogger(__name__)


# --- ICE configuration ----------------------------------------------------------------


def build_rtc_configuration(ice_servers: Sequence[IceServer], relay_only: bool) -> RTCConfiguration:
    """The RTCConfiguration for one peer connection: only the configured servers.

    ``iceServers`` is always a list (possibly empty), never ``None``, so aiortc
    never adds its default public STUN server.
    """
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=list(server.urls), username=server.username, credential=server.credential
            )
            for server in ice_servers
        ],
        iceTransportPolicy=(
            RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        ),
    )


# --- host-candidate adapter -----------------------------------------------------------
#
# aioice gathers host candidates from every interface *except* 127.0.0.1, so two peers
# on one machine whose only common network is loopback cannot connect.
# aioice.ice.Connection.gather_candidates() asks the module-level function
# aioice.ice.get_host_addresses() which local addresses to bind host candidates to. We
# replace that function once with a wrapper that returns the addresses set in a context
# variable, if any, and otherwise calls the original. The variable is set only around
# RTCPeerConnection.setLocalDescription() (where aiortc gathers); the tasks aiortc starts
# from there inherit the context, so only the mesh's own connections are affected, and
# nothing else in the process.

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "raftchat_ice_host_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _host_addresses.get()
    if addresses is None:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return list(addresses)


def _install_host_address_adapter() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


# --- consent checks of a connection closed while it connected ----------------------------
# aioice's Connection.connect() starts the consent-freshness task once the check list has
# completed. If close() runs after the check list completed but before connect() resumed,
# connect() starts that task on a closed connection, where it never ends (it sleeps and
# finds no nominated pair, forever): one leaked task per such link. The wrapper stops it.

_original_connect = aioice.ice.Connection.connect


async def _connect_without_consent_after_close(self: aioice.ice.Connection) -> None:
    await _original_connect(self)
    task = self._query_consent_task
    if getattr(self, "_closing", False) and task is not None and not task.done():
        task.cancel()


def _install_consent_fix() -> None:
    if aioice.ice.Connection.connect is not _connect_without_consent_after_close:
        aioice.ice.Connection.connect = _connect_without_consent_after_close  # type: ignore[method-assign]


_install_consent_fix()


@contextlib.contextmanager
def host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather ICE host candidates only on ``addresses`` inside this block.

    ``None`` keeps aioice's own choice (every interface except loopback).
    """
    if addresses is None:
        yield
        return
    _install_host_address_adapter()
    token = _host_addresses.set(tuple(addresses))
    try:
        yield
    finally:
        _host_addresses.reset(token)


# --- one DTLS certificate per process -------------------------------------------------
#
# aiortc makes a fresh certificate for every RTCPeerConnection (an EC key, a signature,
# and its fingerprints recomputed whenever asked). A node in a large channel opens dozens
# of connections at once, and a newcomer's links all land on the few voters: there,
# certificates were a good part of the cost of setting up a link. Browsers share one
# certificate per origin in the same way. The DTLS fingerprints still identify this
# process to its peers, and the channel handshake (raftchat.net.auth) still binds both.

RENEW_BEFORE_EXPIRY = datetime.timedelta(days=7)
"""A certificate this close to its expiry is replaced (aiortc's are valid 30 days; links
already open keep theirs)."""


class _SharedCertificate(RTCCertificate):
    """An aiortc certificate whose fingerprints are computed once."""

    _fingerprints: list[RTCDtlsFingerprint] | None = None

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)


_shared: _SharedCertificate | None = None


def shared_certificate(now: datetime.datetime | None = None) -> RTCCertificate:
    """This process's certificate, made on first use and renewed before it expires."""
    global _shared
    now = now or datetime.datetime.now(tz=datetime.UTC)
    if _shared is None or _shared.expires - now < RENEW_BEFORE_EXPIRY:
        _shared = _SharedCertificate.generateCertificate()
        logger.debug("new DTLS certificate, valid until %s", _shared.expires)
    return _shared


def new_rtc_peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """An ``RTCPeerConnection`` that uses the shared certificate instead of making one.

    aiortc asks ``RTCCertificate.generateCertificate`` for it in the constructor; that
    class method is swapped only for the duration of this synchronous call."""
    certificate = shared_certificate()
    original = RTCCertificate.__dict__["generateCertificate"]
    RTCCertificate.generateCertificate = classmethod(lambda cls: certificate)  # type: ignore[assignment,method-assign]
    try:
        return RTCPeerConnection(configuration)
    finally:
        RTCCertificate.generateCertificate = original  # type: ignore[method-assign]


# --- a bound on the data SCTP keeps in flight -----------------------------------------
#
# aiortc's SCTP sends while its congestion window allows and ignores the receiver's
# advertised window; the window grows until a packet is lost. Between processes on one
# busy machine nothing is lost for a long time (the peer's UDP socket buffer just fills),
# so the window reaches megabytes: measured on loopback, a leader replicating a burst had
# about 1 MB in flight to each follower and a smoothed round-trip time of over one
# second, all of it queueing in front of the followers' sockets. A Raft heartbeat sent
# then arrives a second late, whatever queue it jumped on our side, and an election
# starts.
#
# limit_flight() caps the congestion window of one transport, which bounds the bytes in
# flight and so the queueing delay. The cap is applied through a property that replaces
# the _cwnd attribute on the class; transports without a cap (any not passed to
# limit_flight) behave exactly as before. Only aiortc versions whose SCTP was checked to
# keep its window in _cwnd are adapted; on any other, limit_flight() does nothing and
# returns False.

CHECKED_AIORTC_VERSIONS = ("1.16.",)
"""Versions whose SCTP congestion control was read: it keeps the window in ``_cwnd``,
compares it with ``_flight_size`` before each send, and only ever assigns it."""

_WINDOW = "_raftchat_cwnd"
_CAP = "_raftchat_max_cwnd"


def _get_cwnd(transport: Any) -> int:
    state = transport.__dict__
    return state[_WINDOW] if _WINDOW in state else state["_cwnd"]


def _set_cwnd(transport: Any, value: int) -> None:
    cap = transport.__dict__.get(_CAP)
    transport.__dict__[_WINDOW] = value if cap is None else min(value, cap)


def _flight_cap_supported() -> bool:
    version = getattr(aiortc, "__version__", "")
    return version.startswith(CHECKED_AIORTC_VERSIONS)


def _install_flight_cap() -> bool:
    """Put the capping property on the class once; False if this aiortc is not checked."""
    if isinstance(RTCSctpTransport.__dict__.get("_cwnd"), property):
        return True
    if not _flight_cap_supported():
        logger.info(
            "aiortc %s not checked: SCTP flight is not limited",
            getattr(aiortc, "__version__", "?"),
        )
        return False
    RTCSctpTransport._cwnd = property(_get_cwnd, _set_cwnd)  # type: ignore[attr-defined]
    return True


def limit_flight(transport: RTCSctpTransport, max_bytes: int) -> bool:
    """Never keep more than about ``max_bytes`` (plus one packet) unacknowledged on
    ``transport``. False if this aiortc version is not adapted (nothing changed)."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    if not _install_flight_cap():
        return False
    transport.__dict__[_CAP] = max_bytes
    transport._cwnd = transport._cwnd  # type: ignore[attr-defined]  # apply the cap now
    return True


def flight_limit(transport: RTCSctpTransport) -> int | None:
    """The cap :func:`limit_flight` set on ``transport``, or None."""
    return transport.__dict__.get(_CAP)


# --- a larger UDP receive buffer ------------------------------------------------------
#
# aioice asks for a 256 KiB receive buffer on its sockets (aioice.turn.
# UDP_SOCKET_BUFFER_SIZE). aiortc's SCTP sends every DATA chunk as its own datagram and
# limits what it has in flight only by its congestion window (see above). A peer that is
# briefly starved of CPU (two cores, several nodes) lets such a burst overflow its
# buffer, and aiortc's SCTP then often waits for a retransmission timeout of at least one
# second (SCTP_RTO_MIN) with its window cut to one packet: long enough to delay Raft
# heartbeats past an election timeout. Measured on loopback with three node processes:
# about 3,000 of 42,000 datagrams of a 5,000-message burst were dropped with the default
# buffer, none with 4 MiB. The kernel caps the size at net.core.rmem_max (often 208 KiB;
# raise it with `sysctl net.core.rmem_max=4194304` where bursts are lost), so asking for
# more never fails; it may just not help.


def _nominated_pair(ice_connection: Any) -> Any | None:
    """The nominated candidate pair of component 1 of an aioice Connection, if any.

    aioice keeps the nominated pairs in ``Connection._nominated`` (component ->
    CandidatePair) and has no public accessor for them.
    """
    return getattr(ice_connection, "_nominated", {}).get(1)


def selected_socket(ice_connection: Any) -> Any | None:
    """The UDP socket of the nominated candidate pair, if there is one.

    Each pair's ``protocol.transport`` is the asyncio datagram transport of its local
    candidate. A relayed (TURN) candidate has no socket of its own here: None.
    """
    pair = _nominated_pair(ice_connection)
    transport = getattr(getattr(pair, "protocol", None), "transport", None)
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and hasattr(sock, "setsockopt") else None


def enlarge_receive_buffer(ice_connection: Any, size: int) -> int | None:
    """Ask for a receive buffer of at least ``size`` bytes on the connection's socket.

    Returns the size the kernel granted (it reports twice what it reserves for data),
    or None when there is no socket to set (not connected yet, a relayed candidate) or
    the system refused. Never shrinks the buffer, never raises."""
    sock = selected_socket(ice_connection)
    if sock is None:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError as error:
        logger.debug("cannot enlarge the UDP receive buffer: %s", error)
        return None


# --- reading a connection -------------------------------------------------------------


def ice_connection_of(pc: RTCPeerConnection) -> aioice.ice.Connection | None:
    """The aioice Connection under ``pc``'s data channel transport, once it has one."""
    sctp = pc.sctp
    return sctp.transport.transport._connection if sctp is not None else None


def selected_pair(ice_connection: aioice.ice.Connection) -> SelectedPair | None:
    """The pair ICE selected on an aioice Connection (component 1), if any."""
    pair = _nominated_pair(ice_connection)
    if pair is None:
        return None
    return SelectedPair(
        local_type=pair.local_candidate.type,
        local_address=pair.local_addr,
        remote_type=pair.remote_candidate.type,
        remote_address=pair.remote_addr,
    )


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


# --- the engine -----------------------------------------------------------------------


class AiortcPeerConnection:
    """A :class:`~raftchat.net.engines.base.PeerConnection` on an aiortc RTCPeerConnection."""

    def __init__(
        self,
        engine: AiortcEngine,
        peer: str,
        settings: ConnectionSettings,
        handler: ConnectionHandler,
    ) -> None:
        self.peer = peer
        self._engine = engine
        self._settings = settings
        self._handler = handler
        self.pc = new_rtc_peer_connection(
            build_rtc_configuration(settings.ice_servers, settings.relay_only)
        )
        "The aiortc connection itself."
        self.channel: RTCDataChannel | None = None
        "The DataChannel, once created (offerer) or announced by the peer (answerer)."
        self._opened = False
        self._closed = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    # --- negotiation ----------------------------------------------------------------

    async def create_offer(self) -> str:
        self._attach(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        with host_candidates(self._settings.host_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def create_answer(self, offer_sdp: str) -> str:
        self.pc.on("datachannel", self._on_datachannel)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if self.pc.sctp is None:
            raise ValueError("the offer has no data channel (application) section")
        with host_candidates(self._settings.host_addresses):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    @property
    def awaiting_answer(self) -> bool:
        return self.pc.signalingState == "have-local-offer"

    # --- the open channel -----------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        return self.channel.bufferedAmount if self.channel is not None else 0

    @property
    def remote_max_message_size(self) -> int | None:
        """aiortc enforces the remote's SDP ``max-message-size`` (0 = unlimited) but
        exposes it only as ``RTCSctpTransport._remote_max_message_size``."""
        return getattr(self.pc.sctp, "_remote_max_message_size", None) or None

    def send(self, frame: bytes) -> None:
        if self._engine.drops(self.peer, "send"):
            return
        channel = self.channel
        if channel is None:
            raise EngineError("no data channel")
        try:
            channel.send(frame)
        except (InvalidStateError, ValueError) as exc:
            raise EngineError(repr(exc)) from exc

    def dtls_fingerprints(self) -> tuple[bytes, bytes]:
        return dtls_fingerprints(self.pc)

    def selected_pair(self) -> SelectedPair | None:
        ice_connection = ice_connection_of(self.pc)
        return selected_pair(ice_connection) if ice_connection else None

    async def close(self) -> None:
        self._closed = True
        try:
            await self.pc.close()
        except Exception:
            logger.exception("closing a peer connection failed")

    # --- aiortc events --------------------------------------------------------------

    def _attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.bufferedAmountLowThreshold = self._settings.send_buffer_low_bytes
        channel.on("open", self._on_channel_open)
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._on_buffered_amount_low)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self.channel is not None:
            logger.warning("link %s: unexpected channel %r closed", self.peer, channel.label)
            channel.close()
            return
        self._attach(channel)
        if channel.readyState == "open":
            self._on_channel_open()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed") and not self._closed:
            self._handler.connection_failed(self, f"peer connection {state}")

    def _on_channel_open(self) -> None:
        if self._opened or self._closed:
            return
        self._opened = True
        if self._engine.partitioned(self.peer):
            self._handler.connection_failed(
                self, "peer unreachable (traffic dropped by the frame filter)"
            )
            return
        self._tune_transport()
        self._handler.channel_open(self)

    def _tune_transport(self) -> None:
        """Apply the engine's UDP receive buffer and SCTP flight cap."""
        sctp = self.pc.sctp
        ice_connection = ice_connection_of(self.pc)
        tuning = self._engine.tuning
        if ice_connection is not None and tuning.udp_receive_buffer_bytes:
            enlarge_receive_buffer(ice_connection, tuning.udp_receive_buffer_bytes)
        if sctp is not None and tuning.sctp_max_flight_bytes:
            limit_flight(sctp, tuning.sctp_max_flight_bytes)

    def _on_message(self, frame: bytes | str) -> None:
        if self._closed or self._engine.drops(self.peer, "recv"):
            return
        self._handler.frame_received(self, frame)

    def _on_channel_close(self) -> None:
        if not self._closed:
            self._handler.channel_closed(self)

    def _on_buffered_amount_low(self) -> None:
        if not self._closed:
            self._handler.send_buffer_low(self)


@dataclass(frozen=True)
class AiortcTuning:
    """What the aiortc engine adapts on every open connection (see the sections above);
    the mesh's ``MeshConfig`` holds the values. 0 leaves aiortc's own behaviour."""

    udp_receive_buffer_bytes: int = 4 * 1024 * 1024
    "Receive buffer asked for on the selected UDP socket (0: aioice's 256 KiB)."
    sctp_max_flight_bytes: int = 128 * 1024
    "Most bytes SCTP keeps unacknowledged (0: no limit, as in aiortc)."


class AiortcEngine(FrameFilterHook):
    """Peer connections through aiortc (see :class:`~raftchat.net.engines.base.Engine`)."""

    name = "aiortc"

    def __init__(self, tuning: AiortcTuning | None = None) -> None:
        super().__init__()
        self.tuning = tuning or AiortcTuning()

    def connect(
        self, peer: str, settings: ConnectionSettings, handler: ConnectionHandler
    ) -> AiortcPeerConnection:
        return AiortcPeerConnection(self, peer, settings, handler)
