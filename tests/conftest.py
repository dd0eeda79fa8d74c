"""Fixtures shared by many test modules (helpers they import are in ``support/``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import RunningServer, start_server


@pytest.fixture(scope="session", autouse=True)
def private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test touches the user's own settings, data or logs (``raftchat serve`` keeps
    its witness in the user data dir): the XDG folders point into the test's temp dir,
    for this process and every process it starts."""
    root = tmp_path_factory.mktemp("user")
    names = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(root / name.lower())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A signaling server on a free loopback port, with the settings of a server for one
    machine (every client is on loopback: the per-address limits are the global ones)."""
    running = await start_server("127.0.0.1", 0, ServerConfig.one_machine())
    try:
        yield running
    finally:
        await running.close()
