"""Who is where on the signaling server: channels, their peers, remembered ids, and the
per-address limits on joining. Pure bookkeeping, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, OrderedDict
from collections.abc import Callable

from raftchat.net.signaling.addresses import Addresses, AddressUsage
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.connection import Connection
from raftchat.net.signaling.protocol import ErrorCode, Hello, ProtocolError

Clock = Callable[[], float]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class Channel:
    """The peers of one channel, and which addresses they come from."""

    def __init__(self, opener: AddressUsage | None) -> None:
        self.peers: dict[str, Connection] = {}
        self.opener = opener
        "The address that opened the channel; charged for it until the last peer leaves."
        self.per_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.peers)

    def add(self, conn: Connection) -> None:
        self.peers[conn.peer_id or ""] = conn
        if conn.usage is not None:
            self.per_address[conn.usage.key] += 1

    def remove(self, conn: Connection) -> None:
        del self.peers[conn.peer_id or ""]
        if conn.usage is not None:
            self.per_address[conn.usage.key] -= 1
            if self.per_address[conn.usage.key] <= 0:
                del self.per_address[conn.usage.key]


class SignalingState:
    """Channels, connected peers and remembered ids."""

    def __init__(self, config: ServerConfig, clock: Clock, addresses: Addresses) -> None:
        self.config = config
        self.clock = clock
        self.addresses = addresses
        self.channels: dict[str, Channel] = {}
        self.connections: set[Connection] = set()
        # (channel, peer id) -> (token hash, expiry); ordered by expiry.
        self._remembered: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()

    def peer_count(self) -> int:
        return sum(len(channel) for channel in self.channels.values())

    def peers_of(self, channel: str) -> dict[str, Connection]:
        found = self.channels.get(channel)
        return found.peers if found is not None else {}

    def _expire_remembered(self) -> None:
        now = self.clock()
        while self._remembered:
            key, (_, expiry) = next(iter(self._remembered.items()))
            if expiry > now:
                break
            del self._remembered[key]

    def remember(self, channel: str, peer_id: str, token_hash: bytes) -> None:
        key = (channel, peer_id)
        self._remembered.pop(key, None)
        self._remembered[key] = (token_hash, self.clock() + self.config.remembered_peer_ttl)
        while len(self._remembered) > self.config.max_remembered_peers:
            self._remembered.popitem(last=False)

    def is_member(self, channel: str, peer_id: str, token: str) -> bool:
        """Whether ``peer_id`` is connected to ``channel`` with this token."""
        conn = self.peers_of(channel).get(peer_id)
        return conn is not None and hmac.compare_digest(conn.token_hash, hash_token(token))

    def join(self, conn: Connection, channel: str, hello: Hello) -> Connection | None:
        """Admit ``conn`` as ``hello.peer_id``; return the connection it replaces, if any.

        Raises ProtocolError with a fatal code when the peer cannot join.
        """
        usage = conn.usage
        limited = usage is not None and not usage.exempt
        if limited and not usage.joins.take(self.clock()):  # type: ignore[union-attr]
            raise ProtocolError(
                ErrorCode.JOIN_RATE_LIMITED,
                f"more than {self.config.joins_per_minute_per_address:g} joins per minute "
                "from your address; wait a little and try again",
            )
        self._expire_remembered()
        token_hash = hash_token(hello.token)
        found = self.channels.get(channel)
        current = found.peers.get(hello.peer_id) if found else None
        remembered = self._remembered.get((channel, hello.peer_id))
        known_hash = current.token_hash if current else (remembered[0] if remembered else None)
        if known_hash is not None and not hmac.compare_digest(known_hash, token_hash):
            raise ProtocolError(
                ErrorCode.ID_TAKEN,
                f"peer id {hello.peer_id!r} is in use in channel {channel!r} by another peer; "
                "pick a new random id",
            )
        if found is None:
            if len(self.channels) >= self.config.max_channels:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_CHANNELS,
                    f"server has its maximum of {self.config.max_channels} channels; "
                    "try again later or use another server",
                )
            if limited and usage.channels >= self.config.max_channels_per_address:  # type: ignore[union-attr]
                raise ProtocolError(
                    ErrorCode.TOO_MANY_CHANNELS_FROM_ADDRESS,
                    f"your address opened {self.config.max_channels_per_address} channels "
                    "that are still in use, the maximum per address",
                )
            found = self.channels[channel] = Channel(usage)
            if usage is not None:
                usage.channels += 1
        elif current is None:
            if len(found) >= self.config.max_peers_per_channel:
                raise ProtocolError(
                    ErrorCode.CHANNEL_FULL,
                    f"channel {channel!r} has its maximum of "
                    f"{self.config.max_peers_per_channel} peers",
                )
            limit = self.config.max_peers_per_channel_per_address
            if limited and found.per_address[usage.key] >= limit:  # type: ignore[union-attr]
                raise ProtocolError(
                    ErrorCode.TOO_MANY_PEERS_FROM_ADDRESS,
                    f"your address has {limit} peers in channel {channel!r}, the maximum "
                    "per address",
                )
        self._remembered.pop((channel, hello.peer_id), None)
        if current is not None:
            found.remove(current)
        conn.peer_id, conn.channel, conn.token_hash = hello.peer_id, channel, token_hash
        found.add(conn)
        return current

    def leave(self, conn: Connection) -> bool:
        """Forget ``conn`` if it still holds its id; True if the peer really left."""
        if conn.channel is None or conn.peer_id is None:
            return False
        found = self.channels.get(conn.channel)
        if found is None or found.peers.get(conn.peer_id) is not conn:
            return False  # replaced by a newer connection of the same peer
        found.remove(conn)
        if not found.peers:
            del self.channels[conn.channel]
            opener = found.opener
            if opener is not None:
                opener.channels -= 1
                self.addresses.release(opener, self.clock())
        self.remember(conn.channel, conn.peer_id, conn.token_hash)
        return True
