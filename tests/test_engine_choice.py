"""Which WebRTC engine ``auto`` stands for: wrtc where it runs, aiortc where it does not
import (checked in a process of its own, where ``webrtc`` cannot be imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from raftchat.net import Mesh, MeshConfig
from raftchat.net.engines import create_engine, resolve_engine, wrtc_problem
from raftchat.net.identity import NodeIdentity


class NoSignaling:
    async def send_signal(self, to: str, payload: dict) -> bool:
        return False


@pytest.mark.skipif(wrtc_problem() is not None, reason=f"wrtc: {wrtc_problem()}")
async def test_auto_is_wrtc_where_wrtc_runs() -> None:
    assert resolve_engine("auto") == "wrtc"
    assert create_engine("auto").name == "wrtc"
    mesh = Mesh(NodeIdentity.generate(), NoSignaling(), MeshConfig())
    try:
        assert mesh.config.webrtc == "auto" and mesh.engine.name == "wrtc"
    finally:
        await mesh.close()


WITHOUT_WRTC = """
import asyncio, json, sys
sys.modules["webrtc"] = None  # as if wrtc were not installed: importing it fails
from raftchat.net import Mesh, MeshConfig
from raftchat.net.engines import resolve_engine, wrtc_problem
from raftchat.net.identity import NodeIdentity
try:
    resolve_engine("wrtc")
    refused = None
except ValueError as error:
    refused = str(error)


async def engine_of_a_mesh() -> str:
    mesh = Mesh(NodeIdentity.generate(), None, MeshConfig())
    await mesh.close()
    return mesh.engine.name


print(json.dumps({
    "auto": resolve_engine("auto"),
    "mesh": asyncio.run(engine_of_a_mesh()),
    "problem": wrtc_problem(),
    "refused": refused,
    "wrtc_engine_loaded": "raftchat.net.engines.wrtc_engine" in sys.modules,
}))
"""


def test_auto_falls_back_to_aiortc_where_wrtc_does_not_import() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_WRTC],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found["auto"] == "aiortc" and found["mesh"] == "aiortc"
    assert "wrtc is not installed or does not load here" in found["problem"]
    assert found["refused"].startswith("webrtc = wrtc: wrtc is not installed")
    assert not found["wrtc_engine_loaded"]
