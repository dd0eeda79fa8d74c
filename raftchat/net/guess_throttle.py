"""Who may try the channel passphrase how often: a budget per remote peer and one per
remote address, never one for the whole node.

Each failed handshake in a private channel is one online guess at the passphrase (a peer
that ran SPAKE2 with a guess can check it against our confirmation), or a peer that is
wrong in some other way; either way it is charged to *that* peer's id and to the address
its connection comes from. A peer or an address whose budget is spent gets no new
handshake until it refills; everybody else is unaffected, so an attacker who spends its
budget (even by answering every handshake with ``REJECT(wrong_passphrase)`` at once)
locks out only itself. A REJECT costs its sender, not the receiver.

The address budget stops one machine (or a signaling server) from inventing new peer ids
to get new budgets. It is waived for a peer id that has authenticated before, so a member
that shares an address with an attacker (one NAT) still gets back in. An address is the
remote IP of the connection's selected ICE candidate pair (an IPv6 /64); through a TURN
relay it is the relayed address and port, since every user of a relay shares its IP; a
peer-reflexive candidate whose address the engine does not expose (libwebrtc's) counts
as one shared unknown address.

Pure bookkeeping: time is passed in; memory is bounded (the least recently used entries
are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict

from raftchat.net.engines.base import SelectedPair
from raftchat.net.rate_limit import TokenBucket
from raftchat.net.signaling.addresses import address_key

MAX_TRACKED = 4096
"""Peers (and addresses, and vouched peers) remembered at most, each."""


UNKNOWN_ADDRESS = "unknown (peer-reflexive)"
"""The one unit all connections share whose remote address the engine cannot tell."""


def remote_address(pair: SelectedPair | None) -> str | None:
    """The unit the address budget counts for a connection's selected candidate pair.

    An engine that cannot tell the remote address (libwebrtc hides a peer-reflexive
    candidate's) gives :data:`UNKNOWN_ADDRESS`: such peers share one budget, as every user
    of a relay shares the relay's, so hiding one's address gains an attacker nothing."""
    if pair is None:
        return None
    if pair.remote_address is None:
        return UNKNOWN_ADDRESS
    host, port = pair.remote_address[0], pair.remote_address[1]
    if pair.remote_type == "relay":
        return f"{host}:{port} (relayed)"
    return address_key(str(host))


class GuessThrottle:
    """Failed-handshake budgets per peer id and per remote address."""

    def __init__(self, per_peer_per_minute: float, per_address_per_minute: float) -> None:
        self.per_peer_per_minute = per_peer_per_minute
        self.per_address_per_minute = per_address_per_minute
        self._peers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._addresses: OrderedDict[str, TokenBucket] = OrderedDict()
        self._vouched: OrderedDict[str, None] = OrderedDict()

    def refusal(self, peer: str, address: str | None, now: float) -> str | None:
        """Why no handshake with ``peer`` (connected from ``address``) may start now, or
        None if one may."""
        bucket = self._peers.get(peer)
        if bucket is not None and bucket.available(now) < 1:
            return (
                f"peer {peer} failed the channel handshake more than "
                f"{self.per_peer_per_minute:g} times a minute lately (someone may be guessing "
                "the passphrase); it must wait"
            )
        if address is None or peer in self._vouched:
            return None
        bucket = self._addresses.get(address)
        if bucket is not None and bucket.available(now) < 1:
            return (
                f"peers from address {address} failed the channel handshake more than "
                f"{self.per_address_per_minute:g} times a minute lately (someone may be "
                f"guessing the passphrase); peer {peer} from there must wait"
            )
        return None

    def charge(self, peer: str, address: str | None, now: float) -> None:
        """One failed handshake with ``peer``: it costs the peer and its address."""
        self._take(self._peers, peer, self.per_peer_per_minute, now)
        if address is not None:
            self._take(self._addresses, address, self.per_address_per_minute, now)

    def vouch(self, peer: str) -> None:
        """``peer`` proved the passphrase: its address budget no longer applies to it."""
        self._vouched[peer] = None
        self._vouched.move_to_end(peer)
        while len(self._vouched) > MAX_TRACKED:
            self._vouched.popitem(last=False)

    @staticmethod
    def _take(
        buckets: OrderedDict[str, TokenBucket], key: str, per_minute: float, now: float
    ) -> None:
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(per_minute / 60, max(1.0, per_minute), now)
        buckets.move_to_end(key)
        bucket.take(now)
        while len(buckets) > MAX_TRACKED:
            buckets.popitem(last=False)
