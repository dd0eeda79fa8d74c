"""A node process that never merges its cluster into another (for tests of the gate).

Run as ``python tests/unmerging_node.py join CHANNEL --headless ...`` instead of
``python -m raftchat join ...``: the same node, except that meeting another cluster of
its channel never makes it leave its own, so a test can watch two clusters side by side
and check that their Raft traffic stays apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from raftchat import cli
from raftchat.node import Node

logger = logging.getLogger(__name__)


def never_merge(self: Node) -> None:
    """Stands in for ``Node._consider_merge``."""


def through_launcher(command: Sequence[str]) -> list[str]:
    """A ``python -m raftchat ARGS...`` command line, run through this launcher instead."""
    python, flag, module, *arguments = command
    if (flag, module) != ("-m", "raftchat"):
        raise ValueError(f"not a 'python -m raftchat' command line: {command!r}")
    return [python, str(Path(__file__).resolve()), *arguments]


if __name__ == "__main__":
    Node._consider_merge = never_merge  # type: ignore[method-assign]
    logger.warning("merging disabled (a test-only launcher)")
    raise SystemExit(cli.main())
