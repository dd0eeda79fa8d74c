"""A hostile peer, "mallory", speaks the real wire protocol over real DataChannels to the
members of a channel and tries every attack that once worked: forged proposals in a
member's name, a forged leave, forged history by InstallSnapshot, a huge term by
AppendEntries, a forged leadership transfer, buffering snapshot chunks without bound,
a message time that crashed displays. Before it is added and once it is a member, in a
public channel and in a private one whose passphrase it knows: every attack refused and
counted, the chat unaffected.

The members run in this process (real nodes, real meshes) so the test can read their
counters; mallory is a bare signaling client and mesh that sends whatever it likes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from mesh_utils import TEST_CONFIG, engine_of, with_settings
from support.waiting import wait_until

from raftchat import chat
from raftchat.net import Mesh, SignalingClient
from raftchat.net.identity import NodeIdentity
from raftchat.node import Node, RuntimeTuning
from raftchat.node.cluster import NODE_CODEC, hello
from raftchat.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CodecError,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
    InstallSnapshot,
    RequestVote,
    TimeoutNow,
)
from raftchat.raft.codec import packer
from raftchat.settings import Settings
from raftchat.storage import Storage

pytestmark = pytest.mark.timeout(120)

CHANNEL = "hostile"
PASSPHRASE = "correct horse battery staple orbit"
WAIT_S = 30.0
SETTINGS = Settings(
    heartbeat_ms=50,
    election_timeout_min_ms=1000,
    election_timeout_max_ms=2000,
    adaptive_election_timeout=False,
    allow_weak_passphrase=True,
)
HUGE_TERM = 1_000_002
SNAPSHOT_CHUNKS = 8
"""Chunks of a snapshot from nobody (the size cap is the core's own test)."""
CHUNK_BYTES = 256 * 1024


class Mallory:
    """A signaling client and a mesh, driven by hand."""

    def __init__(self, server_url: str, passphrase: str | None, webrtc: str) -> None:
        self.webrtc = webrtc
        "Mallory's WebRTC engine."
        self.identity = NodeIdentity.generate()
        self.node_id = self.identity.node_id
        self.server_url = server_url
        self.passphrase = passphrase
        self.signaling: SignalingClient | None = None
        self.mesh: Mesh | None = None
        self.open: set[str] = set()
        self.not_sent: list[object] = []
        """Messages the mesh would not queue (its send queue was full)."""

    async def start(self) -> None:
        self.signaling = SignalingClient(self.server_url, CHANNEL, self.identity, self)
        config = with_settings(
            TEST_CONFIG, channel=CHANNEL, passphrase=self.passphrase, webrtc=self.webrtc
        )
        self.mesh = Mesh(
            self.identity,
            self.signaling,
            config,
            on_message=self._received,
            on_link_change=self._link_changed,
        )
        await self.signaling.start()

    def _received(self, peer: str, data: bytes) -> None:
        """Play along with the leader (acknowledge its appends) so it keeps the link up."""
        try:
            message = NODE_CODEC.decode(data)
        except CodecError:
            return
        if type(message) is AppendEntries:
            match = message.prev_log_index + len(message.entries)
            answer = AppendEntriesResponse(
                self.node_id, message.term, True, match, heartbeat_seq=message.heartbeat_seq
            )
            self.send(peer, answer)

    def _link_changed(self, peer: str, info: object) -> None:
        if getattr(info, "state", None) == "open":
            self.open.add(peer)
        else:
            self.open.discard(peer)

    # SignalingListener
    def on_peers(self, peers: frozenset[str]) -> None:
        if self.mesh is not None:
            self.mesh.set_peers(peers)

    def on_signal(self, sender: str, payload: dict) -> None:
        if self.mesh is not None:
            self.mesh.handle_signal(sender, payload)

    def on_state(self, state: str) -> None:
        pass

    def send(self, peer: str, message: object) -> None:
        assert self.mesh is not None
        if not self.mesh.send(peer, NODE_CODEC.encode(message), True):  # type: ignore[arg-type]
            self.not_sent.append(message)

    async def close(self) -> None:
        if self.mesh is not None:
            await self.mesh.close()
        if self.signaling is not None:
            await self.signaling.close()


@pytest.fixture(params=["public", "private"])
def passphrase(request: pytest.FixtureRequest) -> str | None:
    return PASSPHRASE if request.param == "private" else None


@pytest.fixture
async def members(
    tmp_path: Path, server, passphrase: str | None, webrtc: str
) -> AsyncIterator[list[Node]]:
    """alice and bob, on the engines ``webrtc`` gives them (mallory comes third)."""
    started: list[Node] = []
    try:
        for index, name in enumerate(("alice", "bob")):
            storage = Storage.open_channel(CHANNEL, tmp_path / name)
            node = Node(
                storage,
                replace(SETTINGS, webrtc=engine_of(webrtc, index)),
                server_url=server.url,
                nick=name,
                passphrase=passphrase,
                tuning=RuntimeTuning(presence_grace_s=1.0),
            )
            started.append(node)
            await node.start()
            await wait_until(lambda n=node: n.node_id in n.status().voters, WAIT_S, f"{name}")
        yield started
    finally:
        await asyncio.gather(*(node.stop() for node in started))


def attacks(mallory: Mallory, victim: Node, bob: Node) -> list[object]:
    """Every attack, as mallory would send it to ``victim``."""
    term = victim.core.term
    last = victim.core.log.last_index
    forged_line = chat.encode_command(
        chat.ChatMessage("bob", "FORGED: bob says hi", 1_800_000_000_000)
    )
    leave = chat.encode_command(chat.Leave(1))
    configuration = Configuration(voters=frozenset({mallory.node_id}))
    # A time that once crashed every display (year 292278994), as mallory's own line.
    crash_time = packer().pack([3, 0, 0, "mallory", "FORGED time", 2**63 - 1, False, None])
    forged_entry = Entry(last + 1, HUGE_TERM, EntryKind.NORMAL, forged_line, bob.node_id, 99)
    return [
        ForwardProposal(mallory.node_id, term, bob.node_id, 10**15, forged_line),
        ForwardProposal(mallory.node_id, term, bob.node_id, 10**15 + 1, leave),
        ForwardProposal(mallory.node_id, term, mallory.node_id, 10**15 + 2, crash_time),
        InstallSnapshot(
            mallory.node_id,
            HUGE_TERM,
            last + 5,
            HUGE_TERM,
            configuration,
            0,
            b"FORGED HISTORY",
            True,
        ),
        AppendEntries(
            mallory.node_id, HUGE_TERM, last, victim.core.log.last_term, (forged_entry,), last + 1
        ),
        AppendEntries(
            mallory.node_id, term, last, victim.core.log.last_term, (forged_entry,), last + 1
        ),
        RequestVote(mallory.node_id, HUGE_TERM, 10**9, HUGE_TERM, False, True),
        TimeoutNow(mallory.node_id, term),
        *(
            InstallSnapshot(
                mallory.node_id,
                HUGE_TERM,
                last + 7,
                HUGE_TERM,
                configuration,
                k * CHUNK_BYTES,
                b"x" * CHUNK_BYTES,
                False,
            )
            for k in range(SNAPSHOT_CHUNKS)
        ),
    ]


def counts(members: list[Node]) -> tuple[int, int]:
    """(messages the cores refused for the sender's role, messages the nodes dropped as
    sent in another node's name), summed over ``members``."""
    refused = sum(node.core.status().messages_refused for node in members)
    dropped = sum(node.status().counters["messages_dropped"] for node in members)
    return refused, dropped


def unaffected(members: list[Node], members_ids: set[str]) -> None:
    for node in members:
        assert not node.stopped
        texts = [message.text for message in node.history()]
        assert not [text for text in texts if "FORGED" in text], node.nick
        status = node.status()
        assert members_ids <= set(status.voters), f"{node.nick}: a member was removed"
        assert status.term < HUGE_TERM and status.leader in members_ids | {None}


async def test_every_attack_is_refused_and_counted(
    members: list[Node], server, passphrase: str | None, webrtc: str
) -> None:
    alice, bob = members
    for node in members:
        node.send_chat(f"{node.nick} before")
    await wait_until(lambda: all(len(n.history()) == 2 for n in members), WAIT_S, "two lines")
    await wait_until(lambda: alice.status().leader, WAIT_S, "a leader")
    ids = {alice.node_id, bob.node_id}

    mallory = Mallory(server.url, passphrase, engine_of(webrtc, 2))
    await mallory.start()
    try:
        await wait_until(lambda: ids <= mallory.open, WAIT_S, "mallory linked to both")
        cluster = alice.cluster_gate.cluster
        for node in members:  # claim to belong to the channel's cluster
            mallory.send(node.node_id, hello(mallory.node_id, cluster))
        for phase in ("not yet a member", "a member"):
            if phase == "a member":  # anyone who links may join a public channel
                await wait_until(
                    lambda: mallory.node_id in alice.core.configuration.members,
                    WAIT_S,
                    "mallory added",
                )
            before = counts(members)
            mallory.not_sent.clear()
            for victim in members:
                for message in attacks(mallory, victim, bob):
                    mallory.send(victim.node_id, message)
            # Per victim, by the node: 2 forwards in bob's name, and an append whose entry
            # is of another term than the message (malformed); by the core: the snapshot,
            # the other append, the vote request, the hand-over and every chunk (of what
            # the mesh took: it refuses to queue more than a link can hold).
            expected = (
                before[0] + 2 * (4 + SNAPSHOT_CHUNKS) - len(mallory.not_sent),
                before[1] + 2 * 3,
            )
            await wait_until(
                lambda expected=expected: all(
                    a >= b for a, b in zip(counts(members), expected, strict=True)
                ),
                WAIT_S,
                f"every attack refused while mallory is {phase}",
                details=lambda expected=expected: (
                    f"refused, dropped: {counts(members)} of {expected};"
                    f" not sent {len(mallory.not_sent)};"
                    f" received {[n.core.status().messages_received for n in members]};"
                    f" gate {[n.cluster_gate.dropped for n in members]}"
                ),
            )
            unaffected(members, ids)

        alice.send_chat("after the attacks")
        await wait_until(
            lambda: all(
                [m.text for m in n.history()][-1:] == ["after the attacks"] for n in members
            ),
            WAIT_S,
            "the chat going on",
        )
        unaffected(members, ids)
        assert all(node.chat.invalid_commands >= 1 for node in members)  # the bad time
    finally:
        await mallory.close()
