"""The leader appends each client's proposals in order (client id, serial, prev_serial).

A proposal is appended only after the client's previous one (``prev_serial``) or as the
first of a run (``prev_serial`` 0); a serial already in the log is not appended again; a
gap is refused with the client's last serial in the log (``resume_after``).
"""

from __future__ import annotations

from raft_utils import Cluster

from raftchat.raft import ForwardProposal, RaftCore, RequestStatus, Role


def leader_core(cluster: Cluster) -> RaftCore:
    leader = cluster.leader()
    assert leader is not None
    return cluster.core(leader)


def test_local_proposals_in_order_are_appended_and_a_gap_is_refused_with_resume_after():
    cluster = Cluster("a")
    core = cluster.core("a")
    first = core.propose(b"1", "c", 10, 0)
    second = core.propose(b"2", "c", 11, 10)
    assert first.status is second.status is RequestStatus.APPENDED
    gap = core.propose(b"4", "c", 13, 12)  # 12 never arrived
    assert gap.status is RequestStatus.REJECTED
    assert gap.out_of_order and gap.resume_after == 11 and "after 11" in gap.error
    assert core.propose(b"3", "c", 12, 11).status is RequestStatus.APPENDED
    assert core.propose(b"4", "c", 13, 12).status is RequestStatus.APPENDED


def test_serial_already_in_the_log_is_not_appended_again():
    cluster = Cluster("a")
    core = cluster.core("a")
    first = core.propose(b"1", "c", 1, 0)
    core.propose(b"2", "c", 2, 1)
    cluster.process("a")
    last_index = core.log.last_index
    retry = core.propose(b"2", "c", 2, 1)  # the last one, committed: found at its index
    assert retry.status is RequestStatus.APPENDED and retry.index == last_index
    older = core.propose(b"1", "c", 1, 0)  # an older one: somewhere in the log
    assert older.status is RequestStatus.DUPLICATE and older.ok
    assert core.log.last_index == last_index
    assert first.index < last_index


def test_unknown_client_must_start_with_prev_serial_zero_and_a_run_may_jump():
    cluster = Cluster("a")
    core = cluster.core("a")
    lost_first = core.propose(b"2", "new", 2, 1)  # its first proposal never arrived
    assert lost_first.out_of_order and lost_first.resume_after == 0
    assert core.propose(b"1", "new", 1, 0).status is RequestStatus.APPENDED
    # A restarted client starts a new run far above: prev_serial 0 allows the jump.
    assert core.propose(b"r", "new", 1_000, 0).status is RequestStatus.APPENDED
    assert core.propose(b"s", "new", 1_001, 1_000).status is RequestStatus.APPENDED


def test_forwarded_proposal_lost_on_the_way_makes_the_next_one_refused_with_resume_after():
    cluster = Cluster("abc")
    follower = next(n for n in "abc" if n != cluster.leader())
    cluster.propose(follower, b"1", "f", 1)
    cluster.deliver_all()
    dropped = []

    def lose_serial_2(sender, to, message) -> bool:
        if isinstance(message, ForwardProposal) and message.serial == 2:
            dropped.append(message)
            return True
        return False

    cluster.drop_rules.append(lose_serial_2)
    cluster.core(follower).propose(b"2", "f", 2, 1)
    cluster.core(follower).propose(b"3", "f", 3, 2)
    cluster.process(follower)
    cluster.deliver_all()
    assert dropped
    (refused,) = [o for o in cluster.nodes[follower].outcomes if o.serial == 3]
    assert not refused.committed and refused.out_of_order and refused.resume_after == 1
    cluster.drop_rules.clear()
    for serial in (2, 3):  # resent in order
        cluster.core(follower).propose(b"%d" % serial, "f", serial, serial - 1)
    cluster.process(follower)
    cluster.settle()
    applied = [e.serial for e in cluster.nodes[follower].applied if e.client_id == "f"]
    assert applied == [1, 2, 3]


def test_forwarded_duplicate_is_reported_as_such():
    cluster = Cluster("abc")
    follower = next(n for n in "abc" if n != cluster.leader())
    for serial in (1, 2):
        cluster.propose(follower, b"%d" % serial, "f", serial)
    cluster.settle()
    cluster.core(follower).propose(b"1", "f", 1, 0)
    cluster.process(follower)
    cluster.deliver_all()
    outcome = cluster.nodes[follower].outcomes[-1]
    assert outcome.serial == 1 and outcome.duplicate and not outcome.committed


def test_a_restarted_leader_rebuilds_client_serials_from_its_log_and_the_state_machine():
    cluster = Cluster("a")
    core = cluster.core("a")
    for serial in range(1, 4):
        core.propose(b"%d" % serial, "c", serial, serial - 1)
    cluster.process("a")
    harness = cluster.nodes["a"]
    core.compact(core.log.applied, harness.machine.snapshot())
    for serial in (4, 5):
        core.propose(b"%d" % serial, "c", serial, serial - 1)
    cluster.process("a")
    cluster.restart("a")
    cluster.settle()
    restarted = cluster.core("a")
    # Serial 5 is still in the log: known without help.
    assert restarted.propose(b"x", "c", 7, 6).resume_after == 5
    # Compact everything: only the state machine knows the client now.
    restarted.compact(restarted.log.applied, harness.machine.snapshot())
    cluster.process("a")
    cluster.restart("a")
    cluster.settle()
    again = cluster.core("a")
    again.restore_client_serials(cluster.nodes["a"].machine.sessions)
    refused = again.propose(b"x", "c", 7, 6)
    assert refused.out_of_order and refused.resume_after == 5
    assert again.propose(b"6", "c", 6, 5).status is RequestStatus.APPENDED


def test_a_follower_forgets_serials_of_entries_truncated_from_its_log():
    cluster = Cluster("abc")
    old = cluster.leader()
    assert old is not None
    cluster.propose(old, b"1", "c", 1)
    cluster.settle()
    others = [n for n in "abc" if n != old]
    cluster.drop_rules.append(lambda s, t, m: s == old or t == old)
    cluster.core(old).propose(b"2", "c", 2, 1)  # never leaves the isolated leader
    cluster.process(old)
    cluster.tick(40)  # the others elect a leader; the isolated one steps down
    assert cluster.leader() in others and cluster.core(old).role is not Role.LEADER
    cluster.drop_rules.clear()
    cluster.settle()  # the old leader's entry 2 is truncated
    cluster.elect(old)
    # Had serial 2 stayed in its client serials, this would be refused or skipped.
    core = cluster.core(old)
    result = core.propose(b"2", "c", 2, 1)
    assert result.status is RequestStatus.APPENDED and result.index == core.log.last_index
