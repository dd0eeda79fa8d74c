"""Fixtures shared by many test modules (helpers they import are in ``support/``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from raftchat.net.signaling.server import RunningServer, start_server


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A signaling server with the default settings on a free loopback port."""
    running = await start_server("127.0.0.1", 0)
    try:
        yield running
    finally:
        await running.close()
