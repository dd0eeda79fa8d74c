"""Test-only fault injection for a node process: network partitions chosen by a file.

Off unless the environment variable ``RAFTCHAT_FAULTS_FILE`` names a file. The node
then polls that file (every ``POLL_INTERVAL_S``; it is re-read only when its mtime,
size or inode changed) for a JSON object::

    {"drop": ["<peer node id>", ...]}

Every frame to or from a listed peer is dropped silently through the mesh's fault
filter, and the signaling server still lists the peer, as in a real partition: the
link goes quiet, is declared dead after the mesh's ``dead_after`` and cannot be
re-established until the peer is no longer listed. A missing file or an empty list
means no faults. A file that cannot be read or parsed is logged and the faults in
force stay as they were (a writer should replace the file atomically: write a
temporary file, then rename it).

Chaos tests (``tests/test_chaos.py``) use it to partition real node processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raftchat.node import Node

logger = logging.getLogger(__name__)

FAULTS_FILE_ENV = "RAFTCHAT_FAULTS_FILE"
POLL_INTERVAL_S = 0.1

_watchers: set[asyncio.Task[None]] = set()


class FaultsFile:
    """The peers a faults file says to cut off, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped: frozenset[str] = frozenset()
        self._version: tuple[int, int, int] | None = None

    def should_drop(self, peer: str, direction: str) -> bool:
        """The mesh fault filter: both directions of a listed peer's traffic are dropped."""
        return peer in self.dropped

    def poll(self) -> bool:
        """Re-read the file if it changed; True if the set of dropped peers changed."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return self._set(frozenset(), None)
        except OSError as error:
            logger.warning("faults file %s: %s", self.path, error)
            return False
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if version == self._version:
            return False
        try:
            dropped = parse_faults(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            logger.warning("faults file %s ignored: %s", self.path, error)
            return False
        return self._set(dropped, version)

    def _set(self, dropped: frozenset[str], version: tuple[int, int, int] | None) -> bool:
        self._version = version
        if dropped == self.dropped:
            return False
        self.dropped = dropped
        logger.warning("fault injection: dropping traffic of %s", sorted(dropped) or "nobody")
        return True


def parse_faults(text: str) -> frozenset[str]:
    """The peer ids of ``{"drop": [...]}``; ValueError says what is wrong."""
    document = json.loads(text) if text.strip() else {}
    if not isinstance(document, dict):
        raise ValueError('expected a JSON object like {"drop": ["peer id", ...]}')
    dropped = document.get("drop", [])
    if not isinstance(dropped, list) or not all(isinstance(p, str) for p in dropped):
        raise ValueError('"drop" must be a list of peer id strings')
    return frozenset(dropped)


async def watch(node: Node, faults: FaultsFile) -> None:
    """Apply ``faults`` to the node's mesh until the node stops."""
    while not node.stopped:
        mesh = node.mesh
        if mesh is not None:
            faults.poll()
            mesh.set_fault_filter(faults.should_drop if faults.dropped else None)
        await asyncio.sleep(POLL_INTERVAL_S)


def install_from_env(node: Node) -> FaultsFile | None:
    """Start watching ``$RAFTCHAT_FAULTS_FILE`` for ``node`` if it is set (tests only)."""
    path = os.environ.get(FAULTS_FILE_ENV)
    if not path:
        return None
    faults = FaultsFile(Path(path))
    faults.poll()
    logger.warning("fault injection enabled from %s (a test-only setting)", path)
    task = asyncio.create_task(watch(node, faults), name="raftchat-faults")
    _watchers.add(task)
    task.add_done_callback(_watchers.discard)
    return faults
