"""Who is where on the signaling server: channels, their peers (each a session), the proof
of each peer's id, and the limits on joining. Pure bookkeeping, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable

from raftchat.net.identity import is_id_of, signaling_hello_message, verify
from raftchat.net.signaling.addresses import Addresses, AddressUsage
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.connection import Connection
from raftchat.net.signaling.protocol import ErrorCode, Hello, ProtocolError
from raftchat.net.signaling.session import Session

Clock = Callable[[], float]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class Channel:
    """The peers of one channel, and which addresses they come from."""

    def __init__(self, opener: AddressUsage | None) -> None:
        self.peers: dict[str, Session] = {}
        self.opener = opener
        "The address that opened the channel; charged for it until the last peer leaves."
        self.per_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.peers)

    def add(self, session: Session) -> None:
        self.peers[session.peer_id or ""] = session
        if session.usage is not None:
            self.per_address[session.usage.key] += 1
            session.usage.sessions += 1

    def remove(self, session: Session) -> None:
        del self.peers[session.peer_id or ""]
        if session.usage is not None:
            session.usage.sessions -= 1
            self.per_address[session.usage.key] -= 1
            if self.per_address[session.usage.key] <= 0:
                del self.per_address[session.usage.key]


def identity_problem(session: Session, channel: str, hello: Hello) -> ProtocolError | None:
    """Why ``hello`` does not prove its id in ``session``, or None if it does: the id must
    be the one derived from the hello's public key, and the signature must verify over this
    session's challenge (``net/identity.py``)."""
    if not is_id_of(hello.peer_id, hello.public_key):
        return ProtocolError(
            ErrorCode.ID_NOT_OF_KEY,
            f"peer id {hello.peer_id!r} is not the id of the public key in the hello (a peer "
            "id is derived from its key); only the holder of that key may use that id",
        )
    message = signaling_hello_message(session.nonce, channel, hello.peer_id)
    if not verify(hello.public_key, message, hello.signature):
        return ProtocolError(
            ErrorCode.BAD_SIGNATURE,
            "the hello's signature does not verify: it must sign this session's challenge "
            "with the key of the peer id",
        )
    return None


class SignalingState:
    """Channels and connected peers."""

    def __init__(self, config: ServerConfig, clock: Clock, addresses: Addresses) -> None:
        self.config = config
        self.clock = clock
        self.addresses = addresses
        self.channels: dict[str, Channel] = {}
        self.connections: set[Connection] = set()

        self.sessions = 0
        "Sessions open (joined or waiting for their hello)."

    def peer_count(self) -> int:
        return sum(len(channel) for channel in self.channels.values())

    def peers_of(self, channel: str) -> dict[str, Session]:
        found = self.channels.get(channel)
        return found.peers if found is not None else {}

    def is_member(self, channel: str, peer_id: str, token: str) -> bool:
        """Whether ``peer_id`` is connected to ``channel`` on the connection given ``token``."""
        session = self.peers_of(channel).get(peer_id)
        return session is not None and hmac.compare_digest(session.token_hash, hash_token(token))

    def join(self, session: Session, channel: str, hello: Hello, token: str) -> Session | None:
        """Admit ``session`` as ``hello.peer_id`` if the hello proves that id; return the
        session it replaces (the same peer's older one), if any. ``token`` is the
        session's secret for HTTP requests (only its hash is kept).

        Raises ProtocolError with a fatal code when the peer cannot join.
        """
        usage = session.usage
        limited = usage is not None and not usage.exempt
        if limited and not usage.joins.take(self.clock()):  # type: ignore[union-attr]
            raise ProtocolError(
                ErrorCode.JOIN_RATE_LIMITED,
                f"more than {self.config.joins_per_minute_per_address:g} joins per minute "
                "from your address; wait a little and try again",
            )
        # After the rate limit: a verification costs the server more than a refusal.
        problem = identity_problem(session, channel, hello)
        if problem is not None:
            raise problem
        found = self.channels.get(channel)
        current = found.peers.get(hello.peer_id) if found else None
        if current is None:
            self._check_session_limits(usage, limited)
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
        if current is not None:
            found.remove(current)
        session.peer_id, session.token_hash = hello.peer_id, hash_token(token)
        found.add(session)
        return current

    def _check_session_limits(self, usage: AddressUsage | None, limited: bool) -> None:
        if self.peer_count() >= self.config.max_sessions:
            raise ProtocolError(
                ErrorCode.SERVER_FULL,
                f"server has its maximum of {self.config.max_sessions} peers in channels; "
                "try again later",
            )
        limit = self.config.max_sessions_per_address
        if limited and usage.sessions >= limit:  # type: ignore[union-attr]
            raise ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS_FROM_ADDRESS,
                f"your address has {limit} peers in channels, the maximum per address "
                "(on its own sockets and shared ones together)",
            )

    def leave(self, session: Session) -> bool:
        """Forget ``session`` if it still holds its id; True if the peer really left."""
        if session.peer_id is None:
            return False
        found = self.channels.get(session.channel)
        if found is None or found.peers.get(session.peer_id) is not session:
            return False  # replaced by a newer session of the same peer
        found.remove(session)
        if not found.peers:
            del self.channels[session.channel]
            opener = found.opener
            if opener is not None:
                opener.channels -= 1
                self.addresses.release(opener, self.clock())
        return True
