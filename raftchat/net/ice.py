"""ICE configuration for the mesh, and the host-candidate adapter for aioice.

Two facts about aiortc 1.16 / aioice 0.13 shape this module:

- ``RTCPeerConnection`` falls back to a public STUN server when
  ``RTCConfiguration.iceServers`` is ``None``. :func:`build_rtc_configuration`
  always passes an explicit list, made only of the servers configured.
- aioice gathers host candidates from every interface *except* 127.0.0.1
  (``aioice.ice.get_host_addresses``), so two peers on one machine whose only
  common network is loopback cannot connect. :func:`host_candidates` restricts
  the host candidates gathered inside its ``with`` block to given addresses.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

logger = logging.getLogger(__name__)

IPV4_LOOPBACK = "127.0.0.1"
IPV6_LOOPBACK = "::1"


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as in the W3C ``RTCIceServer`` dictionary."""

    urls: tuple[str, ...] | str
    """``stun:HOST:PORT`` or ``turn:HOST:PORT[?transport=udp|tcp]`` URLs (one or several)."""
    username: str | None = None
    "TURN username (required for turn: URLs)."
    credential: str | None = field(default=None, repr=False)
    "TURN password (required for turn: URLs)."

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        else:
            object.__setattr__(self, "urls", tuple(self.urls))
        self._validate()

    def _validate(self) -> None:
        if not self.urls:
            raise ValueError("IceServer needs at least one URL, e.g. 'turn:127.0.0.1:3478'")
        for url in self.urls:
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError as exc:
                raise ValueError(
                    f"ICE server URL {url!r} is not valid ({exc}); use 'stun:HOST:PORT' or "
                    "'turn:HOST:PORT[?transport=udp|tcp]'"
                ) from None
            if parsed["scheme"] in ("turn", "turns") and (
                self.username is None or self.credential is None
            ):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")

    @property
    def is_turn(self) -> bool:
        return any(url.startswith(("turn:", "turns:")) for url in self.urls)

    def to_rtc(self) -> RTCIceServer:
        return RTCIceServer(
            urls=list(self.urls), username=self.username, credential=self.credential
        )


def build_rtc_configuration(ice_servers: Sequence[IceServer], relay_only: bool) -> RTCConfiguration:
    """The RTCConfiguration for one peer connection: only the configured servers.

    ``iceServers`` is always a list (possibly empty), never ``None``, so aiortc
    never adds its default public STUN server.
    """
    return RTCConfiguration(
        iceServers=[server.to_rtc() for server in ice_servers],
        iceTransportPolicy=(
            RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        ),
    )


def loopback_address_of(url: str) -> str | None:
    """The loopback address to use for ICE if ``url``'s host is loopback, else None."""
    host = urlsplit(url).hostname
    if host is None:
        return None
    if host == "localhost":
        return IPV4_LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_loopback:
        return None
    return IPV6_LOOPBACK if address.version == 6 else IPV4_LOOPBACK


# --- host-candidate adapter -------------------------------------------------------------
#
# aioice.ice.Connection.gather_candidates() asks the module-level function
# aioice.ice.get_host_addresses() which local addresses to bind host candidates
# to. We replace that function once with a wrapper that returns the addresses
# set in a context variable, if any, and otherwise calls the original. The
# variable is set only around RTCPeerConnection.setLocalDescription() (where
# aiortc gathers); the tasks aiortc starts from there inherit the context, so
# only the mesh's own connections are affected, and nothing else in the process.

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "raftchat_ice_host_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _host_addresses.get()
    if addresses is None:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return list(addresses)


def _install_adapter() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def host_candidates(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather ICE host candidates only on ``addresses`` inside this block.

    ``None`` keeps aioice's own choice (every interface except loopback).
    """
    if addresses is None:
        yield
        return
    _install_adapter()
    token = _host_addresses.set(tuple(addresses))
    try:
        yield
    finally:
        _host_addresses.reset(token)


@dataclass(frozen=True)
class SelectedPair:
    """The candidate pair ICE selected for a connection."""

    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]


def selected_pair(ice_connection: aioice.ice.Connection) -> SelectedPair | None:
    """The nominated pair of component 1 of an aioice Connection, if any.

    aioice keeps the nominated pairs in ``Connection._nominated`` (component ->
    CandidatePair) and has no public accessor for them.
    """
    nominated = getattr(ice_connection, "_nominated", {})
    pair = nominated.get(1)
    if pair is None:
        return None
    return SelectedPair(
        local_type=pair.local_candidate.type,
        local_address=pair.local_addr,
        remote_type=pair.remote_candidate.type,
        remote_address=pair.remote_addr,
    )


__all__ = [
    "IPV4_LOOPBACK",
    "IPV6_LOOPBACK",
    "IceServer",
    "SelectedPair",
    "build_rtc_configuration",
    "host_candidates",
    "loopback_address_of",
    "selected_pair",
]
