"""Identity keys with real node processes: members that all upgrade from data dirs of an
earlier release (no keys) keep their channel and its history; a data dir whose key is
gone is refused at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.legacy import prepare_legacy_cluster
from support.nodes import Cluster, NodeProcess

from raftchat.net.signaling.server import RunningServer, start_server
from raftchat.storage import KEY_FILENAME

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("node_webrtc")]

CHANNEL = "upgrade"


@pytest.fixture
async def signaling() -> AsyncIterator[RunningServer]:
    server = await start_server("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def cluster(
    tmp_path: Path, signaling: RunningServer, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, f"http://127.0.0.1:{signaling.port}", CHANNEL)
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
        await nodes.close()


def channel_log(node: NodeProcess) -> list[tuple[str, str, str]]:
    """(id, nick, text) of each message; the nick without the ``#id`` that tells the old id
    apart from the member's new one, which says the same nick."""
    return [
        (e["id"], e["nick"].partition("#")[0], e["text"])
        for e in node.output
        if e["event"] == "message"
    ]


async def test_members_that_all_upgrade_keep_the_channel_and_its_history(
    cluster: Cluster,
) -> None:
    """ada and cyd were the two voters of a cluster with 6 messages; both come back with
    this release. Neither old id can be proven, so neither is a member any more: each
    merges its history back in under its new id, and the channel works."""
    old_ids = prepare_legacy_cluster(cluster.root, CHANNEL, ["ada", "cyd"], messages=3)
    expected = [
        (f"{old_ids[name]}:{k + 1}", name, f"{name}-{k}")
        for k in range(3)
        for name in ("ada", "cyd")
    ]
    ada = await cluster.add("ada")
    await ada.wait_for(lambda n: len(channel_log(n)) >= 6, what="ada's history merged back")
    cyd = await cluster.add("cyd")
    for node in (ada, cyd):
        await node.wait_for(NodeProcess.is_voter, what="a voter under its new id")
        assert node.node_id not in old_ids.values() and len(node.node_id) == 32
        assert (cluster.root / node.name / CHANNEL / KEY_FILENAME).exists()
        assert "predates identity keys" in node.stderr_tail(200)
    for node in (ada, cyd):  # cyd's own merge queue adds nothing the channel has
        await node.wait_for(
            lambda n: channel_log(n) == expected, what="each message once, in order"
        )
    cyd.send("after the upgrade")
    for node in (ada, cyd):
        await node.wait_for(
            lambda n: "after the upgrade" in n.texts(), what="a new message committed"
        )


async def test_a_data_dir_whose_key_is_gone_is_refused(cluster: Cluster) -> None:
    ada = await cluster.add("ada")
    node_id = ada.node_id
    ada.quit()
    assert await ada.wait_exit() == 0
    key = cluster.root / "ada" / CHANNEL / KEY_FILENAME
    key.unlink()
    await ada.restart()
    assert await ada.wait_exit() == 1
    stderr = ada.stderr_tail(20)
    assert "identity key file" in stderr and "is missing" in stderr and node_id in stderr
    assert not key.exists()  # no new identity was made
