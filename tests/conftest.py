"""Fixtures shared by many test modules (helpers they import are in ``support/``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from mesh_utils import WEBRTC_MODES
from support import nodes

from raftchat.net.engines import wrtc_problem
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


@pytest.fixture(params=WEBRTC_MODES)
def webrtc(request: pytest.FixtureRequest) -> str:
    """How the peers of an in-process mesh test pick their WebRTC engine (see
    ``mesh_utils.WEBRTC_MODES``); a test parametrizes ``webrtc`` itself to run on fewer.
    Without a working wrtc its modes are skipped."""
    mode = str(request.param)
    if mode != "aiortc" and wrtc_problem() is not None:
        pytest.skip(f"wrtc engine unavailable: {wrtc_problem()}")
    return mode


@pytest.fixture(params=nodes.node_engines())
def node_webrtc(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine of the node processes a test starts (``support.nodes``): the test runs
    once on each engine (``RAFTCHAT_WEBRTC`` picks one). Without a working wrtc its run
    is skipped. Modules of real-process tests use it through
    ``pytest.mark.usefixtures("node_webrtc")``."""
    engine = str(request.param)
    if engine != "aiortc" and wrtc_problem() is not None:
        pytest.skip(f"wrtc engine unavailable: {wrtc_problem()}")
    previous = nodes.use_engine(engine)
    try:
        yield engine
    finally:
        nodes.use_engine(previous)
