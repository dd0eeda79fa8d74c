"""A silent partition: traffic to one member is dropped while the signaling server still
lists it. The leader removes it after ``member_timeout`` and adds it back once it is heard
from again. In-process nodes, so the test can block traffic through their meshes' engines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from mesh_utils import block, engine_of, unblock
from support.waiting import wait_until

from raftchat.net.signaling.server import RunningServer
from raftchat.node import Node, RuntimeTuning
from raftchat.node.api import NoticeEvent
from raftchat.settings import Settings
from raftchat.storage import Storage

pytestmark = pytest.mark.timeout(90)

CHANNEL = "partition"
WAIT_S = 20.0
SETTINGS = Settings(
    heartbeat_ms=50,
    election_timeout_min_ms=300,
    election_timeout_max_ms=600,
    member_timeout_s=2.0,
    adaptive_election_timeout=False,
)
TUNING = RuntimeTuning(presence_grace_s=1.0, leave_timeout_s=2.0)


@pytest.fixture
async def nodes(tmp_path: Path, server: RunningServer, webrtc: str) -> AsyncIterator[list[Node]]:
    """Three members on the engines ``webrtc`` gives them (``mesh_utils.engine_of``)."""
    started: list[Node] = []
    try:
        for index, name in enumerate(("a", "b", "c")):
            storage = Storage.open_channel(CHANNEL, tmp_path / name)
            settings = replace(SETTINGS, webrtc=engine_of(webrtc, index))
            node = Node(storage, settings, server_url=server.url, nick=name, tuning=TUNING)
            started.append(node)
            await node.start()
            await wait_until(
                lambda n=node: n.node_id in n.status().voters, WAIT_S, f"{name} a voter"
            )
        yield started
    finally:
        await asyncio.gather(*(node.stop() for node in started))


async def present(server: RunningServer) -> set[str]:
    """Who the server says is present (asked in process: the HTTP peer list is only for
    the channel's peers)."""
    return server.peers(CHANNEL)


async def test_silent_member_is_removed_after_member_timeout_and_readded_when_heard(
    nodes: list[Node], server: RunningServer
) -> None:
    leader = await wait_until(
        lambda: next((n for n in nodes if n.status().state == "leader"), None), WAIT_S, "a leader"
    )
    victim = next(n for n in nodes if n is not leader)
    others = [n for n in nodes if n is not victim]
    queues = [node.subscribe() for node in others]
    for node in others:
        assert node.mesh is not None and victim.mesh is not None
        block(node.mesh, victim.node_id)
        block(victim.mesh, node.node_id)

    await wait_until(
        lambda: victim.node_id not in leader.core.configuration.members,
        WAIT_S,
        "the victim removed",
    )
    assert victim.node_id in await present(server), "presence never said it left"
    # Every member says why it went: still present, so removed for its silence.
    notices: list[list[str]] = [[] for _ in others]

    def removal_notices() -> bool:
        for queue, texts in zip(queues, notices, strict=True):
            while not queue.empty():
                event = queue.get_nowait()
                if isinstance(event, NoticeEvent) and event.kind == "leave":
                    texts.append(event.text)
        return all(notices)

    await wait_until(removal_notices, WAIT_S, "the removal notices")
    for (text,) in notices:  # the member timeout (2 s), or longer since heard here
        assert re.fullmatch(rf"{victim.nick} was removed: not heard from for [2-9] s", text)
    message_id = leader.send_chat("without the victim")
    await wait_until(
        lambda: all("without the victim" in [m.text for m in n.chat.history()] for n in others),
        WAIT_S,
        "the remaining two commit",
    )
    assert message_id not in leader.proposals.pending

    for node in others:
        assert node.mesh is not None and victim.mesh is not None
        unblock(node.mesh, victim.node_id)
        unblock(victim.mesh, node.node_id)
    await wait_until(
        lambda: victim.node_id in leader.core.configuration.members,
        WAIT_S,
        "the victim added again",
    )
    await wait_until(
        lambda: "without the victim" in [m.text for m in victim.chat.history()],
        WAIT_S,
        "the victim catching up",
    )
