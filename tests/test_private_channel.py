"""Private channels end to end: the passphrase admits members and keeps others out."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.nodes import NodeProcess, write_config

from raftchat.net.signaling.server import RunningServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("node_webrtc")]


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


async def test_the_survivor_of_a_private_pair_forgets_the_dead_member_who_rejoins_later(
    tmp_path: Path, server: RunningServer
) -> None:
    """No witness in a private channel: bob's machine dies (SIGKILL), alice is told whom
    the channel waits for and how to carry on, forgets bob, and her messages commit.
    When bob comes back he is added again and gets what alice wrote meanwhile."""
    passphrase = "correct horse battery staple"
    alice = private_node("alice", tmp_path, server, passphrase)
    bob = private_node("bob", tmp_path, server, passphrase)
    nodes = [alice, bob]
    try:
        await alice.start()
        await alice.wait_for(NodeProcess.is_leader, 30, "alice founding the channel")
        await bob.start()
        await bob.wait_for(NodeProcess.is_voter, 30, "bob a voter")
        bob.send("hello from bob")  # once alice has it, she knows bob's nick
        await alice.wait_for(lambda n: "hello from bob" in n.texts(), 30, "bob's message")

        bob.kill()
        await bob.wait_exit()
        alice.send("anyone there?")

        def suggests_forgetting(node: NodeProcess) -> dict | None:
            status = node.status or {}
            return status if status.get("forget_command") == "/forget bob" else None

        status = await alice.wait_for(suggests_forgetting, 30, "the status suggesting /forget")
        assert "waiting for bob \u2014 the channel needs 2 of 2 voters" in status["quorum_problem"]
        assert not alice.acks(), "nothing commits without bob"

        alice.send("/forget bob --yes")
        await alice.wait_for(lambda n: len(n.acks()) == 1, 30, "the held message committing")
        assert alice.status is not None and alice.status["voters"] == [alice.node_id]
        assert "quorum_problem" not in alice.status
        alice.send("carrying on")
        await alice.wait_for(lambda n: len(n.acks()) == 2, 30, "alice's next message")

        await bob.restart()
        await alice.wait_for(
            lambda n: n.status and len(n.status["voters"]) == 2, 60, "bob a voter again"
        )
        await bob.wait_for(
            lambda n: {"anyone there?", "carrying on"} <= set(n.texts()), 30, "alice's messages"
        )
        bob.send("back again")
        await alice.wait_for(lambda n: "back again" in n.texts(), 30, "bob's message")
        assert alice.texts() == ["hello from bob", "anyone there?", "carrying on", "back again"]
        assert not alice.errors() and not bob.errors()
    except BaseException:
        for node in nodes:
            print(node.report())
        raise
    finally:
        for node in nodes:
            await node.stop()
