"""What each client address holds and does on the signaling server: open connections,
channels it opened, and its join rate.

An address is an IPv4 address or an IPv6 /64 network (what one subscriber usually gets,
so that a block of addresses counts once). Addresses in ``ServerConfig.exempt_addresses``
are tracked too but never refused by a per-address limit. Pure bookkeeping: time is
passed in, nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from raftchat.net.rate_limit import TokenBucket
from raftchat.net.signaling.config import ServerConfig


def address_key(host: str) -> str:
    """The unit the per-address limits count: the IPv4 address (also for an IPv4-mapped
    IPv6 one), or the IPv6 /64 network; anything unparsable as it is."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _normalized(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class AddressUsage:
    """One address's share of the server."""

    def __init__(self, key: str, exempt: bool, config: ServerConfig, now: float) -> None:
        self.key = key
        self.exempt = exempt
        self.connections = 0
        "Open TCP connections (HTTP or WebSocket)."
        self.channels = 0
        "Channels this address opened that still have a peer."
        self.sessions = 0
        "Peers it has in channels (a socket of its own or a session of a shared one)."
        self.joins = TokenBucket(
            config.joins_per_minute_per_address / 60, config.join_burst_per_address, now
        )

    def idle(self) -> bool:
        return self.connections == 0 and self.channels == 0 and self.sessions == 0


class Addresses:
    """Every address the server currently knows, bounded: an address holding nothing is
    kept only while its join budget is still refilling, and at most
    ``max_tracked_addresses`` of those (the longest idle are forgotten first)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._exempt = frozenset(_normalized(address) for address in config.exempt_addresses)
        self._usage: dict[str, AddressUsage] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._usage)

    def of(self, host: str, now: float) -> AddressUsage:
        """The usage of ``host``'s address (created if new); call :meth:`release` when
        whatever you took from it is given back."""
        key = address_key(host)
        usage = self._usage.get(key)
        if usage is None:
            usage = AddressUsage(key, _normalized(host) in self._exempt, self.config, now)
            self._usage[key] = usage
        self._idle.pop(key, None)
        return usage

    def release(self, usage: AddressUsage, now: float) -> None:
        """Forget ``usage`` if it holds nothing and its join budget is full again."""
        if not usage.idle() or self._usage.get(usage.key) is not usage:
            return
        if usage.joins.available(now) >= usage.joins.capacity:
            del self._usage[usage.key]
            self._idle.pop(usage.key, None)
            return
        self._idle[usage.key] = None
        self._idle.move_to_end(usage.key)
        while len(self._idle) > self.config.max_tracked_addresses:
            oldest, _ = self._idle.popitem(last=False)
            del self._usage[oldest]
