"""Membership automation: who is present, who is heard from, and the next change to make.

The runtime feeds it presence from the signaling server, frames heard over the mesh
and the link states; the leader asks it (every ``membership_interval_s``) for the one
configuration change to make now, decided by the pure rule in
:mod:`raftchat.node.membership_plan`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from raftchat.net import LinkInfo, LinkState
from raftchat.node.membership_plan import Change, MembershipView, next_change, wanted_links
from raftchat.raft import Configuration, NodeId, Status

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MembershipPolicy:
    """The settings the automation decides with."""

    presence_grace_s: float
    """A member missing from presence this long counts as gone."""
    member_timeout_s: float
    """A member not heard from this long is removed."""
    max_voters: int
    silent_link_reset_s: float
    """A leader reconnects to a member it has not heard from this long."""


@dataclass(frozen=True, slots=True)
class Liveness:
    """What one node knows of its peers' liveness at ``now`` (monotonic seconds): what the
    status's quorum report and the removal notices are made of (:mod:`raftchat.node.events`)."""

    now: float
    last_contact: Mapping[NodeId, float]
    """When anything last came from each peer: a Raft message, or any frame on its link
    (links ping every second, so peers that exchange no Raft messages count too)."""
    open_links: frozenset[NodeId]
    present: frozenset[NodeId] | None
    """Peers the signaling server lists now; None while this node is not connected to it."""
    leaderless_since: float | None
    """Since when this node has known no leader; None while it knows one."""
    member_timeout_s: float

    def silence(self, peer: NodeId) -> float | None:
        """Seconds since anything came from ``peer``; None if nothing ever did."""
        heard = self.last_contact.get(peer)
        return None if heard is None else max(0.0, self.now - heard)


class MembershipTracker:
    """Presence and liveness of the channel's peers, as one node sees them."""

    def __init__(self, self_id: NodeId, policy: MembershipPolicy) -> None:
        self.self_id = self_id
        self.policy = policy
        self.present: frozenset[NodeId] = frozenset()
        """Peers the signaling server lists in the channel now."""
        self.ever_present: set[NodeId] = set()
        self.leave_requests: dict[NodeId, int | None] = {}
        """Members that asked to be removed and have not come back since, each with the
        incarnation that asked (see :func:`~raftchat.node.membership_plan.leave_is_current`)."""
        self.incarnations: dict[NodeId, int] = {}
        """The newest incarnation each peer said it runs (:mod:`raftchat.node.incarnation`)."""
        self.last_heard: dict[NodeId, float] = {}
        """When a frame last came from each peer (member or not)."""
        self.absent_since: dict[NodeId, float] = {}
        self.removed_unreachable: dict[NodeId, float] = {}
        """Peers removed for silence, and when: not re-added until heard from again."""
        self.link_reset_at: dict[NodeId, float] = {}
        self.last_contact: dict[NodeId, float] = {}
        """When anything (a Raft message or a link frame) last came from each peer: only
        shown to people, never used to decide a change."""
        self._frames_seen: dict[NodeId, int] = {}
        self.leaderless_since: float | None = None

    # --- facts in -------------------------------------------------------------------

    def heard_from(self, peer: NodeId, now: float) -> None:
        self.last_heard[peer] = now
        self.last_contact[peer] = now

    def links_seen(self, links: Mapping[NodeId, LinkInfo], now: float) -> None:
        """Take in the links' counters (polled): a peer whose link received a frame since
        the last look (its pings included) was in contact."""
        for peer, info in links.items():
            if info.frames_received != self._frames_seen.get(peer, 0):
                self._frames_seen[peer] = info.frames_received
                self.last_contact[peer] = now

    def liveness(
        self,
        now: float,
        leader: NodeId,
        signaling_connected: bool,
        links: Mapping[NodeId, LinkInfo],
    ) -> Liveness:
        """The facts as of ``now``: ``leader`` is the leader this node knows ("" if none),
        ``links`` the links' latest states."""
        if leader:
            self.leaderless_since = None
        elif self.leaderless_since is None:
            self.leaderless_since = now
        return Liveness(
            now=now,
            last_contact=dict(self.last_contact),
            open_links=frozenset(p for p, info in links.items() if info.state == LinkState.OPEN),
            present=self.present if signaling_connected else None,
            leaderless_since=self.leaderless_since,
            member_timeout_s=self.policy.member_timeout_s,
        )

    def presence_changed(
        self, peers: frozenset[NodeId], members: frozenset[NodeId], now: float
    ) -> frozenset[NodeId]:
        """Record the signaling server's peer list; return the peers that came back."""
        appeared = peers - self.present
        returned = appeared & self.ever_present
        self.ever_present |= appeared
        # A node that asked to leave and comes back later is a newcomer again.
        for peer in appeared:
            self.leave_requests.pop(peer, None)
        self.present = peers
        for peer in peers:
            self.absent_since.pop(peer, None)
        for member in members - peers - {self.self_id}:
            self.absent_since.setdefault(member, now)
        return frozenset(returned)

    def heard_incarnation(self, peer: NodeId, incarnation: int) -> None:
        """``peer`` said it runs ``incarnation`` (a valid one): its newest is kept, so a
        frame of an earlier run arriving late changes nothing."""
        if incarnation > self.incarnations.get(peer, 0):
            self.incarnations[peer] = incarnation

    def leave_requested(self, member: NodeId, incarnation: int | None) -> None:
        """A leave request of ``member`` was applied. One of unknown incarnation (an
        earlier release's) counts as made by the newest incarnation heard from it now."""
        if incarnation is None:
            incarnation = self.incarnations.get(member)
        self.leave_requests[member] = incarnation

    def member_joined(self, member: NodeId) -> None:
        """``member`` was added to the configuration: a leave request applied before is
        settled (it left and came back), however the leader learned it came back."""
        self.leave_requests.pop(member, None)

    def became_leader(self, members: frozenset[NodeId], now: float) -> None:
        """Followers need not have heard from each other (learners talk only to the
        leader): a new leader starts every member's silence clock now."""
        for member in members:
            self.last_heard[member] = now

    # --- decisions ------------------------------------------------------------------

    def wanted_links(
        self,
        configuration: Configuration,
        *,
        leader_known: bool,
        peer_roles: dict[NodeId, str],
    ) -> frozenset[NodeId]:
        """Peers present, and members even while presence misses them (a signaling outage
        or a member leaving must not cut the links Raft still needs) — but only pairs with
        a voter in them are linked (:func:`~raftchat.node.membership_plan.wanted_links`)."""
        return wanted_links(
            self.self_id,
            configuration,
            self.present,
            leader_known=leader_known,
            hinted_voters=frozenset(peer for peer, role in peer_roles.items() if role == "voter"),
        )

    def next_change(
        self,
        status: Status,
        signaling_peers: frozenset[NodeId],
        signaling_connected: bool,
        links: dict[NodeId, LinkInfo],
        now: float,
        witness_available: NodeId | None = None,
    ) -> tuple[Change, frozenset[NodeId]] | None:
        """The change the leader makes now, with the members found unreachable.
        ``witness_available``: the witness the signaling server offers, if usable."""
        configuration = status.configuration
        for member in configuration.members:
            self.last_heard.setdefault(member, now)
        grace = self.policy.presence_grace_s
        present = set(signaling_peers) | {self.self_id}
        # Missing from presence counts only after a grace period, and not while the member
        # still talks to us over the mesh (a signaling server restart is no departure).
        present |= {
            member
            for member in configuration.members
            if now - self.absent_since.get(member, now) < grace
            or now - self.last_heard[member] < grace
        }
        timeout = self.policy.member_timeout_s
        unreachable = {
            member
            for member in configuration.members - {self.self_id}
            if now - self.last_heard[member] > timeout
        }
        # A member removed as unreachable is not added back until it is heard from again.
        for peer, removed_at in list(self.removed_unreachable.items()):
            if self.last_heard.get(peer, 0.0) > removed_at:
                del self.removed_unreachable[peer]
            elif peer not in configuration.members:
                unreachable.add(peer)
        caught_up = {
            progress.node_id
            for progress in status.progress
            if progress.recent_active and progress.match >= status.commit_index
        }
        view = MembershipView(
            self_id=self.self_id,
            configuration=configuration,
            present=frozenset(present),
            signaling_connected=signaling_connected,
            leave_requests=dict(self.leave_requests),
            incarnations=dict(self.incarnations),
            unreachable=frozenset(unreachable),
            caught_up=frozenset(caught_up),
            max_voters=self.policy.max_voters,
            connected=frozenset(
                peer for peer, info in links.items() if info.state == LinkState.OPEN
            ),
            witness_available=witness_available,
        )
        change = next_change(view)
        return None if change is None else (change, frozenset(unreachable))

    def change_made(self, change: Change, unreachable: frozenset[NodeId], now: float) -> None:
        """The core accepted ``change``."""
        if change.kind == "add_learner":
            self.last_heard[change.node_id] = now
        elif change.kind == "remove" and change.node_id in unreachable:
            self.removed_unreachable[change.node_id] = now

    def forgotten(self, node_ids: frozenset[NodeId], now: float) -> None:
        """This node carried on without ``node_ids`` (``/forget``): like members removed
        for silence, they are added back once heard from again."""
        for node_id in node_ids:
            self.removed_unreachable[node_id] = now

    def silent_members(self, members: frozenset[NodeId], now: float) -> list[NodeId]:
        """Members silent for ``silent_link_reset_s`` whose link was not reset for as long:
        the leader reconnects to them (a peer that restarted may otherwise wait for the
        mesh's connect timeout). Marks them as reset now."""
        limit = self.policy.silent_link_reset_s
        silent = []
        for member in members - {self.self_id}:
            quiet = now - self.last_heard.get(member, now) > limit
            if quiet and now - self.link_reset_at.get(member, 0.0) > limit:
                self.link_reset_at[member] = now
                silent.append(member)
        return silent
