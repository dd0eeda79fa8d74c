"""Networking: bytes to and from peer ids.

The signaling server and client (:mod:`raftchat.net.signaling`) introduce the peers of
a channel; the mesh (:class:`Mesh`) keeps one authenticated WebRTC DataChannel link to
each of them, through an engine (:mod:`raftchat.net.engines`). Nothing here knows
about Raft.

The names below are imported on first use, so that importing a part of the package
(e.g. the signaling server, which needs no WebRTC) does not load all of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftchat.net.auth import AuthErrorKind
    from raftchat.net.ice import IceServer, loopback_address_of
    from raftchat.net.link_info import LinkInfo, LinkState
    from raftchat.net.mesh import Mesh
    from raftchat.net.mesh_config import MeshConfig
    from raftchat.net.signaling import (
        ProtocolError,
        RunningServer,
        ServerConfig,
        SignalingClient,
        SignalingError,
        normalize_channel,
        run_server,
        server_is_up,
        start_server,
    )

_HOMES = {
    "AuthErrorKind": "raftchat.net.auth",
    "IceServer": "raftchat.net.ice",
    "loopback_address_of": "raftchat.net.ice",
    "LinkInfo": "raftchat.net.link_info",
    "LinkState": "raftchat.net.link_info",
    "Mesh": "raftchat.net.mesh",
    "MeshConfig": "raftchat.net.mesh_config",
    "ProtocolError": "raftchat.net.signaling",
    "RunningServer": "raftchat.net.signaling",
    "ServerConfig": "raftchat.net.signaling",
    "SignalingClient": "raftchat.net.signaling",
    "SignalingError": "raftchat.net.signaling",
    "normalize_channel": "raftchat.net.signaling",
    "run_server": "raftchat.net.signaling",
    "server_is_up": "raftchat.net.signaling",
    "start_server": "raftchat.net.signaling",
}

__all__ = [
    "AuthErrorKind",
    "IceServer",
    "LinkInfo",
    "LinkState",
    "Mesh",
    "MeshConfig",
    "ProtocolError",
    "RunningServer",
    "ServerConfig",
    "SignalingClient",
    "SignalingError",
    "loopback_address_of",
    "normalize_channel",
    "run_server",
    "server_is_up",
    "start_server",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
