"""The simulated network: messages lost, duplicated, delayed, reordered and partitioned."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator

from ..messages import ForwardProposal, Message, NodeId


class Network:
    """Messages in flight, delivered by step time; faults apply while ``faults_on``."""

    def __init__(
        self,
        rng: random.Random,
        client_rng: random.Random,
        loss: float,
        duplication: float,
        max_delay: int,
        forward_loss: float,
        trace: Callable[..., None],
    ) -> None:
        self._rng = rng
        self._client_rng = client_rng
        """Draws lost forwarded proposals, apart from the fault schedule's draws."""
        self.loss = loss
        self.duplication = duplication
        self.max_delay = max_delay
        self.forward_loss = forward_loss
        """Extra chance that a ForwardProposal is lost (a link reset under a live leader)."""
        self._trace = trace
        self.step_time = 0
        self.messages = 0
        """Messages sent (lost ones included)."""
        self._sequence = 0
        self._in_flight: list[tuple[int, int, NodeId, NodeId, Message]] = []
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        """(sender, receiver) pairs cut by the current partition."""
        self.partition_until = 0

    def send(self, sender: NodeId, to: NodeId, message: Message, faults_on: bool) -> None:
        self.messages += 1
        rng = self._rng
        if faults_on:
            if (sender, to) in self.blocked or rng.random() < self.loss:
                return
            forwarded = isinstance(message, ForwardProposal)
            if forwarded and self._client_rng.random() < self.forward_loss:
                self._trace("lost", sender, to, f"forwarded {message.client_id}#{message.serial}")
                return
            copies = 2 if rng.random() < self.duplication else 1
            delay_bound = self.max_delay
        else:
            copies, delay_bound = 1, 2
        for _ in range(copies):
            self._sequence += 1
            deliver_at = self.step_time + 1 + rng.randrange(delay_bound)
            heapq.heappush(self._in_flight, (deliver_at, self._sequence, sender, to, message))

    def due(self) -> Iterator[tuple[NodeId, NodeId, Message]]:
        """(sender, receiver, message) of each message due by now, in delivery order;
        what is sent while handling one is due at a later step at the earliest."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= self.step_time:
            _, _, sender, to, message = heapq.heappop(in_flight)
            yield sender, to, message

    def partition(self, ids: list[NodeId], leader: NodeId | None, now: int) -> None:
        """Cut links for a while: two random sides, random one-way links, or the leader."""
        rng = self._rng
        kind = rng.choice(["symmetric", "asymmetric", "leader"])
        self.blocked.clear()
        if kind == "symmetric":
            side = {n: rng.random() < 0.5 for n in ids}
            self.blocked = {(a, b) for a in ids for b in ids if side[a] != side[b]}
        elif kind == "asymmetric":
            self.blocked = {(a, b) for a in ids for b in ids if a != b and rng.random() < 0.3}
        else:
            if leader is None:
                return
            self.blocked = {(a, b) for a in ids for b in ids if leader in (a, b)}
        self.partition_until = now + rng.randint(5, 40)
        self._trace("partition", kind, len(self.blocked))

    def heal(self) -> None:
        self.blocked.clear()
        self.partition_until = 0
