"""The WebRTC mesh: bytes to and from peer ids over DataChannels.

One :class:`~raftchat.net.link.Link` (one peer connection, one reliable ordered
DataChannel labelled "raft") per other peer. Presence from the signaling server
decides which links exist (:meth:`Mesh.set_peers`); the offer/answer exchange rides
on the signaling relay (:meth:`Mesh.handle_signal`). Offers and answers carry complete
SDP: the engine gathers every candidate before it creates a description, so there is
no trickle ICE. The engine (``net/engines/``: wrtc or aiortc, as
``MeshConfig.webrtc`` says, unless one is given) makes the peer connections.

A link opens only after the peer proved with its identity key that it holds the id the
link is for and, with ``MeshConfig.passphrase`` set, that it knows the passphrase
(``net/auth.py``); a failed handshake shows in the link's
:class:`LinkInfo` (``state`` FAILED, ``auth_error``, ``auth_error_kind``) and
reaches ``on_link_change``.

Typical wiring: whatever listens to the signaling client forwards presence
(``on_peers``) to :meth:`Mesh.set_peers` and relayed signals (``on_signal``) to
:meth:`Mesh.handle_signal`, as the node does::

    client = SignalingClient(url, channel, identity, listener)
    mesh = Mesh(identity, client, MeshConfig(signaling_url=url), on_message)
    await client.start()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from raftchat.net.engines import Engine, create_engine
from raftchat.net.guess_throttle import GuessThrottle
from raftchat.net.identity import NodeIdentity
from raftchat.net.link import Link
from raftchat.net.link_info import LinkInfo
from raftchat.net.link_signals import SIGNAL_OFFER, SignalSender, signal_problem
from raftchat.net.mesh_config import MeshConfig

logger = logging.getLogger(__name__)


class Mesh:
    """Links to every other peer present in the channel; bytes in, bytes out.

    Create it inside the running event loop (the engine needs one). ``on_message``
    and ``on_link_change`` are called from the loop; an exception they raise is
    logged and never reaches the network code. ``engine`` makes the peer connections
    (if None, a new one as ``config.webrtc`` says, see
    :func:`~raftchat.net.engines.create_engine`); tests reach its frame filter through
    :attr:`engine`, and :attr:`engine`'s ``name`` says which runs.
    """

    def __init__(
        self,
        identity: NodeIdentity,
        signaling: SignalSender,
        config: MeshConfig | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        on_link_change: Callable[[str, LinkInfo], None] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.identity = identity
        self.self_id = identity.node_id
        self.config = config or MeshConfig()
        self._signaling = signaling
        self._on_message = on_message
        self._on_link_change = on_link_change
        self._loop = asyncio.get_running_loop()
        self._links: dict[str, Link] = {}
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self.engine = engine or create_engine(
            self.config.webrtc,
            udp_receive_buffer_bytes=self.config.udp_receive_buffer_bytes,
            sctp_max_flight_bytes=self.config.sctp_max_flight_bytes,
        )
        self._closed = False
        self.malformed_signals = 0
        "Signals dropped because they were not valid mesh payloads."
        self.refused_offers = 0
        "Offers from unknown peers dropped because ``max_links`` links exist."
        self._guess_throttle = GuessThrottle(
            self.config.failed_handshakes_per_peer_per_minute,
            self.config.failed_handshakes_per_address_per_minute,
        )
        "Failed handshakes per peer and per address (``net/guess_throttle.py``)."
        self._timer = self._loop.call_later(self.config.maintenance_interval, self._maintain)

    # --- presence and signaling -----------------------------------------------------

    def set_peers(self, peers: Iterable[str]) -> None:
        """Open links to new peers and close links to peers that left."""
        if self._closed:
            return
        wanted = set(peers) - {self.self_id}
        for peer in list(self._links):
            if peer not in wanted:
                self._drop_link(peer)
        for peer in sorted(wanted - set(self._links)):
            if len(self._links) >= self.config.max_links:
                logger.warning(
                    "%d peers present; linking only max_links=%d of them",
                    len(wanted),
                    self.config.max_links,
                )
                break
            self._add_link(peer).start()

    def handle_signal(self, sender: str, payload: dict[str, Any]) -> None:
        """A relayed signal from ``sender``. Invalid payloads are counted and dropped."""
        if self._closed:
            return
        problem = signal_problem(self.self_id, sender, payload, self.config.max_sdp_bytes)
        if problem is not None:
            self.malformed_signals += 1
            logger.warning("signal from %r dropped: %s", sender, problem)
            return
        link = self._links.get(sender)
        if link is None:
            if payload["type"] != SIGNAL_OFFER:
                logger.debug("%s signal from %r with no link ignored", payload["type"], sender)
                return
            # The offer can overtake the presence update that announces its sender.
            if len(self._links) >= self.config.max_links:
                self.refused_offers += 1
                logger.warning("offer from %r dropped: max_links=%d", sender, self.config.max_links)
                return
            link = self._add_link(sender)
        link.handle_signal(payload)

    # --- data -----------------------------------------------------------------------

    def send(self, peer: str, data: bytes, urgent: bool = False) -> bool:
        """Queue ``data`` for ``peer`` without blocking.

        Returns False if there is no open link to ``peer`` or its send queue is
        full (the message is then dropped and counted; Raft retransmits).
        Raises ValueError for a message above ``max_message_bytes``. An ``urgent``
        message (a small control message) goes out before the normal ones already
        queued: messages of one kind keep their order, but not across kinds.
        """
        link = self._links.get(peer)
        return link is not None and link.send(data, urgent)

    def broadcast(self, data: bytes, urgent: bool = False) -> int:
        """Queue ``data`` for every open link; return how many accepted it."""
        return sum(link.send(data, urgent) for link in list(self._links.values()))

    def links(self) -> dict[str, LinkInfo]:
        return {peer: link.info() for peer, link in self._links.items()}

    def reset_link(self, peer: str) -> bool:
        """Force a new connection to ``peer`` (e.g. Raft heartbeats say it is dead).

        ICE consent checks take ~30 s to notice a silent peer; this is faster.
        """
        link = self._links.get(peer)
        if link is None:
            return False
        link.reset()
        return True

    # --- lifecycle ------------------------------------------------------------------

    async def close(self) -> None:
        """Close every link and stop all timers; leaves no task behind."""
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links))
        if self._closing_tasks:
            await asyncio.gather(*self._closing_tasks, return_exceptions=True)

    def _add_link(self, peer: str) -> Link:
        link = Link(
            self.identity,
            peer,
            self.config,
            self.engine,
            self._signaling,
            deliver=self._deliver,
            notify=self._notify,
            guess_throttle=self._guess_throttle,
        )
        self._links[peer] = link
        self._notify(link)
        return link

    def _drop_link(self, peer: str) -> None:
        link = self._links.pop(peer)
        task = asyncio.ensure_future(link.close())
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    def _maintain(self) -> None:
        now = self._loop.time()
        for link in list(self._links.values()):
            try:
                link.maintain(now)
            except Exception:
                logger.exception("link %s: maintenance failed", link.peer)
        self._timer = self._loop.call_later(self.config.maintenance_interval, self._maintain)

    def _deliver(self, peer: str, message: bytes) -> None:
        if self._on_message is not None:
            self._on_message(peer, message)

    def _notify(self, link: Link) -> None:
        if self._on_link_change is None:
            return
        try:
            self._on_link_change(link.peer, link.info())
        except Exception:
            logger.exception("link change handler failed")
