"""A node process with network partitions chosen by a file (for the chaos test).

Run as ``python tests/fault_node.py join CHANNEL --headless ...`` instead of
``python -m raftchat join ...``: the same command line, plus fault injection when the
environment variable ``RAFTCHAT_FAULTS_FILE`` names a file. The launcher then installs
a frame filter on the WebRTC engine for the whole process (the engine's one test hook,
``raftchat.net.engines.base.FrameFilter``) and runs ``raftchat.cli.main``.

The filter re-reads the file at most every ``POLL_INTERVAL_S`` (and only when its
mtime, size or inode changed), expecting a JSON object::

    {"drop": ["<peer node id>", ...]}

Every frame to or from a listed peer is dropped silently, and the signaling server still
lists the peer, as in a real partition: the link goes quiet, is declared dead after the
mesh's ``dead_after``, and no new connection to the peer opens until it is no longer
listed. A missing file or an empty list means no faults. A file that cannot be read or
parsed is logged and the faults in force stay as they were (a writer should replace the
file atomically: write a temporary file, then rename it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from raftchat import cli
from raftchat.net.engines import Direction, FrameFilterHook

logger = logging.getLogger(__name__)

FAULTS_FILE_ENV = "RAFTCHAT_FAULTS_FILE"
POLL_INTERVAL_S = 0.1


class FaultsFile:
    """The peers a faults file says to cut off, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped: frozenset[str] = frozenset()
        self._version: tuple[int, int, int] | None = None

    def should_drop(self, peer: str, direction: str) -> bool:
        """Both directions of a listed peer's traffic are dropped."""
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


class PollingFrameFilter:
    """A frame filter that follows a faults file, polling it when consulted.

    The engine consults its filter for every frame and whenever a channel opens, and an
    open link pings every second, so the file is seen soon after it changes; no task or
    thread is needed."""

    def __init__(
        self,
        faults: FaultsFile,
        interval: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.faults = faults
        self._interval = interval
        self._clock = clock
        self._next_poll = clock()

    def __call__(self, peer: str, direction: Direction) -> bool:
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + self._interval
            self.faults.poll()
        return self.faults.should_drop(peer, direction)


def install_from_env() -> FaultsFile | None:
    """Partition this process as ``$RAFTCHAT_FAULTS_FILE`` says, if it is set."""
    path = os.environ.get(FAULTS_FILE_ENV)
    if not path:
        return None
    faults = FaultsFile(Path(path))
    faults.poll()
    FrameFilterHook.frame_filter = PollingFrameFilter(faults)  # every engine of the process
    logger.warning("fault injection enabled from %s (a test-only setting)", path)
    return faults


def through_launcher(command: Sequence[str]) -> list[str]:
    """A ``python -m raftchat ARGS...`` command line, run through this launcher instead."""
    python, flag, module, *arguments = command
    if (flag, module) != ("-m", "raftchat"):
        raise ValueError(f"not a 'python -m raftchat' command line: {command!r}")
    return [python, str(Path(__file__).resolve()), *arguments]


if __name__ == "__main__":
    install_from_env()
    raise SystemExit(cli.main())
