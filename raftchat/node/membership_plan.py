"""Membership follows presence: which single-server change the leader makes next.

The raft.js WebRTC paper changed the cluster whenever the signaling server
reported a peer joining or leaving. Done naively that is unsafe (two changes
at once) and fragile (a flapping signaling server empties the cluster). The
policy here is pure and conservative:

- one change at a time (the core refuses a second uncommitted one anyway);
- additions before removals, so a member that is replaced never leaves the
  cluster smaller than it has to be;
- newcomers join as learners and are promoted once caught up, while voters
  are fewer than ``max_voters``; the rest stay learners;
- a member is removed when it asked to leave (unless that run of it is over: see
  :func:`leave_is_current`), when presence says it is gone
  (only while the signaling connection is up: an outage is not a departure),
  or when nothing was heard from it for ``member_timeout`` (the paper's open
  question of removing unresponsive nodes without the server's help);
- the leader never removes itself here: a leaving leader first hands over
  leadership, then asks the new leader to remove it;
- a witness (a vote the signaling server holds, see :mod:`raftchat.raft.witness`)
  joins while the member voters are even (2, 4), so that two members survive losing
  one, and leaves once they are odd; it joins before a member voter leaves when that
  would leave them even, and a witness the server no longer offers is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from raftchat.raft import Configuration, NodeId

ChangeKind = Literal["add_learner", "promote", "remove", "add_witness", "remove_witness"]


@dataclass(frozen=True, slots=True)
class MembershipView:
    """What the leader knows when it decides (all sets are of node ids)."""

    self_id: NodeId
    configuration: Configuration
    present: frozenset[NodeId]
    """Peers the signaling server reports in the channel (the leader itself need not be in)."""
    signaling_connected: bool
    leave_requests: Mapping[NodeId, int | None] = field(default_factory=dict)
    """Members that asked to be removed, each with the incarnation that asked (None:
    unknown). Only requests :func:`leave_is_current` says still stand count."""
    incarnations: Mapping[NodeId, int] = field(default_factory=dict)
    """The newest incarnation heard from each peer (none: the peer never said)."""
    unreachable: frozenset[NodeId] = field(default_factory=frozenset)
    """Members not heard from for longer than the member timeout."""
    caught_up: frozenset[NodeId] = field(default_factory=frozenset)
    """Members whose log is close enough to the leader's to be promoted safely."""
    max_voters: int = 5
    connected: frozenset[NodeId] | None = None
    """Peers with an open (authenticated) link; None: not known, take presence as is.
    A newcomer is only added once the leader can talk to it, so a peer that fails the
    channel's passphrase check never becomes a member."""
    witness_available: NodeId | None = None
    """The witness the signaling server offers for the channel (None: none offered)."""


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    node_id: NodeId
    reason: str


def leave_is_current(requested: int | None, newest_heard: int | None) -> bool:
    """Whether a leave request made by incarnation ``requested`` of a member still stands,
    when ``newest_heard`` is the newest incarnation heard from that member (None: none).

    A member that quit and started again on its data dir at once has a newer incarnation
    (:mod:`raftchat.node.incarnation`); its old request, committed late or applied again
    after a restart of the leader, must not remove the new run. So a request stands unless
    a newer incarnation was heard. A request of unknown incarnation is counted as made by
    the newest incarnation heard when it was applied
    (:meth:`~raftchat.node.membership.MembershipTracker.leave_requested`); if none was
    heard, any incarnation heard since is a later run (a node that never says its
    incarnation is of an earlier release, which never sends one)."""
    if newest_heard is None:
        return True
    return requested is not None and requested >= newest_heard


def departing(view: MembershipView) -> frozenset[NodeId]:
    """The members whose leave request stands."""
    return frozenset(
        member
        for member, incarnation in view.leave_requests.items()
        if leave_is_current(incarnation, view.incarnations.get(member))
    )


def next_change(view: MembershipView) -> Change | None:
    """The one configuration change to make now, or None if the cluster is as it should be."""
    configuration = view.configuration
    voters = configuration.member_voters
    learners = configuration.learners
    witnesses = configuration.witnesses
    members = voters | learners
    leaving_asked = departing(view)

    newcomers = view.present - members - leaving_asked - view.unreachable - {view.self_id}
    newcomers -= witnesses | {view.witness_available}
    if view.connected is not None:
        newcomers &= view.connected
    if newcomers:
        return Change("add_learner", min(newcomers), "joined the channel")

    absent = members - view.present if view.signaling_connected else frozenset()
    leaving = {
        node: reason
        for reasons, reason in (
            (leaving_asked, "asked to leave"),
            (view.unreachable, "unreachable for longer than the member timeout"),
            (absent, "left the channel"),
        )
        for node in reasons & members
    }
    leaving.pop(view.self_id, None)
    # Promote before removing, so a replacement voter is in place first; learners
    # go before voters, since removing them never changes the quorum.
    promotable = (learners & view.caught_up) - set(leaving)
    if promotable and len(voters) < view.max_voters:
        return Change("promote", min(promotable), "caught up")
    witness_change = _witness_change(view, voters, witnesses, leaving_voters=set(leaving) & voters)
    if witness_change is not None:
        return witness_change
    if leaving:
        node = min(leaving, key=lambda n: (n in voters, n))
        return Change("remove", node, leaving[node])
    if witnesses and len(voters) % 2 == 1:
        return Change("remove_witness", min(witnesses), "the member voters are odd")
    return None


def _witness_change(
    view: MembershipView,
    voters: frozenset[NodeId],
    witnesses: frozenset[NodeId],
    leaving_voters: set[NodeId],
) -> Change | None:
    """Replace a witness that is gone; add one while the member voters are even (or will
    be once a leaving voter is removed). Removing one for odd voters waits for removals."""
    gone = {
        witness
        for witness in witnesses
        if witness in view.unreachable
        or (view.signaling_connected and witness != view.witness_available)
    }
    if gone:
        return Change("remove_witness", min(gone), "the signaling server no longer holds it")
    available = view.witness_available
    if witnesses or available is None or available in view.unreachable | view.configuration.members:
        return None
    after_removals = len(voters) - (1 if leaving_voters else 0)
    if after_removals >= 2 and after_removals % 2 == 0:
        return Change("add_witness", available, "the member voters are even")
    return None


def wanted_links(
    self_id: NodeId,
    configuration: Configuration,
    present: frozenset[NodeId],
    *,
    leader_known: bool = True,
    hinted_voters: frozenset[NodeId] = frozenset(),
) -> frozenset[NodeId]:
    """The peers this node keeps a mesh link to.

    A pair of nodes is linked iff one of them is a voter: a learner only hears from the
    leader (and the voters that may lead next), and a node that is not a member yet only
    needs to reach the leader to be added. Who is a voter comes from the replicated
    configuration, and — for a node that is not a member and has no configuration — from
    the role each peer announces through the signaling server (``hinted_voters``; a
    learner also counts peers announcing themselves as voters, so a promotion it has
    not heard of yet costs no link). Both ends evaluate the same rule on nearly the same
    facts, so they agree (but for the moment a change takes to reach both): one side
    never keeps offering a link the other keeps closing.

    Without hints (no voter among them is present: an old signaling server, or every
    voter gone) a non-member reaches everyone, since it cannot tell who leads; so does a
    learner that knows no leader (e.g. just restarted, with a configuration whose voters
    may all have been replaced since) until a leader speaks.
    """
    # A witness is reached through the signaling server, never over the mesh.
    candidates = (present | configuration.members) - configuration.witnesses - {self_id}
    voters = configuration.voters
    if self_id in voters:
        return candidates
    if self_id not in configuration.members:
        hinted = hinted_voters & present
        if not hinted:
            return candidates
        return (hinted | configuration.member_voters) - {self_id}
    if not leader_known:
        return candidates
    return frozenset(peer for peer in candidates if peer in voters or peer in hinted_voters)
