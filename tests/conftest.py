"""Fixtures shared by many test modules (helpers they import are in ``support/``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import RunningServer, start_server


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A signaling server on a free loopback port, with the settings of a server for one
    machine (every client is on loopback: the per-address limits are the global ones)."""
    running = await start_server("127.0.0.1", 0, ServerConfig.one_machine())
    try:
        yield running
    finally:
        await running.close()
