"""Several channels in one process: what opens and closes them for a front end.

Each channel is its own Raft cluster with its own storage and its own identity key
(``<data dir>/<channel>/node.key``), so a channel cannot tell from the ids which other
channels the same person is in. What the channels of a process share: one embedded
signaling server (started when none answers at the local default URL), and one WebSocket
to each signaling server, carrying every channel's session (``net/signaling``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from raftchat.frontends.launch import (
    JoinOptions,
    LaunchError,
    channel_name,
    ensure_server,
    open_node,
    renamed_notice,
    resolve_channel_passphrase,
    resolve_settings,
)
from raftchat.net.signaling.client import SignalingConnection, SignalingError
from raftchat.net.signaling.server import RunningServer
from raftchat.node import Node
from raftchat.node.api import ChatNode, NoticeEvent
from raftchat.settings import Settings

logger = logging.getLogger(__name__)


class ChannelOpenError(Exception):
    """A channel could not be opened; str(error) is a message for the user."""


class ChannelHost(Protocol):
    """Opens and closes channels in this process for a front end that shows several."""

    async def open(self, name: str) -> ChatNode:
        """Open the channel typed as ``name``; raises ChannelOpenError."""
        ...

    async def close(self, channel: str) -> None:
        """Leave ``channel`` cleanly, then stop its node."""
        ...


class ProcessChannels:
    """The :class:`ChannelHost` of ``raftchat join``: the channels' nodes, the embedded
    signaling server if one was started, and one signaling WebSocket per server URL."""

    def __init__(self, options: JoinOptions) -> None:
        self.options = options
        self._settings: Settings | None = None
        self._server: RunningServer | None = None
        self._server_checked = False
        self._connections: dict[str, SignalingConnection] = {}
        self._nodes: dict[str, Node] = {}
        self._opened = 0
        self._lock = asyncio.Lock()

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels open now, in the order they were opened."""
        return tuple(self._nodes)

    def node(self, channel: str) -> Node | None:
        return self._nodes.get(channel)

    def connection(self, server_url: str) -> SignalingConnection | None:
        """The WebSocket shared by the channels on ``server_url`` (None: none yet)."""
        return self._connections.get(server_url)

    @property
    def server(self) -> RunningServer | None:
        """The embedded signaling server, if this process started one."""
        return self._server

    async def open(self, name: str) -> Node:
        """Open a channel: the first ones (on the command line) may ask for a passphrase;
        one opened later from inside the chat UI may not (the UI owns the terminal)."""
        async with self._lock:  # one at a time: settings, server and socket are shared
            try:
                return await self._open(name, can_ask=self._opened < len(self.options.channels))
            except LaunchError as error:
                raise ChannelOpenError(str(error)) from None
            except SignalingError as error:
                raise ChannelOpenError(f"cannot join channel {name}: {error}") from None

    async def _open(self, name: str, *, can_ask: bool) -> Node:
        channel = channel_name(name)
        if channel in self._nodes:
            raise LaunchError(f"channel {channel} is open already")
        settings = self._settings or resolve_settings(self.options)
        self._settings = settings
        passphrase = resolve_channel_passphrase(self.options, settings, channel, can_ask=can_ask)
        if not self._server_checked:
            self._server = await ensure_server(
                settings, explicit=self.options.server_url is not None
            )
            self._server_checked = True
        url = settings.server_url
        connection = self._connections.get(url)
        if connection is None:
            connection = self._connections[url] = SignalingConnection(url)
        node = open_node(channel, settings, passphrase, signaling=connection)
        try:
            await node.start()
        except BaseException:
            await node.stop()
            raise
        self._opened += 1
        self._nodes[channel] = node
        notice = renamed_notice(name, channel)
        if notice is not None:
            node.subscribers.publish_sticky(NoticeEvent("info", notice, time.time()))
        logger.info("channel %s open (%d in this process)", channel, len(self._nodes))
        return node

    async def close(self, channel: str) -> None:
        """Leave ``channel`` (asking to be removed), then stop its node; the other
        channels and their sessions on the shared socket carry on."""
        node = self._nodes.pop(channel, None)
        if node is None:
            return
        try:
            await node.leave()
        finally:
            await node.stop()

    async def shutdown(self) -> None:
        """Stop every node still open (without leaving), then the shared sockets and the
        embedded server."""
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.stop()
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()
        if self._server is not None:
            await self._server.close()
            self._server = None
