"""The node's way to the witness its signaling server hosts.

The witness is no peer: there is no DataChannel to it. Raft messages for it go in
``witness`` frames over the signaling WebSocket, batched (the server budgets each
socket's frames, and a leader under load would otherwise send one frame per append),
and its answers come back the same way. Every answer is checked before Raft sees it:
the witness's own id as sender, and this node's cluster.

Whether the node uses the witness at all is :func:`witness_allowed`: always in a public
channel; in a private one only when the user trusts the server (``trust_server``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from raftchat.net.signaling.protocol import MAX_WITNESS_MESSAGES, WitnessRelay
from raftchat.raft import ClusterIdentity, CodecError, Message, NodeId, decode, encode

logger = logging.getLogger(__name__)

MAX_BATCH_BYTES = 40 * 1024
"""Raw message bytes per frame: base64 makes 4/3 of it, under the 64 KiB frame limit."""


def witness_allowed(private_channel: bool, trust_server: bool) -> bool:
    """May this node count on the server's witness? In a private channel the server is
    outside the trust boundary: a witness that voted twice could fork the channel."""
    return not private_channel or trust_server


class WitnessLink:
    """Batches Raft messages to the witness; checks what comes back."""

    def __init__(
        self,
        witness_id: Callable[[], NodeId | None],
        send_relay: Callable[[WitnessRelay], bool],
        *,
        allowed: bool,
        flush_interval_s: float = 0.05,
    ) -> None:
        self._witness_id = witness_id
        self._send_relay = send_relay
        self.allowed = allowed
        self.flush_interval_s = flush_interval_s
        self._pending: list[bytes] = []
        self._pending_cluster: ClusterIdentity | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self.sent = 0
        self.received = 0
        self.dropped: Counter[str] = Counter()

    @property
    def witness_id(self) -> NodeId | None:
        """The witness offered by the server now, if this node may use it."""
        return self._witness_id() if self.allowed else None

    def send(self, cluster: ClusterIdentity | None, message: Message) -> None:
        """Queue ``message`` for the witness of ``cluster`` (sent within the interval)."""
        if cluster is None or self.witness_id is None:
            self.dropped["no witness"] += 1
            return
        if cluster != self._pending_cluster:
            self.flush()
            self._pending_cluster = cluster
        self._pending.append(encode(message))
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval_s, self.flush)

    def flush(self) -> None:
        """Send what is queued now, in as few frames as the limits allow."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending = self._pending, []
        cluster = self._pending_cluster
        if not pending or cluster is None:
            return
        batch: list[bytes] = []
        size = 0
        for data in pending:
            full = len(batch) >= MAX_WITNESS_MESSAGES or size + len(data) > MAX_BATCH_BYTES
            if batch and full:
                self._send_batch(cluster, batch)
                batch, size = [], 0
            batch.append(data)
            size += len(data)
        self._send_batch(cluster, batch)

    def _send_batch(self, cluster: ClusterIdentity, batch: list[bytes]) -> None:
        relay = WitnessRelay(cluster.cluster_id, cluster.founded_ms, tuple(batch))
        if self._send_relay(relay):
            self.sent += len(batch)
        else:
            self.dropped["not connected"] += len(batch)

    def receive(self, relay: WitnessRelay, cluster: ClusterIdentity | None) -> list[Message]:
        """The messages of ``relay`` that Raft may see: from the offered witness, for
        this node's cluster; the rest is counted and dropped."""
        witness = self.witness_id
        if witness is None:
            self.dropped["witness not in use"] += len(relay.messages)
            return []
        if cluster is None or (relay.cluster_id, relay.founded_ms) != (
            cluster.cluster_id,
            cluster.founded_ms,
        ):
            self.dropped["another cluster"] += len(relay.messages)
            return []
        messages = []
        for data in relay.messages:
            try:
                message = decode(data)
            except CodecError as error:
                self.dropped["malformed"] += 1
                logger.info("dropped a malformed message from the witness: %s", error)
                continue
            if getattr(message, "sender", None) != witness:
                self.dropped["not from the witness"] += 1
                continue
            messages.append(message)
        self.received += len(messages)
        return messages

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()
