"""Two members and a witness, replayed deterministically: the channel a witness is for."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from raft_utils import Cluster, normal_entries

from raftchat.raft import (
    AppendEntries,
    EntryKind,
    InstallSnapshot,
    RaftCore,
    Reason,
    RequestResult,
    RequestStatus,
    Role,
    TimeoutNow,
    decode_configuration,
)
from raftchat.raft import core as core_module
from raftchat.raft.progress import Progress


def pair(**overrides: int | bool) -> Cluster:
    """Members a (the leader) and b, and the witness w, every entry applied everywhere."""
    cluster = Cluster("ab", **overrides)
    cluster.add_witness_node("w")
    cluster.change(lambda core: core.add_witness("w"))
    cluster.tick(3)  # the first heartbeats reach the witness
    assert cluster.leader() == "a"
    assert cluster.witness("w").last_index == cluster.core("a").log.last_index
    return cluster


def wait_for_leader(cluster: Cluster, node_id: str, max_ticks: int = 100) -> int:
    """Tick until ``node_id`` leads; the ticks it took (AssertionError if it never does)."""
    for ticks in range(max_ticks):
        if cluster.leader() == node_id:
            return ticks
        cluster.tick()
    raise AssertionError(f"{node_id} did not become leader within {max_ticks} ticks")


def commit_change(
    cluster: Cluster,
    leader: str,
    change: Callable[[RaftCore], RequestResult],
    max_ticks: int = 100,
) -> None:
    """Have ``leader`` make ``change`` and commit it (retrying while it is refused)."""
    for _ in range(max_ticks):
        core = cluster.core(leader)
        if change(core).ok:
            index = core.log.last_index
            for _ in range(max_ticks):
                cluster.tick()
                if cluster.core(leader).log.commit >= index:
                    return
            raise AssertionError("the change never committed")
        cluster.process(leader)
        cluster.tick()
    raise AssertionError("the change was refused throughout")


def lag_follower(cluster: Cluster) -> None:
    """Entries from a stop reaching b (b stays silent but is not presumed dead yet)."""
    cluster.drop_rules.append(lambda s, t, m: (s, t) == ("a", "b") and isinstance(m, AppendEntries))


# --- the headline: either member dies ---------------------------------------------------


@pytest.mark.parametrize("victim", ["a", "b"])
def test_the_survivor_leads_with_the_witness_and_removes_the_dead_member(victim):
    cluster = pair()
    for i in range(5):
        cluster.propose("a", b"m%d" % i)
    cluster.deliver_all()
    survivor = "b" if victim == "a" else "a"
    cluster.crash(victim)
    ticks = wait_for_leader(cluster, survivor)
    assert ticks <= 3 * 10
    commit_change(cluster, survivor, lambda core: core.remove(victim))
    assert cluster.core(survivor).configuration.voters == {survivor, "w"}
    # One member left (odd): the witness leaves too, and the channel goes on alone.
    commit_change(cluster, survivor, lambda core: core.remove_witness("w"))
    assert cluster.core(survivor).configuration.voters == {survivor}
    cluster.propose(survivor, b"alone")
    cluster.tick(2)
    assert b"alone" in normal_entries(cluster.nodes[survivor].applied)
    assert {b"m%d" % i for i in range(5)} <= set(normal_entries(cluster.nodes[survivor].applied))


def test_two_members_without_a_witness_are_stuck_when_one_dies():
    cluster = Cluster("ab")
    cluster.crash("a")
    with pytest.raises(AssertionError):
        wait_for_leader(cluster, "b")


# --- what the witness gets ----------------------------------------------------------------


def test_the_witness_gets_entries_without_their_data_but_configurations():
    cluster = pair()
    cluster.propose("a", b"secret", client_id="c1", serial=1)
    cluster.tick(3)
    appends = [m for m in cluster.witnesses["w"].received if isinstance(m, AppendEntries)]
    entries = [entry for message in appends for entry in message.entries]
    assert entries, "the witness got no entries"
    assert all(not e.client_id and not e.serial for e in entries)
    assert all(not e.data for e in entries if e.kind != EntryKind.CONFIG)
    configurations = [e for e in entries if e.kind == EntryKind.CONFIG]
    assert configurations and all(decode_configuration(e.data) for e in configurations)
    assert cluster.witness("w").last_index == cluster.core("a").log.last_index
    assert cluster.witness("w").configuration == cluster.core("a").configuration
    assert b"secret" in normal_entries(cluster.nodes["b"].applied)


def test_a_lagging_witness_gets_the_snapshot_as_metadata_only():
    cluster = pair()
    cluster.isolate("w")
    for i in range(6):
        cluster.propose("a", b"m%d" % i)
    cluster.tick(2)
    leader = cluster.core("a")
    leader.compact(leader.log.applied, cluster.nodes["a"].machine.snapshot())
    cluster.process("a")
    cluster.heal()
    cluster.tick(6)
    snapshots = [m for m in cluster.witnesses["w"].received if isinstance(m, InstallSnapshot)]
    assert snapshots and all(not m.data and m.done for m in snapshots)
    witness = cluster.witness("w")
    assert witness.snapshot.index == leader.log.snapshot_index
    assert witness.last_index == leader.log.last_index


def test_the_witness_gets_no_entry_the_live_member_lacks():
    cluster = pair()
    lag_follower(cluster)
    for i in range(4):
        cluster.propose("a", b"m%d" % i)
    cluster.tick(4, nodes="a")
    b_last = cluster.core("b").log.last_index
    assert cluster.core("a").log.last_index > b_last
    assert cluster.witness("w").last_index <= b_last


def _survivor_wins_after_its_leader_dies_while_it_lags(lag_ticks: int) -> None:
    cluster = pair()
    lag_follower(cluster)
    for i in range(4):
        cluster.propose("a", b"m%d" % i)
    cluster.tick(lag_ticks, nodes="a")  # a CheckQuorum round may end: b still counts
    cluster.crash("a")
    cluster.heal()
    wait_for_leader(cluster, "b")


@pytest.mark.parametrize("lag_ticks", [1, 10])
def test_a_lagging_survivor_still_wins_the_witness_vote(lag_ticks):
    _survivor_wins_after_its_leader_dies_while_it_lags(lag_ticks)


def test_without_the_send_limit_a_lagging_survivor_cannot_win(monkeypatch):
    """Sending the witness everything the leader stored puts it ahead of b: when the
    leader dies, b can never get its vote."""
    monkeypatch.setattr(core_module, "witness_send_limit", lambda leader, stored, *_: stored)
    with pytest.raises(AssertionError, match="did not become leader"):
        _survivor_wins_after_its_leader_dies_while_it_lags(1)


def test_without_a_round_of_grace_the_witness_passes_a_member_at_a_round_end(monkeypatch):
    """A member is presumed dead only after a whole silent CheckQuorum round; counting only
    the current round would, at every round's end, let the witness run ahead."""
    monkeypatch.setattr(Progress, "lately_active", property(lambda p: p.recent_active))
    with pytest.raises(AssertionError, match="did not become leader"):
        _survivor_wins_after_its_leader_dies_while_it_lags(10)


def test_with_the_member_dead_the_witness_gets_everything_and_the_leader_commits():
    cluster = pair()
    cluster.crash("b")
    cluster.propose("a", b"after b died")
    cluster.tick(1)
    assert cluster.core("a").log.commit < cluster.core("a").log.last_index  # b may be alive
    for _ in range(30):
        cluster.tick()
        if b"after b died" in normal_entries(cluster.nodes["a"].applied):
            break
    else:
        raise AssertionError("the leader never committed with the witness's vote")
    assert cluster.core("a").role is Role.LEADER
    commit_change(cluster, "a", lambda core: core.remove("b"))
    assert cluster.core("a").configuration.voters == {"a", "w"}


def test_a_leader_leaving_hands_over_to_the_member_never_to_the_witness():
    cluster = pair()
    commit_change(cluster, "a", lambda core: core.remove("a"))
    wait_for_leader(cluster, "b")
    assert not any(isinstance(m, TimeoutNow) for m in cluster.witnesses["w"].received)
    assert cluster.core("b").configuration.voters == {"b", "w"}


# --- partitions and restarts --------------------------------------------------------------


def test_a_partitioned_leader_loses_to_the_member_the_witness_can_reach():
    cluster = pair()
    cluster.partition("a", "bw")
    stale = cluster.propose("a", b"stale")
    assert stale.status is RequestStatus.APPENDED
    wait_for_leader(cluster, "b")
    cluster.propose("b", b"fresh")
    for _ in range(20):
        cluster.tick()
    assert cluster.core("a").role is not Role.LEADER  # CheckQuorum: it heard no quorum
    cluster.heal()
    cluster.settle()
    for node in "ab":
        applied = normal_entries(cluster.nodes[node].applied)
        assert b"stale" not in applied and b"fresh" in applied


def test_a_witness_restarted_from_storage_keeps_its_vote_and_log():
    cluster = pair()
    cluster.propose("a", b"x")
    cluster.tick(2)
    before = cluster.witness("w").state()
    cluster.crash("w")
    cluster.restart("w")
    assert cluster.witness("w").state() == before
    cluster.crash("a")
    wait_for_leader(cluster, "b")


# --- membership changes --------------------------------------------------------------------


def test_witness_changes_follow_the_rules_of_every_change():
    cluster = pair()
    leader = cluster.core("a")
    assert leader.add_learner("w").error == Reason.ALREADY_MEMBER.format(node="w", kind="witness")
    assert leader.remove_witness("b").error == Reason.NOT_A_WITNESS.format(node="b")
    assert leader.transfer_leadership("w").error == Reason.WITNESS_CANNOT_LEAD.format(node="w")
    assert leader.add_learner("c").ok
    pending = leader.remove_witness("w")
    assert pending.error == Reason.CHANGE_PENDING.format(index=leader.log.last_index)
    cluster.process("a")


def test_no_witness_joins_before_a_new_leader_committed_an_entry_of_its_term():
    cluster = Cluster("ab")
    cluster.drop_rules.append(lambda s, t, m: s == "b" and isinstance(m, AppendEntries))
    cluster.core("a").transfer_leadership("b")
    cluster.process("a")
    cluster.deliver_all()
    assert cluster.leader() == "b"
    assert cluster.core("b").add_witness("w").error == Reason.NO_OWN_TERM_COMMIT


def test_the_last_member_voter_cannot_leave_a_witness_alone():
    cluster = pair()
    commit_change(cluster, "a", lambda core: core.remove("b"))
    assert cluster.core("a").remove("a").error == Reason.LAST_VOTER.format(node="a")
