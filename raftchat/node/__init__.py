"""The node layer: one channel's Raft member at work (the runtime and its parts).

Front ends use :class:`Node` through the narrow interface of :mod:`raftchat.node.api`.
"""

from raftchat.node.runtime import Node, NodeError, RuntimeTuning

__all__ = ["Node", "NodeError", "RuntimeTuning"]
