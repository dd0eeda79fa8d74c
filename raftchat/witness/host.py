"""The signaling server's witness: one :class:`WitnessCore` per cluster that talks to it.

A peer sends Raft messages for the witness in ``witness`` frames over its signaling
WebSocket (:mod:`raftchat.net.signaling.protocol`); the server hands them here with the
peer id it authenticated. Each (channel, cluster) gets its own core, loaded from the
store on first use and dropped from memory when idle (its state is on disk). The Ready
loop is the core's contract: store, commit (fsync), only then answer.

Trust: a message whose ``sender`` is not the peer whose socket brought it is dropped and
counted, and so is anything the Raft codec refuses. The core then checks the sender's
role in the cluster's configuration (only members are heard, only a voter that may lead
leads or stands for election: :mod:`raftchat.raft.admission`); what it refuses is counted
as ``refused: <reason>``. How many clusters the witness holds is bounded (in total and
per channel): a witness state is never thrown away while it may still hold a vote
someone counts on, so beyond the bound new clusters are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raftchat.net.signaling.protocol import WitnessRelay
from raftchat.raft import CodecError, Message, NodeId, decode, encode
from raftchat.raft.witness import WitnessCore, WitnessSettings
from raftchat.witness.store import WitnessKey, WitnessStore

logger = logging.getLogger(__name__)

SendRelay = Callable[[str, NodeId, WitnessRelay], bool]
"""The server's way to a peer: (channel, peer id, frame) -> sent?"""


@dataclass(frozen=True)
class WitnessHostSettings:
    tick_s: float = 0.1
    """How often the cores' clocks advance."""
    lease_ticks: int = 5
    """Ticks after hearing a leader during which the witness refuses to help depose it:
    about the members' shortest election timeout (500 ms by default)."""
    max_clusters: int = 10_000
    max_clusters_per_channel: int = 4
    """A channel has one cluster, two for a while after a split."""
    idle_unload_s: float = 120.0
    """A core not heard from this long leaves memory (not the disk)."""
    compact_after: int = 1024

    def __post_init__(self) -> None:
        for name in ("tick_s", "lease_ticks", "max_clusters", "max_clusters_per_channel"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WitnessHostSettings.{name} must be positive")


@dataclass
class _Loaded:
    key: WitnessKey
    core: WitnessCore
    last_heard: float


@dataclass
class WitnessStats:
    messages_received: int = 0
    messages_sent: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Messages dropped, by reason (a few fixed phrases; the core's role checks count
    under ``refused: <reason>``)."""


class WitnessHost:
    """The witness of every channel of one signaling server."""

    def __init__(
        self,
        store: WitnessStore,
        settings: WitnessHostSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings or WitnessHostSettings()
        self.clock = clock
        self.witness_id: NodeId = store.witness_id
        self.stats = WitnessStats()
        self._cores: dict[tuple[str, str], _Loaded] = {}
        self._send: SendRelay | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.failed: str | None = None
        """Why the witness stopped (its storage failed); it refuses everything then."""

    @classmethod
    def open(cls, directory: Path, settings: WitnessHostSettings | None = None) -> WitnessHost:
        return cls(WitnessStore(directory), settings)

    @property
    def loaded(self) -> int:
        return len(self._cores)

    def core(self, channel: str, cluster_id: str) -> WitnessCore | None:
        """The loaded core of a cluster (for tests and status)."""
        loaded = self._cores.get((channel, cluster_id))
        return None if loaded is None else loaded.core

    # --- the server's side ----------------------------------------------------------

    def attach(self, send: SendRelay) -> None:
        """Called by the server once, with its way to reach a peer; starts the clock."""
        self._send = send
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_forever(), name="raftchat-witness-tick"
            )

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.store.close()

    def receive(self, channel: str, sender: NodeId, relay: WitnessRelay) -> str | None:
        """Step what ``sender`` sent; None if taken, else why it was refused."""
        if self.failed is not None:
            return self.failed
        loaded = self._load(channel, relay)
        if isinstance(loaded, str):
            self.stats.dropped[loaded] += len(relay.messages)
            return loaded
        loaded.last_heard = self.clock()
        for data in relay.messages:
            message = self._decode(data, sender)
            if message is not None:
                self.stats.messages_received += 1
                problem = loaded.core.step(message)
                if problem is not None:
                    self.stats.dropped[f"refused: {problem}"] += 1
        self._process([loaded])
        return None

    # --- cores ----------------------------------------------------------------------

    def _load(self, channel: str, relay: WitnessRelay) -> _Loaded | str:
        key = (channel, relay.cluster_id)
        loaded = self._cores.get(key)
        if loaded is None:
            founded = self.store.founded_ms(channel, relay.cluster_id)
            if founded is None:
                refusal = self._refuse_new(channel)
                if refusal is not None:
                    logger.warning("witness refuses %s of %s: %s", key[1][:8], channel, refusal)
                    return refusal
                founded = relay.founded_ms
            witness_key = WitnessKey(channel, relay.cluster_id, founded)
            settings = WitnessSettings(
                self.witness_id,
                election_timeout_ticks=self.settings.lease_ticks,
                compact_after=self.settings.compact_after,
            )
            core = WitnessCore(settings, self.store.load(witness_key))
            loaded = self._cores[key] = _Loaded(witness_key, core, self.clock())
        if loaded.key.founded_ms != relay.founded_ms:
            return "another cluster with the same id"
        return loaded

    def _refuse_new(self, channel: str) -> str | None:
        if self.store.clusters() >= self.settings.max_clusters:
            return f"the witness holds {self.settings.max_clusters} clusters, its limit"
        if self.store.clusters_in(channel) >= self.settings.max_clusters_per_channel:
            limit = self.settings.max_clusters_per_channel
            return f"the witness holds {limit} clusters of the channel"
        return None

    def _decode(self, data: bytes, sender: NodeId) -> Message | None:
        try:
            message = decode(data)
        except CodecError as error:
            self.stats.dropped["malformed"] += 1
            logger.debug("witness dropped a malformed message from %s: %s", sender, error)
            return None
        if getattr(message, "sender", None) != sender:
            self.stats.dropped["spoofed sender"] += 1
            logger.info("witness dropped a message from %s claiming another sender", sender)
            return None
        return message

    def _process(self, cores: list[_Loaded]) -> None:
        """Store every core's work in one transaction, then send what depends on it.

        A core may be advanced before the commit: nothing it promised leaves before the
        commit, and a failed commit stops the witness (:meth:`_fail`)."""
        outgoing: list[tuple[WitnessKey, list[tuple[NodeId, Message]]]] = []
        try:
            for loaded in cores:
                core = loaded.core
                while core.has_ready():
                    ready = core.ready()
                    self.store.save(loaded.key, ready)
                    core.advance(ready)
                    if ready.messages:
                        outgoing.append((loaded.key, ready.messages))
            self.store.commit()
        except sqlite3.Error as error:
            self._fail(f"the witness's storage failed: {error}")
            return
        for key, messages in outgoing:
            self._answer(key, messages)

    def _fail(self, reason: str) -> None:
        """Stop voting: the cores in memory may be ahead of the disk now."""
        logger.error("%s; the witness stops until the server restarts", reason)
        self.failed = reason
        self._cores.clear()

    def _answer(self, key: WitnessKey, messages: list[tuple[NodeId, Message]]) -> None:
        by_peer: dict[NodeId, list[bytes]] = {}
        for to, message in messages:
            by_peer.setdefault(to, []).append(encode(message))
        send = self._send
        for peer, encoded in by_peer.items():
            relay = WitnessRelay(key.cluster_id, key.founded_ms, tuple(encoded))
            if send is not None and send(key.channel, peer, relay):
                self.stats.messages_sent += len(encoded)
            else:
                self.stats.dropped["peer not connected"] += len(encoded)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            self.tick()

    def tick(self) -> None:
        """One tick for every loaded core; unload the idle ones."""
        if self.failed is not None:
            return
        now = self.clock()
        cores = list(self._cores.values())
        for loaded in cores:
            loaded.core.tick()
        self._process(cores)
        for key, loaded in list(self._cores.items()):
            if now - loaded.last_heard > self.settings.idle_unload_s:
                del self._cores[key]
