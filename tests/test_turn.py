"""Two mesh peers connect through a real coturn relay on loopback, relay-only, on each
engine and with one of each (the ``webrtc`` fixture)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from mesh_utils import (
    CLOSE_WAIT_S,
    TEST_CONFIG,
    FakeRelay,
    all_open,
    engine_of,
    ids,
    make_peer,
    pending_tasks,
)
from support.ports import free_port
from support.waiting import wait_until

from raftchat.net import IceServer, LinkState, MeshConfig

TURNSERVER = shutil.which("turnserver")
TURN_USER, TURN_PASSWORD = "u", "p"

pytestmark = pytest.mark.skipif(
    TURNSERVER is None,
    reason="coturn's turnserver is not installed (apt-get install coturn; .ci/run installs it)",
)


def wait_for_tcp(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"turnserver did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture
def turn_server(tmp_path) -> Iterator[int]:
    """coturn on loopback, started as DESIGN.md says; yields its port."""
    port = free_port(udp_too=True)  # turnserver listens on both
    command = [
        TURNSERVER,
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--min-port=49160",
        "--max-port=49200",
        "--lt-cred-mech",
        f"--user={TURN_USER}:{TURN_PASSWORD}",
        "--realm=test",
        "--allow-loopback-peers",  # tests only: the peers are on loopback
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        f"--log-file={tmp_path / 'turn.log'}",
        f"--pidfile={tmp_path / 'turn.pid'}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path
    )
    try:
        wait_for_tcp(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_two_peers_connect_through_turn_relay_only(turn_server, webrtc):
    config = MeshConfig(
        **{
            **vars(TEST_CONFIG),
            "ice_servers": (
                IceServer(
                    f"turn:127.0.0.1:{turn_server}", username=TURN_USER, credential=TURN_PASSWORD
                ),
            ),
            "relay_only": True,
        }
    )
    relay = FakeRelay()
    a = make_peer(relay, ids.a, config, webrtc=engine_of(webrtc, 0))
    b = make_peer(relay, ids.b, config, webrtc=engine_of(webrtc, 1))
    try:
        await wait_until(lambda: all_open([a, b]), 15, "relayed link open")
        for peer, other in ((a, ids.b), (b, ids.a)):
            info = peer.mesh.links()[other]
            assert (info.local_candidate_type, info.remote_candidate_type) == ("relay", "relay")
        assert a.mesh.send(ids.b, b"through the relay")
        big = bytes(range(256)) * 1024
        assert b.mesh.send(ids.a, big)
        await wait_until(lambda: b.received[ids.a] == [b"through the relay"])
        await wait_until(lambda: a.received[ids.b] == [big])
        assert a.mesh.links()[ids.b].state == LinkState.OPEN
    finally:
        await a.mesh.close()
        await b.mesh.close()
    await wait_until(
        lambda: not pending_tasks(), CLOSE_WAIT_S, f"tasks to finish after close: {pending_tasks()}"
    )
