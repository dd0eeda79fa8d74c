"""Signaling: the server that introduces the peers of a channel and relays their
offers and answers, the client that keeps one peer present, and their wire protocol.

The server never sees chat content; the mesh (``raftchat.net.mesh``) uses the client
only to exchange signals with its peers.
"""

from __future__ import annotations

from raftchat.net.signaling.client import (
    ClientConfig,
    IdentityRefusedError,
    InvalidChannelError,
    PeerIdTakenError,
    ServerRejectedError,
    ServerUnreachableError,
    SignalingClient,
    SignalingConnection,
    SignalingError,
    SignalingListener,
    SignalingSession,
    server_is_up,
)
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.protocol import (
    ErrorCode,
    ProtocolError,
    new_channel_name,
    new_token,
    normalize_channel,
)
from raftchat.net.signaling.server import RunningServer, run_server, start_server

__all__ = [
    "ClientConfig",
    "ErrorCode",
    "IdentityRefusedError",
    "InvalidChannelError",
    "PeerIdTakenError",
    "ProtocolError",
    "RunningServer",
    "ServerConfig",
    "ServerRejectedError",
    "ServerUnreachableError",
    "SignalingClient",
    "SignalingConnection",
    "SignalingError",
    "SignalingListener",
    "SignalingSession",
    "new_channel_name",
    "new_token",
    "normalize_channel",
    "run_server",
    "server_is_up",
    "start_server",
]
