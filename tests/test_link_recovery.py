"""Links recover quickly from a peer that was killed and restarted, paused, or partitioned.

Real peers on loopback through the in-memory relay, on each engine and on a mix of both
(the ``webrtc`` fixture). A "killed" peer is silenced
(its mesh sends nothing, hears nothing, and its connections stay up, so the other side
is told nothing), and a fresh mesh with the same id takes its place, as a restarted
process would. ``connect_timeout`` is long (15 s), so waiting for it can never pass for
recovery: each recovery must finish within ``RECOVERY_BOUND``, a correctness bound on
the recovery path, not a speed measurement.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc import RTCPeerConnection
from mesh_utils import (
    CLOSE_WAIT_S,
    TEST_CONFIG,
    FakeRelay,
    Peer,
    all_open,
    block,
    engine_of,
    ids,
    make_peer,
    pending_tasks,
    silence,
    unblock,
    wake,
    with_settings,
)
from support.waiting import wait_until

from raftchat.net import LinkState, MeshConfig

CONFIG = with_settings(TEST_CONFIG, connect_timeout=15.0, dead_after=1.0)
RECOVERY_BOUND = 5.0
"Seconds a link may take to come back; well below CONFIG.connect_timeout."
RESTART_CONFIG = with_settings(CONFIG, dead_after=3 * RECOVERY_BOUND)
"For restarts: noticing the silence of the old process cannot be what recovers the link."

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def net(webrtc):
    relay = FakeRelay()
    peers: list[Peer] = []
    engines: dict[str, str] = {}

    def add(peer_id: str, config: MeshConfig = CONFIG) -> Peer:
        # A restarted peer (same id) runs the engine it ran before.
        engine = engines.setdefault(peer_id, engine_of(webrtc, len(engines)))
        peer = make_peer(relay, peer_id, config, webrtc=engine)
        peers.append(peer)
        return peer

    add.relay = relay  # type: ignore[attr-defined]
    yield add
    for peer in peers:
        await peer.mesh.close()
    await wait_until(lambda: not pending_tasks(), CLOSE_WAIT_S, "tasks to finish after close")


async def linked(net, *ids: str, config: MeshConfig = CONFIG) -> list[Peer]:
    peers = [net(peer_id, config) for peer_id in ids]
    await wait_until(lambda: all_open(peers), 10, "all links open")
    return peers


async def assert_talk(sender: Peer, receiver: Peer, text: bytes) -> None:
    assert sender.mesh.send(receiver.peer_id, text)
    await wait_until(lambda: text in receiver.received[sender.peer_id], 5, f"{text!r} to arrive")


def session_of(peer: Peer, other: str) -> str | None:
    return peer.mesh._links[other]._session


# --- killed and restarted ---------------------------------------------------------------


async def test_restarted_answerer_gets_a_new_link_while_the_old_one_looks_open(net):
    a, old_b = await linked(net, ids.a, ids.b, config=RESTART_CONFIG)
    silence(old_b)
    new_b = net(ids.b, RESTART_CONFIG)  # the restarted process: same id, nothing remembered
    await wait_until(lambda: all_open([a, new_b]), RECOVERY_BOUND, "the link to the new b")
    assert a.mesh.links()[ids.b].connects == 2
    assert session_of(a, ids.b) == session_of(new_b, ids.a)
    await assert_talk(a, new_b, b"hello new b")
    await assert_talk(new_b, a, b"hello a")


async def test_offer_lost_to_a_dead_process_is_made_again_for_the_restarted_one(net):
    a, old_b = await linked(net, ids.a, ids.b, config=RESTART_CONFIG)
    silence(old_b)
    offers_before = sum(payload["type"] == "offer" for _, payload in a.mesh._signaling.sent)
    a.mesh.reset_link(ids.b)  # e.g. Raft noticed the silence first
    await wait_until(
        lambda: sum(p["type"] == "offer" for _, p in a.mesh._signaling.sent) > offers_before,
        5,
        "the offer to the dead process",
    )
    new_b = net(ids.b, RESTART_CONFIG)
    await wait_until(lambda: all_open([a, new_b]), RECOVERY_BOUND, "the link to the new b")
    await assert_talk(a, new_b, b"after the lost offer")


async def test_restarted_offerer_replaces_the_answerers_old_link(net):
    old_a, b = await linked(net, ids.a, ids.b, config=RESTART_CONFIG)
    old_session = session_of(b, ids.a)
    silence(old_a)
    new_a = net(ids.a, RESTART_CONFIG)
    await wait_until(lambda: all_open([new_a, b]), RECOVERY_BOUND, "the link to the new a")
    assert session_of(b, ids.a) != old_session
    await assert_talk(b, new_a, b"hello new a")


# --- silence, pause, partition ----------------------------------------------------------


def retries_after_failing(peer: Peer, other: str) -> int:
    """How many connection attempts ``peer`` started towards ``other`` after a failure."""
    states = [info.state for p, info in peer.changes if p == other]
    return sum(
        1
        for before, after in itertools.pairwise(states)
        if before == LinkState.FAILED and after == LinkState.CONNECTING
    )


async def test_silent_peer_is_declared_dead_and_the_link_retried(net):
    a, b = await linked(net, ids.a, ids.b)
    silence(b)
    await wait_until(lambda: a.state_of(ids.b) != LinkState.OPEN, 5, "a to give up on b")
    assert a.mesh.links()[ids.b].last_error == f"nothing received for {CONFIG.dead_after:g} s"
    await wait_until(lambda: retries_after_failing(a, ids.b) >= 1, 5, "a reconnection attempt")


async def test_paused_peer_gets_a_fresh_link_after_it_resumes(net):
    a, b = await linked(net, ids.a, ids.b)
    old_session = session_of(a, ids.b)
    net.relay.hold(ids.b)  # a stopped process reads no signal until it resumes
    silence(b)
    await wait_until(lambda: a.state_of(ids.b) != LinkState.OPEN, 5, "a to give up on b")
    net.relay.release(ids.b)
    wake(b)
    await wait_until(lambda: all_open([a, b]), RECOVERY_BOUND, "a fresh link after resuming")
    assert session_of(a, ids.b) == session_of(b, ids.a) != old_session
    await assert_talk(a, b, b"welcome back")
    await assert_talk(b, a, b"thanks")


@pytest.mark.parametrize("paused", [ids.a, ids.b])
async def test_paused_peer_whose_link_was_replaced_converges_after_resuming(net, paused):
    peers = {p.peer_id: p for p in await linked(net, ids.a, ids.b)}
    sleeper = peers[paused]
    other = peers[ids.b if paused == ids.a else ids.a]
    net.relay.hold(paused)
    silence(sleeper)
    # The other side gives up on the old link and tries again while the sleeper is stopped.
    await wait_until(lambda: retries_after_failing(other, paused) >= 1, 5, "a retry")
    net.relay.release(paused)
    wake(sleeper)
    await wait_until(lambda: all_open([other, sleeper]), RECOVERY_BOUND, "a fresh link")
    await assert_talk(sleeper, other, b"resumed")


async def test_partition_kills_the_link_and_healing_brings_it_back(net):
    a, b = await linked(net, ids.a, ids.b)
    for peer, far in ((a, ids.b), (b, ids.a)):
        block(peer.mesh, far)
    await wait_until(lambda: a.state_of(ids.b) != LinkState.OPEN, 5, "a to give up on b")
    opened_before = sum(info.state == LinkState.OPEN for p, info in a.changes if p == ids.b)
    # Attempts during the partition fail (in a real one, ICE would not get through).
    await wait_until(
        lambda: sum(i.state == LinkState.FAILED for p, i in a.changes if p == ids.b) >= 3,
        10,
        "attempts failing during the partition",
    )
    assert sum(info.state == LinkState.OPEN for p, info in a.changes if p == ids.b) == opened_before
    assert a.received[ids.b] == [] and b.received[ids.a] == []
    for peer, far in ((a, ids.b), (b, ids.a)):
        unblock(peer.mesh, far)
    await wait_until(lambda: all_open([a, b]), RECOVERY_BOUND, "the link after healing")
    for info in (a.mesh.links()[ids.b], b.mesh.links()[ids.a]):
        assert info.auth_failures == 0 and info.auth_error is None
    await assert_talk(a, b, b"healed")


async def test_one_sided_partition_also_heals(net):
    a, b = await linked(net, ids.a, ids.b)
    b.mesh.engine.frame_filter = lambda peer, direction: peer == ids.a
    await wait_until(lambda: a.state_of(ids.b) != LinkState.OPEN, 5, "a to give up on b")
    await wait_until(lambda: b.state_of(ids.a) != LinkState.OPEN, 5, "b to give up on a")
    b.mesh.engine.frame_filter = None
    await wait_until(lambda: all_open([a, b]), RECOVERY_BOUND, "the link after healing")
    await assert_talk(b, a, b"healed")


# --- overlapping attempts ---------------------------------------------------------------


def _create_offer_method(engine: str) -> tuple[type, str]:
    """The class and the name of the method a's engine creates its offers with."""
    if engine == "wrtc":
        import webrtc

        return webrtc.RTCPeerConnection, "create_offer"
    return RTCPeerConnection, "createOffer"


async def test_reset_during_a_negotiation_replaces_it_without_failing_the_link(net, monkeypatch):
    a, b = await linked(net, ids.a, ids.b)
    pc_class, method = _create_offer_method(a.mesh.engine.name)
    create_offer = getattr(pc_class, method)
    entered, gate = asyncio.Event(), asyncio.Event()

    async def held_create_offer(pc, *args):
        entered.set()
        await gate.wait()
        return await create_offer(pc, *args)

    monkeypatch.setattr(pc_class, method, held_create_offer)
    changes_before = len(a.changes)
    a.mesh.reset_link(ids.b)
    await asyncio.wait_for(entered.wait(), 5)
    first = a.mesh._links[ids.b]._connection.pc
    monkeypatch.setattr(pc_class, method, create_offer)
    a.mesh.reset_link(ids.b)  # replaces the attempt in the middle of its negotiation

    def first_closed() -> bool:
        state = getattr(first, "signalingState", None) or first.signaling_state
        return state == "closed"

    await wait_until(first_closed, 5, "the first attempt closed")
    gate.set()  # its negotiation goes on, on a closed connection, and fails
    await wait_until(lambda: all_open([a, b]), RECOVERY_BOUND, "the new link")
    states = [info.state for peer, info in a.changes[changes_before:] if peer == ids.b]
    assert LinkState.FAILED not in states, a.mesh.links()[ids.b].last_error
    await assert_talk(a, b, b"one clean reconnection")
