"""WebRTC engines behind one seam (:mod:`raftchat.net.engines.base`).

aiortc (:mod:`raftchat.net.engines.aiortc_engine`) is the engine in use; another
(libwebrtc through ``wrtc``) would implement the same :class:`Engine` protocol.
"""

from __future__ import annotations

from raftchat.net.engines.aiortc_engine import AiortcEngine
from raftchat.net.engines.base import (
    CHANNEL_LABEL,
    ConnectionHandler,
    ConnectionSettings,
    Direction,
    Engine,
    EngineError,
    FrameFilter,
    PeerConnection,
    SelectedPair,
)


def default_engine() -> Engine:
    """The engine a mesh uses unless it is given one."""
    return AiortcEngine()


__all__ = [
    "CHANNEL_LABEL",
    "AiortcEngine",
    "ConnectionHandler",
    "ConnectionSettings",
    "Direction",
    "Engine",
    "EngineError",
    "FrameFilter",
    "PeerConnection",
    "SelectedPair",
    "default_engine",
]
