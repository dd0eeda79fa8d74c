"""Opening and closing channels in this process, for a front end that shows several."""

from __future__ import annotations

from typing import Protocol

from raftchat.node.api import ChatNode


class ChannelOpenError(Exception):
    """A channel could not be opened; str(error) is a message for the user."""


class ChannelHost(Protocol):
    """Opens and closes channels in this process for a front end that shows several."""

    async def open(self, name: str) -> ChatNode:
        """Join channel ``name`` (as typed); raises ChannelOpenError."""
        ...

    async def close(self, channel: str) -> None:
        """Leave ``channel`` cleanly, then stop its node."""
        ...
