"""The signaling server's witness: its store, its host, the frames that reach it, and the
node's side of the link (batching, checking what comes back)."""

from __future__ import annotations

import json
import secrets
import sqlite3
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
    Configuration,
    Entry,
    EntryKind,
    RequestVote,
    RequestVoteResponse,
    decode,
    encode,
    encode_configuration,
)
from raftchat.raft.witness import (
    UNKNOWN_CONFIGURATION,
    IndexedConfiguration,
    LogPosition,
    WitnessHardState,
    WitnessReady,
)
from raftchat.witness import (
    WitnessHost,
    WitnessHostSettings,
    WitnessKey,
    WitnessStore,
    WitnessStoreError,
)
from raftchat.witness.store import DATABASE_NAME

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
    store.save(
        key,
        WitnessReady(compacted=LogPosition(1, 1), snapshot_configuration=UNKNOWN_CONFIGURATION),
    )
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


def configuration(*voters: str, witness: str = "w") -> Configuration:
    return Configuration(frozenset({*voters, witness}), witnesses=frozenset({witness}))


def test_store_keeps_configurations_across_reopening(tmp_path: Path) -> None:
    store = WitnessStore(tmp_path)
    key = WitnessKey("room", CLUSTER.cluster_id, CLUSTER.founded_ms)
    first, second, third = configuration("a"), configuration("a", "b"), configuration("b")
    store.save(
        key,
        WitnessReady(
            entries=[LogPosition(i, 1) for i in range(1, 6)],
            configurations=[IndexedConfiguration(1, first), IndexedConfiguration(3, second)],
        ),
    )
    # Entry 5 is replaced by one that changes the configuration; 4 stays.
    store.save(
        key,
        WitnessReady(
            truncate_from=5,
            entries=[LogPosition(5, 2)],
            configurations=[IndexedConfiguration(5, third)],
        ),
    )
    store.save(key, WitnessReady(compacted=LogPosition(2, 1), snapshot_configuration=first))
    store.commit()
    store.close()

    again = WitnessStore(tmp_path)
    state = again.load(key)
    assert state is not None
    assert state.snapshot == LogPosition(2, 1)
    assert state.snapshot_configuration == first
    assert list(state.configurations) == [
        IndexedConfiguration(3, second),
        IndexedConfiguration(5, third),
    ]
    # A truncation drops the configurations it cuts away; a snapshot drops them all.
    again.save(key, WitnessReady(truncate_from=4, entries=[LogPosition(4, 3)]))
    again.commit()
    assert list(again.load(key).configurations) == [IndexedConfiguration(3, second)]  # type: ignore[union-attr]
    again.save(key, WitnessReady(snapshot=LogPosition(9, 3), snapshot_configuration=third))
    again.commit()
    state = again.load(key)
    assert state is not None
    assert (state.snapshot, state.snapshot_configuration) == (LogPosition(9, 3), third)
    assert (list(state.entries), list(state.configurations)) == ([], [])
    again.close()


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE witness (
    channel TEXT NOT NULL, cluster_id TEXT NOT NULL, founded_ms INTEGER NOT NULL,
    term INTEGER NOT NULL, vote TEXT NOT NULL, snapshot_index INTEGER NOT NULL,
    snapshot_term INTEGER NOT NULL, PRIMARY KEY (channel, cluster_id)
);
CREATE TABLE positions (
    channel TEXT NOT NULL, cluster_id TEXT NOT NULL, idx INTEGER NOT NULL,
    term INTEGER NOT NULL, PRIMARY KEY (channel, cluster_id, idx)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1'), ('witness_id', 'witness-00000000000000aa');
"""


def test_a_file_of_schema_1_keeps_its_votes_and_knows_no_configuration(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.executescript(SCHEMA_1)
    db.execute(
        "INSERT INTO witness VALUES ('room', ?, ?, 4, ?, 1, 1)",
        (CLUSTER.cluster_id, CLUSTER.founded_ms, ALICE),
    )
    db.executemany(
        "INSERT INTO positions VALUES ('room', ?, ?, ?)",
        [(CLUSTER.cluster_id, 2, 1), (CLUSTER.cluster_id, 3, 4)],
    )
    db.commit()
    db.close()

    store = WitnessStore(tmp_path)
    assert store.witness_id == "witness-00000000000000aa"
    key = WitnessKey("room", CLUSTER.cluster_id, CLUSTER.founded_ms)
    state = store.load(key)
    assert state is not None
    assert state.hard_state == WitnessHardState(4, ALICE)
    assert (state.snapshot, list(state.entries)) == (LogPosition(1, 1), [(2, 1), (3, 4)])
    assert state.snapshot_configuration == UNKNOWN_CONFIGURATION
    assert list(state.configurations) == []
    store.save(
        key,
        WitnessReady(
            entries=[LogPosition(4, 4)],
            configurations=[IndexedConfiguration(4, configuration("a"))],
        ),
    )
    store.commit()
    store.close()
    again = WitnessStore(tmp_path)
    state = again.load(key)
    assert state is not None and list(state.configurations) == [
        IndexedConfiguration(4, configuration("a"))
    ]
    again.close()


def test_a_file_of_an_unknown_schema_is_refused_with_a_way_forward(tmp_path: Path) -> None:
    WitnessStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(WitnessStoreError, match=r"schema 3.*move the file away"):
        WitnessStore(tmp_path)


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


async def test_the_witness_refuses_a_non_member_and_counts_it(tmp_path: Path) -> None:
    """Any peer of the channel can talk to the witness; once the witness knows its
    configuration, one that is not a member changes nothing, after a restart too."""
    mallory = "mallory-0123456789abcd"
    settings = WitnessHostSettings(tick_s=3600)
    host = WitnessHost.open(tmp_path / "w", settings)
    outbox = Outbox()
    host.attach(outbox)
    pair = Configuration(
        frozenset({ALICE, BOB, host.witness_id}), witnesses=frozenset({host.witness_id})
    )
    config = Entry(1, 2, EntryKind.CONFIG, encode_configuration(pair))
    host.receive("room", ALICE, relay(AppendEntries(ALICE, 2, 0, 0, (config,), 1)))
    core = host.core("room", CLUSTER.cluster_id)
    assert core is not None and core.configuration == pair
    forged = AppendEntries(mallory, 10**9, 1, 2, (Entry(2, 10**9, EntryKind.NORMAL),), 2)
    outbox.sent.clear()
    assert host.receive("room", mallory, relay(forged, vote_request(mallory, 10**9))) is None
    assert outbox.sent == []
    assert host.stats.dropped["refused: not a member"] == 2
    assert (core.term, core.last_index) == (2, 1)
    await host.close()

    again = WitnessHost.open(tmp_path / "w", settings)
    again.attach(outbox)
    again.receive("room", mallory, relay(forged))
    core = again.core("room", CLUSTER.cluster_id)
    assert core is not None and core.configuration == pair
    assert (core.term, core.last_index) == (2, 1)
    assert again.stats.dropped["refused: not a member"] == 1
    # The leader is still answered in its own term.
    again.receive("room", ALICE, relay(AppendEntries(ALICE, 2, 1, 2, (), 1)))
    assert outbox.sent == [("room", ALICE, AppendEntriesResponse(again.witness_id, 2, True, 1))]
    await again.close()


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
