"""The wrtc engine: the mesh's WebRTC through libwebrtc, Chrome's engine (``pip install wrtc``).

This is the one module of raftchat that imports ``webrtc`` (the package ``wrtc``
installs). It uses only the package's public, browser-shaped API, and was written and
checked for **wrtc 0.1.0** (libwebrtc M152); pyproject.toml's ``wrtc`` extra pins
``wrtc>=0.1,<0.2`` (pre-1.0, its API may change between minor versions). Nothing here
adapts libwebrtc itself: its SCTP (dcSCTP) honours the receiver's window and its sockets
are sized by libwebrtc, so aiortc's flight cap and receive buffer have no counterpart.

What differs from aiortc, and how it is met:

==========================  ==========================================================
libwebrtc does              so this engine
==========================  ==========================================================
skips loopback candidates   calls ``webrtc.allow_loopback()`` before the process's first
unless allowed, and only    connection when its host addresses are loopback (tests, a
before the first connection  demo on one machine); a connection that needs loopback
                            after a first one without fails with an EngineError
gathers host candidates on  offers and answers carry only the candidates on the
every interface (no way to  configured host addresses (:func:`filter_candidates`); with
restrict it)                none configured, loopback candidates are left out, as
                            aioice does. libwebrtc may still *send* from another local
                            interface to a peer's loopback candidate (the packets never
                            leave the host)
trickles candidates         each description is sent once gathering is complete
redacts the address of a    :attr:`SelectedPair.remote_address` is None for such a pair
peer-reflexive candidate    (``net/guess_throttle.py`` then counts all of them as one
(in stats too)              unknown address)
makes a certificate per     one ECDSA certificate per process (made on the worker
connection                  thread wrtc provides, renewed before it expires), passed
                            in ``RTCConfiguration.certificates``; its fingerprint is ours
gives the peer's            the SHA-256 of the first DER certificate of
certificates as DER         ``RTCDtlsTransport.get_remote_certificates()``
reports the selected pair   ``RTCIceTransport.get_selected_candidate_pair()``; while it
a moment after the channel  is not there yet, the open is reported after one
opens, now and then         ``get_stats()`` (its transport's selected pair); frames that
                            arrive meanwhile are held and delivered after it
``pc.close()`` is           nothing is reported after it; the peer sees its channel
synchronous and final       close at once (an SCTP reset), or a silent link if this
                            process died
==========================  ==========================================================

The ICE servers are always an explicit list (wrtc's default is empty too, but aiortc's
is not, and wrtc's ``webrtc.aiortc`` compatibility layer is not used here).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import webrtc

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

CHECKED_VERSIONS = ("0.1.",)
"""wrtc versions this module was written and checked against."""


def wrtc_version() -> str | None:
    """The installed wrtc's version, or None if it cannot be told."""
    from importlib import metadata

    try:
        return metadata.version("wrtc")
    except metadata.PackageNotFoundError:
        return None


# --- ICE configuration ----------------------------------------------------------------


def build_rtc_configuration(
    ice_servers: Sequence[IceServer],
    relay_only: bool,
    certificate: webrtc.RTCCertificate | None = None,
) -> webrtc.RTCConfiguration:
    """The RTCConfiguration for one peer connection: only the configured servers."""
    return webrtc.RTCConfiguration(
        ice_servers=[
            webrtc.RTCIceServer(
                urls=list(server.urls), username=server.username, credential=server.credential
            )
            for server in ice_servers
        ],
        ice_transport_policy="relay" if relay_only else "all",
        certificates=[certificate] if certificate is not None else None,
    )


# --- loopback candidates --------------------------------------------------------------

_loopback_allowed: bool | None = None
"""Whether this process allowed loopback candidates; None until its first connection."""


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def prepare_for(host_addresses: Sequence[str] | None) -> None:
    """Called before every new connection: allow loopback candidates if these host
    addresses need them. libwebrtc takes that only before the process's first connection;
    a later one that needs it raises :class:`EngineError`."""
    global _loopback_allowed
    wants_loopback = any(_is_loopback(address) for address in host_addresses or ())
    if _loopback_allowed is None:
        if wants_loopback:
            try:
                webrtc.allow_loopback()
            except webrtc.InvalidStateError:
                # Some other code of this process made a connection already.
                _loopback_allowed = False
                raise EngineError(
                    "wrtc: loopback candidates can only be allowed before the first "
                    "connection of the process"
                ) from None
            logger.debug("wrtc: loopback candidates allowed")
        _loopback_allowed = wants_loopback
    elif wants_loopback and not _loopback_allowed:
        raise EngineError(
            "wrtc: loopback host addresses asked for after this process's first "
            "connection was made without them (libwebrtc allows loopback candidates only "
            "before the first connection)"
        )


def _normalized(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return address


def filter_candidates(sdp: str, host_addresses: Sequence[str] | None) -> str:
    """``sdp`` with only the candidates we mean to offer.

    A host candidate stays only if its address is one of ``host_addresses`` (with None:
    if it is not loopback); server-reflexive and relay candidates always stay. The media
    section's default address (``c=`` and the ``m=`` port) follows the first UDP
    candidate kept, so the description names no address that was left out.
    """
    allowed = None if host_addresses is None else {_normalized(a) for a in host_addresses}
    lines = sdp.splitlines()
    kept: list[str] = []
    default: tuple[str, str] | None = None
    for line in lines:
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) < 8:
                continue
            address, port, kind = fields[4], fields[5], fields[7]
            if kind == "host":
                normalized = _normalized(address)
                wanted = not _is_loopback(normalized) if allowed is None else normalized in allowed
                if not wanted:
                    continue
            if default is None and fields[2].lower() == "udp":
                default = (address, port)
        kept.append(line)
    if default is not None:
        address, port = default
        family = "IP6" if ":" in address else "IP4"
        for index, line in enumerate(kept):
            if line.startswith("c=IN "):
                kept[index] = f"c=IN {family} {address}"
            elif line.startswith("m=application "):
                parts = line.split(" ")
                parts[1] = port
                kept[index] = " ".join(parts)
    return "\r\n".join(kept) + "\r\n"


# --- one DTLS certificate per process -------------------------------------------------

OPEN_DETAILS_WAIT_S = 2.0
"""Longest wait, after a channel opened, for its selected pair and the peer's certificate
to be readable (see :meth:`WrtcPeerConnection._open_when_known`)."""

RENEW_BEFORE_EXPIRY = datetime.timedelta(days=7)
"""A certificate this close to its expiry is replaced (wrtc's are valid 30 days; links
already open keep theirs)."""

_certificate: webrtc.RTCCertificate | None = None
_certificate_lock: asyncio.Lock | None = None
_certificate_loop: asyncio.AbstractEventLoop | None = None


def _expires_soon(certificate: webrtc.RTCCertificate, now: datetime.datetime) -> bool:
    expires = datetime.datetime.fromtimestamp(certificate.expires / 1000, tz=datetime.UTC)
    return expires - now < RENEW_BEFORE_EXPIRY


async def shared_certificate(now: datetime.datetime | None = None) -> webrtc.RTCCertificate:
    """This process's certificate, made on first use and renewed before it expires.

    As with aiortc (``aiortc_engine.shared_certificate``), a node with dozens of links
    makes one key instead of one per connection; the channel handshake still binds the
    fingerprints of both ends of each connection."""
    global _certificate, _certificate_lock, _certificate_loop
    now = now or datetime.datetime.now(tz=datetime.UTC)
    if _certificate is not None and not _expires_soon(_certificate, now):
        return _certificate
    loop = asyncio.get_running_loop()
    if _certificate_lock is None or _certificate_loop is not loop:
        _certificate_lock, _certificate_loop = asyncio.Lock(), loop
    async with _certificate_lock:
        if _certificate is None or _expires_soon(_certificate, now):
            _certificate = await webrtc.RTCPeerConnection.generate_certificate("ECDSA")
            logger.debug("new DTLS certificate (wrtc)")
    return _certificate


def certificate_fingerprint(certificate: webrtc.RTCCertificate) -> bytes:
    """The SHA-256 fingerprint of one of our certificates, as bytes."""
    for fingerprint in certificate.get_fingerprints():
        if (fingerprint.algorithm or "").lower() == "sha-256" and fingerprint.value:
            return bytes.fromhex(fingerprint.value.replace(":", ""))
    raise ValueError("the certificate has no SHA-256 fingerprint")


# --- the engine -----------------------------------------------------------------------


class WrtcPeerConnection:
    """A :class:`~raftchat.net.engines.base.PeerConnection` on a wrtc RTCPeerConnection."""

    def __init__(
        self,
        engine: WrtcEngine,
        peer: str,
        settings: ConnectionSettings,
        handler: ConnectionHandler,
    ) -> None:
        self.peer = peer
        self._engine = engine
        self._settings = settings
        self._handler = handler
        self.pc: webrtc.RTCPeerConnection | None = None
        "The wrtc connection, made by :meth:`create_offer` or :meth:`create_answer`."
        self.channel: webrtc.RTCDataChannel | None = None
        "The DataChannel, once created (offerer) or announced by the peer (answerer)."
        self._certificate: webrtc.RTCCertificate | None = None
        self._pair: SelectedPair | None = None
        self._gathered: asyncio.Future[None] | None = None
        self._opened = False
        "The channel opened (the open may not be reported yet: :meth:`_open_when_known`)."
        self._reported = False
        "The handler was told the channel is open."
        self._held: list[bytes | str] = []
        "Frames that arrived between the open and its report."
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- negotiation ----------------------------------------------------------------

    async def _new_pc(self) -> webrtc.RTCPeerConnection:
        prepare_for(self._settings.host_addresses)
        certificate = await shared_certificate()
        if self._closed:
            raise EngineError("connection closed")
        self._certificate = certificate
        settings = self._settings
        pc = webrtc.RTCPeerConnection(
            build_rtc_configuration(settings.ice_servers, settings.relay_only, certificate)
        )
        self.pc = pc
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("icegatheringstatechange", self._on_gathering_state)
        return pc

    async def create_offer(self) -> str:
        pc = await self._new_pc()
        self._attach(pc.create_data_channel(CHANNEL_LABEL, webrtc.RTCDataChannelInit(ordered=True)))
        await pc.set_local_description(await pc.create_offer())
        return await self._complete_description()

    async def create_answer(self, offer_sdp: str) -> str:
        if "m=application " not in offer_sdp:
            raise ValueError("the offer has no data channel (application) section")
        pc = await self._new_pc()
        pc.on("datachannel", self._on_datachannel)
        try:
            await pc.set_remote_description(webrtc.RTCSessionDescription("offer", offer_sdp))
        except (webrtc.RTCError, webrtc.InvalidAccessError) as exc:
            raise ValueError(f"bad offer: {exc}") from exc
        await pc.set_local_description(await pc.create_answer())
        return await self._complete_description()

    async def _complete_description(self) -> str:
        """The local description once every candidate is gathered (no trickle ICE)."""
        pc = self.pc
        assert pc is not None
        if pc.ice_gathering_state != "complete":
            self._gathered = asyncio.get_running_loop().create_future()
            await self._gathered
        description = pc.local_description
        if self._closed or description is None:
            raise EngineError("connection closed")
        return filter_candidates(description.sdp, self._settings.host_addresses)

    async def accept_answer(self, answer_sdp: str) -> None:
        if self.pc is None:
            raise EngineError("no offer")
        await self.pc.set_remote_description(webrtc.RTCSessionDescription("answer", answer_sdp))

    @property
    def awaiting_answer(self) -> bool:
        return self.pc is not None and self.pc.signaling_state == "have-local-offer"

    # --- the open channel -----------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        return self.channel.buffered_amount if self.channel is not None else 0

    @property
    def remote_max_message_size(self) -> int | None:
        """``RTCSctpTransport.max_message_size``: the smaller of the peer's SDP
        ``max-message-size`` and ours; None while unknown or unlimited."""
        sctp = self.pc.sctp if self.pc is not None else None
        size = sctp.max_message_size if sctp is not None else None
        if size is None or size == float("inf") or size <= 0:
            return None
        return int(size)

    def send(self, frame: bytes) -> None:
        if self._engine.drops(self.peer, "send"):
            return
        channel = self.channel
        if channel is None:
            raise EngineError("no data channel")
        try:
            channel.send(frame)
        except (webrtc.InvalidStateError, webrtc.OperationError, TypeError) as exc:
            raise EngineError(repr(exc)) from exc

    def dtls_fingerprints(self) -> tuple[bytes, bytes]:
        pc = self.pc
        sctp = pc.sctp if pc is not None else None
        if sctp is None or self._certificate is None:
            raise ValueError("no SCTP transport")
        remote = sctp.transport.get_remote_certificates()
        if not remote:
            raise ValueError("the peer presented no DTLS certificate")
        local = certificate_fingerprint(self._certificate)
        return local, hashlib.sha256(remote[0]).digest()

    def selected_pair(self) -> SelectedPair | None:
        return self._pair or self._read_pair()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        gathered = self._gathered
        if gathered is not None and not gathered.done():
            gathered.set_exception(EngineError("connection closed"))
            gathered.exception()  # retrieved here: nobody may await it any more
        for task in list(self._tasks):
            task.cancel()
        if self.pc is not None:
            try:
                self.pc.close()
            except Exception:
                logger.exception("closing a peer connection failed")

    # --- the selected pair ----------------------------------------------------------

    def _read_pair(self) -> SelectedPair | None:
        """The pair the ICE transport reports now, or None."""
        sctp = self.pc.sctp if self.pc is not None else None
        if sctp is None:
            return None
        try:
            pair = sctp.transport.ice_transport.get_selected_candidate_pair()
        except Exception:
            logger.debug("link %s: no selected candidate pair", self.peer, exc_info=True)
            return None
        if pair is None:
            return None
        local, remote = pair.local, pair.remote
        return SelectedPair(
            local_type=str(local.type.value if local.type else "unknown"),
            local_address=(local.address or "", local.port or 0),
            remote_type=str(remote.type.value if remote.type else "unknown"),
            remote_address=(remote.address, remote.port or 0) if remote.address else None,
        )

    async def _pair_from_stats(self) -> SelectedPair | None:
        """The transport's selected pair from ``get_stats()``."""
        assert self.pc is not None
        report = await self.pc.get_stats()
        for stats in report.values():
            pair_id = getattr(stats, "selected_candidate_pair_id", None)
            pair = report.get(pair_id) if pair_id else None
            if pair is None:
                continue
            local = report.get(pair.local_candidate_id)
            remote = report.get(pair.remote_candidate_id)
            if local is None or remote is None:
                return None
            return SelectedPair(
                local_type=str(getattr(local.candidate_type, "value", local.candidate_type)),
                local_address=(local.address or "", local.port or 0),
                remote_type=str(getattr(remote.candidate_type, "value", remote.candidate_type)),
                remote_address=(remote.address, remote.port or 0) if remote.address else None,
            )
        return None

    # --- wrtc events ----------------------------------------------------------------

    def _attach(self, channel: webrtc.RTCDataChannel) -> None:
        self.channel = channel
        channel.buffered_amount_low_threshold = self._settings.send_buffer_low_bytes
        channel.on("open", self._on_channel_open)
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._on_buffered_amount_low)

    def _on_datachannel(self, event: webrtc.RTCDataChannelEvent) -> None:
        channel = event.channel
        if channel.label != CHANNEL_LABEL or self.channel is not None:
            logger.warning("link %s: unexpected channel %r closed", self.peer, channel.label)
            channel.close()
            return
        self._attach(channel)
        if channel.ready_state == "open":
            self._on_channel_open()

    def _on_gathering_state(self, _event: object = None) -> None:
        gathered = self._gathered
        pc = self.pc
        done = pc is not None and pc.ice_gathering_state == "complete"
        if done and gathered is not None and not gathered.done():
            gathered.set_result(None)

    def _on_connection_state(self, _event: object = None) -> None:
        if self._closed or self.pc is None:
            return
        state = self.pc.connection_state
        if state in ("failed", "closed"):
            self._handler.connection_failed(self, f"peer connection {state}")

    def _on_channel_open(self, _event: object = None) -> None:
        if self._opened or self._closed:
            return
        self._opened = True
        if self._engine.partitioned(self.peer):
            self._handler.connection_failed(
                self, "peer unreachable (traffic dropped by the frame filter)"
            )
            return
        self._pair = self._read_pair()
        if self._pair is not None and self._remote_certificate_known():
            self._report_open()
            return
        task = asyncio.ensure_future(self._open_when_known())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remote_certificate_known(self) -> bool:
        sctp = self.pc.sctp if self.pc is not None else None
        return sctp is not None and bool(sctp.transport.get_remote_certificates())

    async def _open_when_known(self) -> None:
        """Report the open once the selected pair and the peer's certificate can be read.

        The channel's open event can come a moment before the ICE and DTLS transports
        surface them; this waits for that moment (then the pair from ``get_stats()`` if
        the transport still names none), and at most :data:`OPEN_DETAILS_WAIT_S`."""
        started = asyncio.get_running_loop().time()
        delay = 0.001
        while not self._closed:
            self._pair = self._pair or self._read_pair()
            certificate = self._remote_certificate_known()
            waited = asyncio.get_running_loop().time() - started
            if (self._pair is not None and certificate) or waited > OPEN_DETAILS_WAIT_S:
                break
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.05)
        if self._closed:
            return
        if self._pair is None:
            try:
                self._pair = await self._pair_from_stats()
            except Exception:
                logger.debug("link %s: stats without a selected pair", self.peer, exc_info=True)
        logger.debug(
            "link %s: channel open reported after %.1f ms (pair %s, certificate %s)",
            self.peer,
            1000 * (asyncio.get_running_loop().time() - started),
            self._pair is not None,
            self._remote_certificate_known(),
        )
        if not self._closed:
            self._report_open()

    def _report_open(self) -> None:
        self._reported = True
        self._handler.channel_open(self)
        held, self._held = self._held, []
        for frame in held:
            if self._closed:
                return
            self._handler.frame_received(self, frame)

    def _on_message(self, event: webrtc.MessageEvent) -> None:
        if self._closed or self._engine.drops(self.peer, "recv"):
            return
        data = event.data
        frame = data if isinstance(data, bytes | str) else bytes(data)  # type: ignore[arg-type]
        if not self._reported:
            self._held.append(frame)
            return
        self._handler.frame_received(self, frame)

    def _on_channel_close(self, _event: object = None) -> None:
        if not self._closed:
            self._handler.channel_closed(self)

    def _on_buffered_amount_low(self, _event: object = None) -> None:
        if not self._closed and self._reported:
            self._handler.send_buffer_low(self)


class WrtcEngine(FrameFilterHook):
    """Peer connections through wrtc (see :class:`~raftchat.net.engines.base.Engine`)."""

    name = "wrtc"

    def connect(
        self, peer: str, settings: ConnectionSettings, handler: ConnectionHandler
    ) -> WrtcPeerConnection:
        return WrtcPeerConnection(self, peer, settings, handler)
