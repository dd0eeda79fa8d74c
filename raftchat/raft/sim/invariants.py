"""Raft's safety properties, checked on every node after every step of a simulation.

Each node's persisted log is summarised by a hash chain (entry k's digest covers
every entry up to k), so comparing two logs up to an index is comparing two digests.
"""

from __future__ import annotations

from ..messages import Entry
from ..ready import Ready
from .models import SimNode, StorageError, Verdict, chain_digest


class Violation(Exception):
    """A safety or liveness property was broken; the text says which and where."""


class SafetyChecks:
    """Election safety, log matching, leader completeness and state machine safety."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, str] = {}
        self.chain_at: dict[tuple[int, int], bytes] = {}
        """(index, term) -> chain digest of the first log seen holding that entry."""
        self.committed_chain: dict[int, bytes] = {}
        self.max_committed = 0
        self.state_at: dict[int, bytes] = {}
        """Applied index -> state machine digest there."""
        self.applied_at: dict[tuple[str, int], int] = {}
        """(client id, serial) -> the index where the session rule applied it."""

    def persist(self, node: SimNode, ready: Ready) -> None:
        """Store ``ready`` on the node and extend its chain: log matching holds."""
        storage = node.storage
        before_snapshot = storage.snapshot_index
        try:
            storage.persist(ready)
        except StorageError as error:
            raise Violation(f"{node.node_id}: storage: {error}") from None
        chain = node.chain
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            known = self.chain_at.get((meta.index, meta.term))
            if known is None:
                raise Violation(
                    f"{node.node_id}: snapshot at {meta.index}/{meta.term} names no entry"
                )
            node.chain = chain = [known]
            node.chain_base_index = meta.index
        elif storage.snapshot_index > before_snapshot:
            drop = storage.snapshot_index - node.chain_base_index
            del chain[:drop]
            node.chain_base_index = storage.snapshot_index
        if not chain:
            chain.append(b"")  # the empty log
        if ready.truncate_from:
            del chain[ready.truncate_from - node.chain_base_index :]
        for entry in ready.entries:
            digest = chain_digest(
                chain[-1],
                entry.index,
                entry.term,
                entry.kind,
                entry.data,
                entry.client_id,
                entry.serial,
            )
            chain.append(digest)
            key = (entry.index, entry.term)
            known = self.chain_at.setdefault(key, digest)
            if known != digest:
                raise Violation(
                    f"{node.node_id}: log matching broken at index {entry.index} term {entry.term}"
                )
        if len(chain) - 1 + node.chain_base_index != storage.last_index:
            raise Violation(f"{node.node_id}: chain bookkeeping out of step with storage")

    def apply(self, node: SimNode, entry: Entry) -> Verdict | None:
        """Apply a committed entry on the node: the same entry and the same state everywhere,
        and a client's proposal applied at one index only."""
        digest = _chain(node, entry.index)
        if digest is None:
            raise Violation(f"{node.node_id}: applied entry {entry.index} that is not persisted")
        known = self.committed_chain.setdefault(entry.index, digest)
        if known != digest:
            raise Violation(f"{node.node_id}: committed entry {entry.index} differs between nodes")
        self.max_committed = max(self.max_committed, entry.index)
        verdict = node.machine.apply(entry)
        if node.machine.fifo_breaks:
            raise Violation(f"{node.node_id}: {node.machine.fifo_breaks[0]}")
        state = node.machine.digest
        if self.state_at.setdefault(entry.index, state) != state:
            raise Violation(f"{node.node_id}: state machine differs at index {entry.index}")
        if verdict == "applied":
            key = (entry.client_id, entry.serial)
            first = self.applied_at.setdefault(key, entry.index)
            if first != entry.index:
                raise Violation(
                    f"{node.node_id}: {key[0]}#{key[1]} applied twice, at {first} and {entry.index}"
                )
        return verdict

    def installed(self, node: SimNode, index: int) -> None:
        """The node restored its state machine from a snapshot ending at ``index``."""
        known = self.state_at.setdefault(index, node.machine.digest)
        if known != node.machine.digest:
            raise Violation(f"{node.node_id}: installed snapshot state differs at {index}")

    def leader(self, node: SimNode) -> None:
        """The node became leader: the only one of its term, holding every committed entry."""
        core = node.core
        assert core is not None
        holder = self.leader_of_term.setdefault(core.term, node.node_id)
        if holder != node.node_id:
            raise Violation(f"two leaders in term {core.term}: {holder} and {node.node_id}")
        if self.max_committed:
            own = _chain(node, self.max_committed)
            if own != self.committed_chain[self.max_committed]:
                raise Violation(
                    f"leader completeness: {node.node_id} (term {core.term}) lacks committed "
                    f"entry {self.max_committed}"
                )


def _chain(node: SimNode, index: int) -> bytes | None:
    position = index - node.chain_base_index
    if 0 <= position < len(node.chain):
        return node.chain[position]
    return None
