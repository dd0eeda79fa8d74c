"""Mesh test helpers: named test identities, in-memory signaling relays (honest and
hostile), peers that record, partitions through the engine's frame filter, a signaling
listener for real clients, and which WebRTC engine each peer runs (:data:`WEBRTC_MODES`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from raftchat.net import LinkInfo, LinkState, Mesh, MeshConfig
from raftchat.net.engines import CHANNEL_LABEL, Direction
from raftchat.net.engines.aiortc_engine import host_candidates
from raftchat.net.ice import IPV4_LOOPBACK
from raftchat.net.identity import NodeIdentity

TEST_PEER_NAMES = (
    *"abcdmz",
    *(f"m{i}" for i in range(1, 3)),
    *(f"p{i}" for i in range(1, 6)),
    "ada",
    "alice",
    "auditor",
    "bob",
    "cyd",
    "late",
    "newcomer",
    "zz",
)
"""The peers tests name: each has a fixed identity (:data:`ids`)."""


class PeerIds:
    """Node ids of named test peers: ``ids.a`` is peer "a"'s id. A node id is derived from
    its identity key, so these are fixed keys whose ids sort as their names do (the peer
    with the smaller id offers, and tests choose names for that)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        seeds = (hashlib.sha256(b"raftchat test peer %d" % i).digest() for i in range(len(names)))
        identities = sorted(map(NodeIdentity.from_seed, seeds), key=lambda i: i.node_id)
        self._ids = {name: i.node_id for name, i in zip(sorted(names), identities, strict=True)}
        self.identities = {identity.node_id: identity for identity in identities}

    def __getattr__(self, name: str) -> str:
        try:
            return self._ids[name]
        except KeyError:
            raise AttributeError(f"no test peer {name!r}: add it to TEST_PEER_NAMES") from None

    def name_of(self, peer_id: str) -> str:
        return next((name for name, id_ in self._ids.items() if id_ == peer_id), peer_id)


ids = PeerIds(TEST_PEER_NAMES)


def identity_of(peer_id: str) -> NodeIdentity:
    """The identity of a test peer id (``ids.<name>``)."""
    try:
        return ids.identities[peer_id]
    except KeyError:
        raise KeyError(f"{peer_id!r} is not a test peer's id: use mesh_utils.ids.<name>") from None


WEBRTC_MODES = ("aiortc", "wrtc", "mixed")
"""How the peers of a test pick their engine: all aiortc, all wrtc, or alternating in the
order they are made (the first aiortc), so that with ids in creation order each engine
offers to the other somewhere in a mesh of three or more."""


def engine_of(mode: str, index: int) -> str:
    """The engine of the ``index``-th peer (from 0) made in ``mode``."""
    if mode == "mixed":
        return ("aiortc", "wrtc")[index % 2]
    if mode not in WEBRTC_MODES:
        raise ValueError(f"unknown webrtc mode {mode!r}")
    return mode


# Loopback only, short timers so failures are noticed quickly in tests.
TEST_CONFIG = MeshConfig(
    ice_host=IPV4_LOOPBACK,
    webrtc="aiortc",
    ping_interval=0.2,
    connect_timeout=5.0,
    dead_after=3.0,
    offer_wait=1.0,
    offer_in_flight=0.5,
    reconnect_initial=0.1,
    reconnect_max=1.0,
    maintenance_interval=0.05,
)


def with_settings(config: MeshConfig = TEST_CONFIG, **changes: Any) -> MeshConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return MeshConfig(**{**vars(config), **changes})


def private_config(passphrase: str | None, **changes: Any) -> MeshConfig:
    """TEST_CONFIG for channel "room" with ``passphrase`` and a short penalty backoff."""
    settings = {"channel": "room", "passphrase": passphrase, "auth_retry_initial": 0.3}
    return with_settings(TEST_CONFIG, **{**settings, **changes})


class FakeSignaling:
    """One peer's end of :class:`FakeRelay`; implements the mesh's SignalSender."""

    def __init__(self, relay: FakeRelay, peer_id: str) -> None:
        self.relay = relay
        self.peer_id = peer_id
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.cut = False
        "A cut endpoint sends nothing (its process is dead or stopped)."

    async def send_signal(self, to: str, payload: dict) -> bool:
        if self.cut:
            return False
        self.sent.append((to, payload))
        return self.relay.relay(self.peer_id, to, payload)


class FakeRelay:
    """In-memory stand-in for the signaling server: presence and relayed signals.

    Payloads go through JSON like on the wire, and are delivered on a later loop
    iteration, like network messages.
    """

    def __init__(self) -> None:
        self.meshes: dict[str, Mesh] = {}
        self.signals_relayed = 0
        self.drop_signals = False
        self.held: dict[str, list[tuple[str, dict]]] = {}
        "Signals for stopped peers, delivered when they resume: (sender, payload)."

    def endpoint(self, peer_id: str) -> FakeSignaling:
        return FakeSignaling(self, peer_id)

    def join(self, peer_id: str, mesh: Mesh) -> None:
        self.meshes[peer_id] = mesh
        self._announce()

    def leave(self, peer_id: str) -> None:
        self.meshes.pop(peer_id, None)
        self._announce()

    def relay(self, sender: str, to: str, payload: dict) -> bool:
        if self.drop_signals or sender not in self.meshes or to not in self.meshes:
            return False
        wire = json.loads(json.dumps(payload))
        asyncio.get_running_loop().call_soon(self._deliver, sender, to, wire)
        self.signals_relayed += 1
        return True

    def hold(self, peer_id: str) -> None:
        """Keep signals for ``peer_id`` until :meth:`release` (its process is stopped)."""
        self.held.setdefault(peer_id, [])

    def release(self, peer_id: str) -> None:
        """Deliver the held signals for ``peer_id``, in order, and stop holding."""
        for sender, payload in self.held.pop(peer_id, []):
            self._deliver(sender, peer_id, payload)

    def _deliver(self, sender: str, to: str, payload: dict) -> None:
        if to in self.held:
            self.held[to].append((sender, payload))
            return
        mesh = self.meshes.get(to)
        if mesh is not None:
            mesh.handle_signal(sender, payload)

    def _announce(self) -> None:
        everyone = frozenset(self.meshes)
        for peer_id, mesh in list(self.meshes.items()):
            mesh.set_peers(everyone - {peer_id})


@dataclass
class Peer:
    """A mesh plus everything it received and every link change it reported."""

    peer_id: str
    mesh: Mesh
    received: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    changes: list[tuple[str, LinkInfo]] = field(default_factory=list)

    def state_of(self, peer: str) -> LinkState | None:
        info = self.mesh.links().get(peer)
        return info.state if info else None


def make_peer(
    relay: FakeRelay,
    peer_id: str,
    config: MeshConfig = TEST_CONFIG,
    join: bool = True,
    webrtc: str | None = None,
) -> Peer:
    """A mesh on ``relay`` that records what it receives; joins presence unless told not to.
    ``webrtc`` overrides the config's engine."""
    if webrtc is not None and webrtc != config.webrtc:
        config = with_settings(config, webrtc=webrtc)
    received: dict[str, list[bytes]] = defaultdict(list)
    changes: list[tuple[str, LinkInfo]] = []
    mesh = Mesh(
        identity_of(peer_id),
        relay.endpoint(peer_id),
        config,
        on_message=lambda sender, data: received[sender].append(data),
        on_link_change=lambda peer, info: changes.append((peer, info)),
    )
    peer = Peer(peer_id, mesh, received, changes)
    if join:
        relay.join(peer_id, mesh)
    return peer


def silence(peer: Peer) -> None:
    """Make ``peer`` fall silent, as a killed or SIGSTOPped process would to its peers.

    Its mesh stops its timer (no pings, no retries), drops every frame to and from it
    and sends no signal. Its peer connections stay up: the others are told nothing.
    """
    mesh = peer.mesh
    mesh._timer.cancel()
    mesh.engine.frame_filter = lambda _peer, _direction: True
    assert isinstance(mesh._signaling, FakeSignaling)
    mesh._signaling.cut = True


def wake(peer: Peer) -> None:
    """Undo :func:`silence`, as SIGCONT would (release the relay's held signals first)."""
    mesh = peer.mesh
    assert isinstance(mesh._signaling, FakeSignaling)
    mesh._signaling.cut = False
    mesh.engine.frame_filter = None
    mesh._timer = asyncio.get_running_loop().call_soon(mesh._maintain)


class PeerBlocklist:
    """A frame filter that drops all traffic to and from the peers it lists."""

    def __init__(self) -> None:
        self.peers: set[str] = set()

    def __call__(self, peer: str, direction: Direction) -> bool:
        return peer in self.peers


def block(mesh: Mesh, peer: str) -> None:
    """Drop all traffic between ``mesh`` and ``peer`` silently, as a partition would
    (through the engine's frame filter, see ``raftchat.net.engines.base.FrameFilter``)."""
    blocklist = mesh.engine.frame_filter
    if not isinstance(blocklist, PeerBlocklist):
        blocklist = mesh.engine.frame_filter = PeerBlocklist()
    blocklist.peers.add(peer)


def unblock(mesh: Mesh, peer: str) -> None:
    """Undo :func:`block`. A link the partition brought down reconnects at once, as the
    next attempt would get through a real network as soon as it healed."""
    blocklist = mesh.engine.frame_filter
    if isinstance(blocklist, PeerBlocklist):
        blocklist.peers.discard(peer)
    info = mesh.links().get(peer)
    if info is not None and info.state != LinkState.OPEN:
        mesh.reset_link(peer)


class MeshSignalingListener:
    """Forwards a SignalingClient's events to a mesh bound after both exist.

    The client needs its listener at construction and the mesh needs the client,
    so create this first, then :meth:`bind` the mesh before starting the client.
    """

    def __init__(self, on_state: Callable[[str], None] | None = None) -> None:
        self._mesh: Mesh | None = None
        self._on_state = on_state
        self._peers: frozenset[str] | None = None

    def bind(self, mesh: Mesh) -> None:
        self._mesh = mesh
        if self._peers is not None:
            mesh.set_peers(self._peers)

    def on_peers(self, peers: frozenset[str]) -> None:
        self._peers = frozenset(peers)
        if self._mesh is not None:
            self._mesh.set_peers(peers)

    def on_signal(self, sender: str, payload: dict) -> None:
        if self._mesh is not None:
            self._mesh.handle_signal(sender, payload)

    def on_state(self, state: str) -> None:
        if self._on_state is not None:
            self._on_state(state)


def signaled_host_addresses(peer: Peer) -> set[str]:
    """The addresses of every host candidate ``peer`` put in the offers and answers it
    sent through a :class:`FakeRelay`."""
    assert isinstance(peer.mesh._signaling, FakeSignaling)
    addresses = set()
    for _to, payload in peer.mesh._signaling.sent:
        for line in str(payload.get("sdp", "")).splitlines():
            fields = line.split()
            if line.startswith("a=candidate:") and len(fields) > 7 and fields[7] == "host":
                addresses.add(fields[4])
    return addresses


async def break_connection(peer: Peer, other: str) -> None:
    """Close ``peer``'s current connection to ``other`` behind its mesh's back, as the
    engine's library would on a fatal transport error."""
    pc = peer.mesh._links[other]._connection.pc
    result = pc.close()  # aiortc: a coroutine; wrtc: synchronous
    if asyncio.iscoroutine(result):
        await result


def all_open(peers: list[Peer]) -> bool:
    """Whether every pair of ``peers`` has an open link, seen from both sides."""
    for peer in peers:
        links = peer.mesh.links()
        for other in peers:
            if other is not peer and (
                other.peer_id not in links or links[other.peer_id].state != LinkState.OPEN
            ):
                return False
    return True


CLOSE_WAIT_S = 15.0
"""How long a test waits for tasks to end after closing peers: closing a peer connection
ends its ICE tasks a few loop turns later, which on a busy machine once took over 5 s."""


def pending_tasks() -> set[asyncio.Task[Any]]:
    """Tasks other than the current one that are still running."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


class _Splice:
    """Forwards DataChannel messages between two channels, holding them until both are open."""

    def __init__(self) -> None:
        self.channels: dict[str, RTCDataChannel | None] = {"offerer": None, "answerer": None}
        self.pending: dict[str, list[bytes | str]] = {"offerer": [], "answerer": []}
        self.forwarded = 0

    def attach(self, side: str, channel: RTCDataChannel) -> None:
        other = "answerer" if side == "offerer" else "offerer"
        self.channels[side] = channel

        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            self.pending[other].append(message)
            self.flush()

        @channel.on("open")
        def on_open() -> None:
            self.flush()

        self.flush()

    def flush(self) -> None:
        for side, channel in self.channels.items():
            if channel is None or channel.readyState != "open":
                continue
            while self.pending[side]:
                channel.send(self.pending[side].pop(0))
                self.forwarded += 1


class InterceptingRelay(FakeRelay):
    """A malicious signaling server that sits in the middle of every connection.

    It swallows each offer and answers it itself, and sends the answerer an offer of its
    own: both peers then run DTLS with *its* certificates (the SDP fingerprints are
    rewritten), and it forwards every DataChannel message between them. It does not know
    any passphrase, nor any peer's identity key. Close it with :meth:`close`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[RTCPeerConnection] = []
        self.splices: list[_Splice] = []
        self._facing_answerer: dict[tuple[str, str], RTCPeerConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def relay(self, sender: str, to: str, payload: dict) -> bool:
        if self.drop_signals or sender not in self.meshes or to not in self.meshes:
            return False
        self.signals_relayed += 1
        kind = payload.get("type")
        if kind == "offer":
            self._spawn(self._intercept_offer(sender, to, json.loads(json.dumps(payload))))
        elif kind == "answer":
            facing_answerer = self._facing_answerer.get((to, sender))
            if facing_answerer is not None:
                answer = RTCSessionDescription(sdp=payload["sdp"], type="answer")
                self._spawn(facing_answerer.setRemoteDescription(answer))
        # Restart requests are swallowed: the offerer retries on its own.
        return True

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _intercept_offer(self, offerer: str, answerer: str, offer: dict) -> None:
        configuration = RTCConfiguration(iceServers=[])
        facing_offerer = RTCPeerConnection(configuration)
        facing_answerer = RTCPeerConnection(configuration)
        self.connections += [facing_offerer, facing_answerer]
        splice = _Splice()
        self.splices.append(splice)
        splice.attach("answerer", facing_answerer.createDataChannel(CHANNEL_LABEL, ordered=True))

        @facing_offerer.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            splice.attach("offerer", channel)

        with host_candidates([IPV4_LOOPBACK]):
            await facing_offerer.setRemoteDescription(
                RTCSessionDescription(sdp=offer["sdp"], type="offer")
            )
            await facing_offerer.setLocalDescription(await facing_offerer.createAnswer())
            await facing_answerer.setLocalDescription(await facing_answerer.createOffer())
        self._facing_answerer[(offerer, answerer)] = facing_answerer
        session = offer["session"]
        answer = {"type": "answer", "session": session, "sdp": facing_offerer.localDescription.sdp}
        forged = {"type": "offer", "session": session, "sdp": facing_answerer.localDescription.sdp}
        loop = asyncio.get_running_loop()
        loop.call_soon(self._deliver, answerer, offerer, answer)
        loop.call_soon(self._deliver, offerer, answerer, forged)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(pc.close() for pc in self.connections), return_exceptions=True)
