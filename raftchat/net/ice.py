"""ICE settings of the mesh: STUN/TURN servers and which host addresses to use.

Engine-neutral values; the engine (``net/engines/``) turns them into its own
configuration and only ever contacts the servers configured here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPV4_LOOPBACK = "127.0.0.1"
IPV6_LOOPBACK = "::1"

_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>[A-Za-z0-9\-._~!$&'()*+,;=]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>[a-z]+))?"
)
"""``scheme:host[:port][?transport=udp|tcp]`` (RFC 7064, RFC 7065) in the form both
engines accept: aiortc takes no IPv6 literal, libwebrtc no other characters in a host."""


def parse_ice_url(url: str) -> str:
    """The scheme of a ``stun:``/``turn:`` URL (``stun``, ``stuns``, ``turn``, ``turns``);
    ValueError says what is wrong with it."""
    match = _ICE_URL.fullmatch(url)
    if match is None:
        raise ValueError("expected scheme:host[:port][?transport=udp|tcp]")
    scheme, port, transport = match["scheme"], match["port"], match["transport"]
    if port is not None and not 0 < int(port) <= 65_535:
        raise ValueError(f"port {port} out of range")
    if transport is not None and (scheme.startswith("stun") or transport not in ("udp", "tcp")):
        raise ValueError(f"transport {transport!r} is not valid for {scheme}")
    return scheme


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
                scheme = parse_ice_url(url)
            except ValueError as exc:
                raise ValueError(
                    f"ICE server URL {url!r} is not valid ({exc}); use 'stun:HOST:PORT' or "
                    "'turn:HOST:PORT[?transport=udp|tcp]'"
                ) from None
            if scheme in ("turn", "turns") and (self.username is None or self.credential is None):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")

    @property
    def is_turn(self) -> bool:
        return any(url.startswith(("turn:", "turns:")) for url in self.urls)


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
