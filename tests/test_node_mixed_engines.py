"""One private channel of node processes on both WebRTC engines: they authenticate each
other with the passphrase (bound to DTLS fingerprints each engine reads its own way),
chat, and carry on after the leader is killed.

The other real-process suites run every node on one engine, once per engine (the
``node_webrtc`` fixture; see docs/testing.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.nodes import TEST_SETTINGS, Cluster, NodeProcess

from raftchat.net.engines import wrtc_problem
from raftchat.net.signaling.server import RunningServer

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(wrtc_problem() is not None, reason=f"wrtc: {wrtc_problem()}"),
]

PASSPHRASE = "mixed engines orbit lantern velvet"
ENGINES = ("wrtc", "aiortc", "wrtc", "aiortc")
"""The engine of each node, in start order: the first founds the channel."""


def mixed_node(cluster: Cluster, root: Path, index: int) -> NodeProcess:
    engine = ENGINES[index]
    config = root / f"config-{engine}.toml"
    if not config.exists():
        replace(TEST_SETTINGS, webrtc=engine).write(config)
    secret = root / "passphrase"
    if not secret.exists():
        secret.write_text(PASSPHRASE + "\n")
        secret.chmod(0o600)
    node = NodeProcess(
        f"{engine}{index}",
        cluster.channel,
        cluster.server_url,
        root / f"{engine}{index}",
        config,
        cluster.waiters,
        extra_args=("--passphrase-file", str(secret)),
    )
    cluster.nodes.append(node)
    return node


async def test_nodes_on_both_engines_authenticate_chat_and_fail_over(
    tmp_path: Path, server: RunningServer
) -> None:
    cluster = Cluster(tmp_path, server.url, "mixed-engines")
    try:
        nodes = [mixed_node(cluster, tmp_path, index) for index in range(len(ENGINES))]
        first, *others = nodes
        await first.start()
        await first.wait_for(NodeProcess.is_leader, 30, "founding the channel")
        for node in others:
            await node.start()
            await node.wait_for(lambda n: n.node_id, 30, "its first status line")
        # Every member was admitted over authenticated links to members on both engines.
        await cluster.wait_all(
            lambda n: n.status and len(n.status["voters"]) == len(nodes), "all voters"
        )
        assert [node.status["webrtc"] for node in nodes] == list(ENGINES)

        for node in nodes:
            node.send(f"hello from {node.name}")
        every = {f"hello from {node.name}" for node in nodes}
        await cluster.wait_all(lambda n: every <= set(n.texts()), "every greeting everywhere")
        orders = {tuple(t for t in node.texts() if t in every) for node in nodes}
        assert len(orders) == 1, "one order on every node"

        leader = await cluster.leader()
        leader.kill()
        survivors = [node for node in nodes if node is not leader]
        new_leader = await cluster.leader(survivors)
        assert new_leader is not leader
        sender = next(node for node in survivors if node is not new_leader)
        sender.send("after the failover")
        await cluster.wait_all(
            lambda n: "after the failover" in n.texts(), "a commit after the failover", survivors
        )
        assert not any(node.errors() for node in survivors), [n.errors() for n in survivors]
    except BaseException:
        print(cluster.report())
        raise
    finally:
        await cluster.close()
