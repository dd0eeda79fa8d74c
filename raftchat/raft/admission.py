"""Which peer may say what: role checks before a message reaches the Raft rules.

Raft assumes every message comes from the node it names, playing the part it claims.
Links authenticate the sender; these checks make sure the sender's *role* allows the
message, so a peer that is not a member (or a member that is not a voter) cannot make
a node follow it, vote for it, or adopt its term. Members (:class:`.core.RaftCore`) and
the witness (:class:`.witness.WitnessCore`) apply the same rules, with this function:

- a member takes messages only from members of its configuration;
- AppendEntries and InstallSnapshot only from a voter that may lead (never a witness),
  and within the current term only from the leader this node already follows;
- TimeoutNow only from the leader of the current term;
- a vote request only from a voter that may lead; a vote only from a voter; one that
  follows a leadership hand-over (which skips the leader lease) only for the next term;
- while this node is in a leader's lease (it heard from its leader within an election
  timeout, or it leads and checks its quorum), no other voter can claim a later term
  by AppendEntries or InstallSnapshot: a voter that was not elected cannot take over a
  working channel. A real new leader is followed once the lease runs out.

The leader this node follows in the current term keeps its word until the term ends,
even once it has appended its own removal (it hands over with TimeoutNow).

A member that no leader reached for ``STRANDED_ELECTION_TIMEOUTS`` election timeouts
is *stranded*: its configuration may be stale (it missed the changes that made the
current leader a voter), so it takes a leader from outside it too. That cannot depose a
working leader or turn a follower that has one, and no leader can make a node rewrite
what it committed. A node outside its own configuration (a newcomer, or a member that
was removed while away) takes a leader from anyone: the node's cluster gate has already
checked that the sender belongs to its cluster (for the witness, the signaling server
checked that the sender is the peer whose socket brought the message), and being added
again is how it gets back in. A higher term from a peer that fails these checks changes
nothing, since the message is dropped before its term is looked at.
"""

from __future__ import annotations

from .messages import (
    NO_NODE,
    AppendEntries,
    Configuration,
    InstallSnapshot,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

STRANDED_ELECTION_TIMEOUTS = 3


def refusal(
    message: Message,
    *,
    self_id: NodeId,
    term: int,
    leader: NodeId,
    configuration: Configuration,
    stranded: bool = False,
    leased: bool = False,
) -> str | None:
    """Why ``message`` may not be stepped, or None if its sender's role allows it.
    ``stranded``: no leader reached this node for a long while; ``leased``: it is in a
    leader's lease (see above). The reasons are a few fixed phrases (a host counts
    refusals by reason)."""
    sender: NodeId = message.sender  # type: ignore[union-attr]
    if self_id not in configuration.members:
        return None
    if sender == leader and getattr(message, "term", None) == term:
        return None  # the leader this node follows (one that is leaving the configuration too)
    leading = isinstance(message, AppendEntries | InstallSnapshot)
    if leading and stranded:
        return None
    if sender not in configuration.members:
        return "not a member"
    may_lead = sender in configuration.member_voters
    if leading:
        if not may_lead:
            return "only a voter can lead"
        if message.term == term and leader != NO_NODE and sender != leader:
            return "another voter leads this term"
        if message.term > term and leased and sender != leader:
            return "the leader was heard from lately"
    elif isinstance(message, TimeoutNow):
        if sender != leader or message.term != term:
            return "only the current leader hands over leadership"
    elif isinstance(message, RequestVote):
        if not may_lead:
            return "only a voter can stand for election"
        if message.leadership_transfer and message.term != term + 1:
            return "a leadership hand-over is for the next term only"
    elif isinstance(message, RequestVoteResponse) and sender not in configuration.voters:
        return "only a voter votes"
    return None
