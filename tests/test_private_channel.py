"""Private channels end to end: the passphrase admits members and keeps others out."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.nodes import NodeProcess, write_config

from raftchat.net.signaling.server import RunningServer

pytestmark = pytest.mark.timeout(120)


def private_node(name: str, root: Path, server: RunningServer, passphrase: str) -> NodeProcess:
    secret = root / f"{name}.passphrase"
    secret.write_text(passphrase + "\n")
    secret.chmod(0o600)  # a passphrase file others can read is refused
    return NodeProcess(
        name,
        "private-room",
        server.url,
        root / name,
        write_config(root / "config.toml"),
        extra_args=("--passphrase-file", str(secret)),
    )


async def test_wrong_passphrase_is_refused_and_members_keep_chatting(
    tmp_path: Path, server: RunningServer
) -> None:
    alice = private_node("alice", tmp_path, server, "correct horse battery staple")
    bob = private_node("bob", tmp_path, server, "correct horse battery staple")
    mallory = private_node("mallory", tmp_path, server, "tr0ub4dor&3 mallory")
    nodes = [alice, bob, mallory]
    try:
        await alice.start()
        await alice.wait_for(NodeProcess.is_leader, 30, "alice founding the channel")
        await bob.start()
        await bob.wait_for(NodeProcess.is_voter, 30, "bob admitted with the passphrase")

        await mallory.start()
        await mallory.wait_for(
            lambda n: any("passphrase" in error for error in n.errors()), 30, "a passphrase error"
        )
        bob.send("still private")
        await alice.wait_for(lambda n: "still private" in n.texts(), 30, "bob's message")
        members = set(alice.status["voters"]) | set(alice.status["learners"])
        assert mallory.node_id not in members
        assert "still private" not in mallory.texts()
        assert not mallory.messages()
    except BaseException:
        for node in nodes:
            print(node.report())
        raise
    finally:
        for node in nodes:
            await node.stop()
