"""The signaling server's witness: its store, its host, the frames that reach it, and the
node's side of the link (batching, checking what comes back)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from signaling_utils import RawPeer, signed_hello
from support.waiting import wait_until

from raftchat.net.identity import NodeIdentity
from raftchat.net.signaling.protocol import (
    MAX_WITNESS_MESSAGES,
    ErrorCode,
    ProtocolError,
    WitnessRelay,
    encode_witness_relay,
    parse_client_frame,
    parse_server_frame,
)
from raftchat.net.signaling.server import start_server
from raftchat.node.witness_link import WitnessLink, witness_allowed
from raftchat.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterIdentity,
    Entry,
    EntryKind,
    RequestVote,
    RequestVoteResponse,
    decode,
    encode,
)
from raftchat.raft.witness import LogPosition, WitnessHardState, WitnessReady
from raftchat.witness import WitnessHost, WitnessHostSettings, WitnessKey, WitnessStore

CLUSTER = ClusterIdentity(1_700_000_000_000, "ab" * 16)
ALICE_KEY = NodeIdentity.from_seed(bytes(32))
ALICE = ALICE_KEY.node_id
BOB = "bob-0123456789abcdef00"


def relay(*messages: object, cluster: ClusterIdentity = CLUSTER) -> WitnessRelay:
    return WitnessRelay(
        cluster.cluster_id,
        cluster.founded_ms,
        tuple(encode(m) for m in messages),  # type: ignore[arg-type]
    )


def vote_request(sender: str, term: int, last_index: int = 0, last_term: int = 0) -> RequestVote:
    return RequestVote(sender, term, last_index, last_term, False, False)


class Outbox:
    """The server's side of :meth:`WitnessHost.attach`: what the witness sent whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object]] = []

    def __call__(self, channel: str, peer: str, frame: WitnessRelay) -> bool:
        for data in frame.messages:
            self.sent.append((channel, peer, decode(data)))
        return True


@pytest.fixture
async def host(tmp_path: Path):
    witness = WitnessHost.open(tmp_path / "w", WitnessHostSettings(tick_s=3600))
    outbox = Outbox()
    witness.attach(outbox)
    witness.outbox = outbox  # type: ignore[attr-defined]
    yield witness
    await witness.close()


# --- the store ---------------------------------------------------------------------------


def test_store_keeps_identity_and_state_across_reopening(tmp_path: Path) -> None:
    store = WitnessStore(tmp_path)
    key = WitnessKey("room", CLUSTER.cluster_id, CLUSTER.founded_ms)
    store.save(
        key,
        WitnessReady(
            entries=[LogPosition(1, 1), LogPosition(2, 1), LogPosition(3, 2)],
            hard_state=WitnessHardState(2, ALICE),
        ),
    )
    store.commit()
    store.save(key, WitnessReady(truncate_from=3, entries=[LogPosition(3, 3)]))
    store.save(key, WitnessReady(compacted=LogPosition(1, 1)))
    store.commit()
    witness_id = store.witness_id
    store.close()

    again = WitnessStore(tmp_path)
    assert again.witness_id == witness_id and witness_id.startswith("witness-")
    state = again.load(key)
    assert state is not None
    assert state.hard_state == WitnessHardState(2, ALICE)
    assert state.snapshot == LogPosition(1, 1)
    assert list(state.entries) == [LogPosition(2, 1), LogPosition(3, 3)]
    assert again.load(WitnessKey("other", CLUSTER.cluster_id, 0)) is None
    assert (tmp_path.stat().st_mode & 0o777) == 0o700
    again.close()


def test_an_uncommitted_save_is_not_kept(tmp_path: Path) -> None:
    store = WitnessStore(tmp_path)
    key = WitnessKey("room", CLUSTER.cluster_id, CLUSTER.founded_ms)
    store.save(key, WitnessReady(hard_state=WitnessHardState(5, ALICE)))
    store.close()  # a crash before the commit
    assert WitnessStore(tmp_path).load(key) is None


# --- the host ----------------------------------------------------------------------------


async def test_a_vote_survives_a_restart_of_the_witness(tmp_path: Path) -> None:
    first = WitnessHost.open(tmp_path / "w", WitnessHostSettings(tick_s=3600))
    outbox = Outbox()
    first.attach(outbox)
    assert first.receive("room", ALICE, relay(vote_request(ALICE, 3))) is None
    assert outbox.sent == [("room", ALICE, RequestVoteResponse(first.witness_id, 3, True))]
    await first.close()

    second = WitnessHost.open(tmp_path / "w", WitnessHostSettings(tick_s=3600))
    outbox = Outbox()
    second.attach(outbox)
    second.receive("room", BOB, relay(vote_request(BOB, 3)))
    # Same term, already voted for alice: a witness that forgot would fork the channel.
    assert outbox.sent == [("room", BOB, RequestVoteResponse(second.witness_id, 3, False))]
    await second.close()


async def test_a_message_in_another_peers_name_is_dropped(host: WitnessHost) -> None:
    host.receive("room", BOB, relay(vote_request(ALICE, 3)))
    assert host.outbox.sent == []  # type: ignore[attr-defined]
    assert host.stats.dropped["spoofed sender"] == 1


async def test_garbage_is_counted_and_the_rest_of_the_frame_still_counts(
    host: WitnessHost,
) -> None:
    frame = WitnessRelay(
        CLUSTER.cluster_id,
        CLUSTER.founded_ms,
        (b"\xc1 not msgpack", encode(vote_request(ALICE, 2))),
    )
    assert host.receive("room", ALICE, frame) is None
    assert host.stats.dropped["malformed"] == 1
    assert len(host.outbox.sent) == 1  # type: ignore[attr-defined]


async def test_entries_are_acknowledged_and_only_positions_kept(host: WitnessHost) -> None:
    entries = (Entry(1, 1, EntryKind.CONFIG), Entry(2, 1, EntryKind.NORMAL))
    host.receive("room", ALICE, relay(AppendEntries(ALICE, 1, 0, 0, entries, 2)))
    [(_, to, answer)] = host.outbox.sent  # type: ignore[attr-defined]
    assert to == ALICE and isinstance(answer, AppendEntriesResponse)
    assert answer.success and answer.match_index == 2
    assert host.store.load(WitnessKey("room", CLUSTER.cluster_id, 0)) is not None


async def test_clusters_per_channel_are_bounded_and_none_is_evicted(tmp_path: Path) -> None:
    host = WitnessHost.open(tmp_path / "w", WitnessHostSettings(max_clusters_per_channel=2))
    host.attach(Outbox())
    clusters = [ClusterIdentity(1, secrets.token_hex(16)) for _ in range(3)]
    for cluster in clusters[:2]:
        assert host.receive("room", ALICE, relay(vote_request(ALICE, 1), cluster=cluster)) is None
    refusal = host.receive("room", ALICE, relay(vote_request(ALICE, 1), cluster=clusters[2]))
    assert refusal is not None and "2 clusters" in refusal
    # The first ones keep their votes and are still served.
    assert host.receive("room", ALICE, relay(vote_request(ALICE, 2), cluster=clusters[0])) is None
    assert host.receive("other", ALICE, relay(vote_request(ALICE, 1), cluster=clusters[2])) is None
    await host.close()


async def test_the_same_cluster_id_with_another_founding_time_is_refused(
    host: WitnessHost,
) -> None:
    host.receive("room", ALICE, relay(vote_request(ALICE, 1)))
    impostor = ClusterIdentity(CLUSTER.founded_ms + 1, CLUSTER.cluster_id)
    assert host.receive("room", ALICE, relay(vote_request(ALICE, 2), cluster=impostor))


# --- the frames and the server -----------------------------------------------------------


def test_witness_frames_round_trip_and_bad_ones_are_refused() -> None:
    frame = relay(vote_request(ALICE, 1))
    text = encode_witness_relay(frame)
    assert parse_client_frame(text) == frame
    assert parse_server_frame(text) == frame
    good = {"type": "witness", "cluster": "ab" * 16, "founded_ms": 1, "messages": ["AA=="]}
    bad_values = [
        {"cluster": "AB" * 16},
        {"cluster": "ab" * 15},
        {"founded_ms": -1},
        {"founded_ms": 1.5},
        {"founded_ms": True},
        {"messages": []},
        {"messages": ["not base64!"]},
        {"messages": [7]},
        {"messages": ["AA=="] * (MAX_WITNESS_MESSAGES + 1)},
    ]
    for change in bad_values:
        with pytest.raises(ProtocolError) as error:
            parse_client_frame(json.dumps({**good, **change}))
        assert error.value.code == ErrorCode.BAD_FIELD, change


async def test_the_server_names_its_witness_and_relays_both_ways(tmp_path: Path) -> None:
    witness = WitnessHost.open(tmp_path / "w")
    server = await start_server("127.0.0.1", 0, witness=witness)
    try:
        peer, welcome = await RawPeer.join(server.url, "room", ALICE_KEY)
        assert welcome["witness"] == witness.witness_id
        await peer.send_str(encode_witness_relay(relay(vote_request(ALICE, 4))))
        answer = parse_server_frame(json.dumps(await peer.recv()))
        assert isinstance(answer, WitnessRelay)
        assert decode(answer.messages[0]) == RequestVoteResponse(witness.witness_id, 4, True)

        impostor = await RawPeer.connect(server.url, "room")
        hello = signed_hello(impostor.identity, impostor.nonce, "room", peer_id=witness.witness_id)
        await impostor.send_json(hello)
        await impostor.expect_error(ErrorCode.ID_TAKEN)
        await impostor.close()
        await peer.close()
    finally:
        await server.close()


async def test_a_server_without_witness_says_so(tmp_path: Path) -> None:
    server = await start_server("127.0.0.1", 0)
    try:
        peer, welcome = await RawPeer.join(server.url, "room", ALICE_KEY)
        assert "witness" not in welcome
        await peer.send_str(encode_witness_relay(relay(vote_request(ALICE, 4))))
        await peer.expect_error(ErrorCode.WITNESS_UNAVAILABLE)
        await peer.close()
    finally:
        await server.close()


# --- the node's side ---------------------------------------------------------------------


class FakeSignaling:
    def __init__(self, witness: str | None = "witness-00000000000000aa") -> None:
        self.witness = witness
        self.frames: list[WitnessRelay] = []
        self.connected = True

    def send(self, frame: WitnessRelay) -> bool:
        if self.connected:
            self.frames.append(frame)
        return self.connected


def link_to(signaling: FakeSignaling, allowed: bool = True) -> WitnessLink:
    return WitnessLink(lambda: signaling.witness, signaling.send, allowed=allowed)


async def test_messages_to_the_witness_are_batched_into_few_frames() -> None:
    signaling = FakeSignaling()
    link = link_to(signaling)
    for term in range(1, 301):
        link.send(CLUSTER, vote_request(ALICE, term))
    assert signaling.frames == []  # within the interval: nothing yet
    await wait_until(lambda: sum(len(f.messages) for f in signaling.frames) == 300, 5, "a flush")
    assert [len(frame.messages) for frame in signaling.frames] == [MAX_WITNESS_MESSAGES, 44]
    terms = [decode(data).term for frame in signaling.frames for data in frame.messages]
    assert terms == list(range(1, 301))


def test_answers_count_only_from_the_witness_for_this_cluster() -> None:
    signaling = FakeSignaling()
    link = link_to(signaling)
    witness = signaling.witness
    assert witness is not None
    good = RequestVoteResponse(witness, 2, True)
    frame = relay(good, RequestVoteResponse(BOB, 2, True))
    assert link.receive(frame, CLUSTER) == [good]
    assert link.dropped["not from the witness"] == 1
    other = ClusterIdentity(CLUSTER.founded_ms, "cd" * 16)
    assert link.receive(frame, other) == []
    assert link.dropped["another cluster"] == 2


def test_a_private_channel_uses_the_witness_only_when_trusting_the_server() -> None:
    assert witness_allowed(private_channel=False, trust_server=False)
    assert not witness_allowed(private_channel=True, trust_server=False)
    assert witness_allowed(private_channel=True, trust_server=True)
    signaling = FakeSignaling()
    link = link_to(signaling, allowed=False)
    assert link.witness_id is None
    assert link.receive(relay(RequestVoteResponse(signaling.witness or "", 2, True)), CLUSTER) == []
