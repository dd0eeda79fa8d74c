"""What the front ends see: the node's state and the chat, as :mod:`raftchat.node.api` events.

Builders (core status, chat state and what the node knows of its peers' liveness in,
events out; the time is a parameter) and a small fan-out to the subscribed front ends,
which publishes status and member lists only when they changed.

Saying what is happening:

- **Quorum.** When the channel cannot commit — no leader known for longer than an
  election timeout, or this node leads but hears from fewer voters than a quorum — the
  status says why, which voters this node cannot reach (by nick, with how long since it
  last heard from them) and how many are needed (:func:`assess_quorum`), and suggests
  ``/forget`` when that would let the channel commit again (:mod:`raftchat.node.forget`).
- **Names.** Membership notices name members by nick, with the start of the id when
  another member's nick is the same or looks alike (``alice#3f2a``). A newcomer's nick
  usually commits just after its join (it proposes it once it is a member): a notice
  about a member whose nick is not known yet is held until the nick arrives, at most
  :data:`NICK_WAIT_S`, then shown with a short id (``user-3f2a``).
- **Why a member went.** Every node applies the same log, so whether a member asked to
  leave before it was removed is known alike everywhere ("bob left"). Otherwise this
  node says what it saw: the member vanished from the signaling server's presence
  ("bob disconnected"), or nothing came from it for a while ("bob was removed: not
  heard from for 31 s"), or it still talked to this node and the leader lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raftchat import chat
from raftchat.net import LinkInfo
from raftchat.node.api import (
    ChatMessageEvent,
    Event,
    MemberInfo,
    MembersEvent,
    MissingVoter,
    NoticeEvent,
    NoticeKind,
    StatusEvent,
)
from raftchat.node.forget import forget_line, forgettable, forgotten_text
from raftchat.node.membership import Liveness
from raftchat.raft import ClusterIdentity, Role, Status

STATE_NAMES = {
    Role.FOLLOWER: "follower",
    Role.PRE_CANDIDATE: "pre_candidate",
    Role.CANDIDATE: "candidate",
    Role.LEADER: "leader",
    Role.LEARNER: "learner",
}
_LINK_STATES = {"connecting": "connecting", "open": "connected", "failed": "failed"}

NICK_WAIT_S = 3.0
"""How long a notice about a member whose nick is not known yet waits for the nick."""
MIN_REACHABLE_WINDOW_S = 2.5
"""A voter counts as reachable if something came from it this recently (or within two
election timeouts, if longer): links ping every second, and voters without a leader
exchange votes at least every two election timeouts."""


class Subscribers:
    """Front ends' event queues; status and member lists go out only when they change."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []
        self._last_status: StatusEvent | None = None
        self._last_members: tuple[MemberInfo, ...] | None = None
        self._sticky: list[Event] = []
        self._last_leader_notice: NoticeEvent | None = None

    def subscribe(self) -> asyncio.Queue[Event]:
        """A new queue; it starts with the sticky events (what went wrong at start) and
        the latest leader notice (a front end that subscribes after the node started,
        such as a channel opened from the chat, would otherwise never hear who leads)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in self._sticky:
            queue.put_nowait(event)
        if self._last_leader_notice is not None:
            queue.put_nowait(self._last_leader_notice)
        self._queues.append(queue)
        return queue

    def publish_sticky(self, event: Event) -> None:
        """``event`` now, and to every front end that subscribes later."""
        self._sticky.append(event)
        self.publish(event)

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def publish(self, event: Event) -> None:
        if isinstance(event, NoticeEvent) and event.kind == "leader":
            self._last_leader_notice = event
        for queue in self._queues:
            queue.put_nowait(event)

    def publish_status(self, status: StatusEvent) -> None:
        if status != self._last_status:
            self._last_status = status
            self.publish(status)

    def publish_members(self, members: tuple[MemberInfo, ...]) -> None:
        if members != self._last_members:
            self._last_members = members
            self.publish(MembersEvent(members))


def short_name(node_id: str) -> str:
    """A member whose nick is not known: ``user-3f2a``, like the default nick."""
    return f"user-{node_id[:4]}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _last_heard(silent_s: int | None) -> str:
    return "never heard from" if silent_s is None else f"last heard {_duration(silent_s)} ago"


def _either(names: list[str], wanted: int) -> str:
    """``bob``, ``bob and carol`` (all wanted), ``bob or carol`` (one), ``2 of a, b, c``."""
    if len(names) == 1:
        return names[0]
    if wanted >= len(names):
        return ", ".join(names[:-1]) + " and " + names[-1]
    if wanted == 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return f"{wanted} of " + ", ".join(names)


@dataclass(frozen=True, slots=True)
class QuorumReport:
    """Why the channel cannot commit, as :class:`~raftchat.node.api.StatusEvent` shows it."""

    problem: str
    missing: tuple[MissingVoter, ...]
    needed: int
    reachable: int
    forget: tuple[str, ...] = ()
    """The names to ``/forget`` to commit again (empty: forgetting would not help)."""


def quorum_problem_text(
    *,
    leading: bool,
    missing: tuple[MissingVoter, ...],
    needed: int,
    reachable: int,
    voters: int,
    forget: tuple[str, ...] = (),
) -> str:
    """The sentence for a channel that cannot commit: ``no leader: waiting for bob — the
    channel needs 2 of 2 voters; 1 reachable (bob last heard 6 s ago)``, then, if
    ``forget`` names voters, how to carry on without them."""
    lead = "cannot commit" if leading else "no leader"
    names = [voter.nick for voter in missing]
    heard = ", ".join(f"{voter.nick} {_last_heard(voter.silent_s)}" for voter in missing)
    text = (
        f"{lead}: waiting for {_either(names, needed - reachable)} \u2014 the channel "
        f"needs {needed} of {voters} voters; {reachable} reachable"
    )
    if heard:
        text += f" ({heard})"
    if forget:
        verb = "is" if len(forget) == 1 else "are"
        text += f"; if {_either(list(forget), len(forget))} {verb} gone for good, type"
        text += f" {forget_line(forget)}"
    return text


def assess_quorum(
    status: Status,
    liveness: Liveness,
    election_timeout_s: float,
    name: Callable[[str], str],
) -> QuorumReport:
    """Which voters this node reaches, and the sentence saying what the channel waits for.

    A voter is reachable if its link is open and something came from it within
    :data:`MIN_REACHABLE_WINDOW_S` (two election timeouts, if longer); this node, if a
    voter, always is. Says nothing of *whether* there is a problem: see
    :meth:`NodeView.quorum_report`.
    """
    self_id = status.node_id
    voters = status.configuration.voters
    window = max(MIN_REACHABLE_WINDOW_S, 2 * election_timeout_s)
    reachable = 0
    missing = []
    for voter in voters:
        silence = liveness.silence(voter)
        if voter == self_id or (
            voter in liveness.open_links and silence is not None and silence <= window
        ):
            reachable += 1
        else:
            missing.append(
                MissingVoter(voter, name(voter), None if silence is None else int(silence))
            )
    missing.sort(key=lambda voter: (voter.nick, voter.node_id))
    needed = len(voters) // 2 + 1
    described = [f"{voter.nick} ({_last_heard(voter.silent_s)})" for voter in missing]
    forget: tuple[str, ...] = ()
    if reachable < needed:
        gone = [voter.node_id for voter in missing]
        if forgettable(self_id, status.configuration, gone):
            forget = tuple(voter.nick for voter in missing)
        problem = quorum_problem_text(
            leading=status.role is Role.LEADER,
            missing=tuple(missing),
            needed=needed,
            reachable=reachable,
            voters=len(voters),
            forget=forget,
        )
    else:
        problem = (
            f"no leader yet: an election is under way \u2014 {reachable} of {len(voters)} "
            f"voters reachable, {needed} needed"
        )
        if described:
            problem += "; unreachable: " + ", ".join(described)
    return QuorumReport(problem, tuple(missing), needed, reachable, forget)


def removal_text(
    name: str, node_id: str, *, own: bool, requested: bool, liveness: Liveness | None
) -> str:
    """The notice for a member removed from the configuration.

    ``requested``: a leave request of the member was applied since it joined (the same on
    every node): it left. Otherwise this node says what it saw: the member vanished from
    the signaling server's presence (the leader removes such a member after a short
    grace), or it is still listed there, so the leader removed it for silence (the member
    timeout; more if this node has not heard from it for longer).
    """
    if requested:
        return f"{name} left"
    if own:
        return f"{name} (this node) was removed from the channel"
    if liveness is None:
        return f"{name} was removed"
    if liveness.present is not None and node_id not in liveness.present:
        return f"{name} disconnected"
    timeout = liveness.member_timeout_s
    silence = liveness.silence(node_id)
    recent = min(MIN_REACHABLE_WINDOW_S, timeout / 2)
    if node_id in liveness.open_links and silence is not None and silence <= recent:
        return f"{name} was removed: the leader had not heard from it for {_duration(timeout)}"
    return f"{name} was removed: not heard from for {_duration(max(silence or 0.0, timeout))}"


@dataclass(slots=True)
class _HeldNotice:
    node_id: str
    kind: NoticeKind
    rest: str
    """The text after the member's name."""
    ts: float


_UNDATED = -1.0
"""The time given to notices of history the log cannot date (never shown)."""

WITNESS_NAME = "witness (server)"
"""How people see the signaling server's witness in the member list and notices."""


class NodeView:
    """How one node names things for people: its own nick, others' from the chat state.

    It also keeps what the notices and the status need to remember: notices waiting for
    a nick, members whose leave request was applied, and whether the status reports a
    quorum problem.
    """

    def __init__(
        self, node_id: str, nick: str, *, nick_wait_s: float = NICK_WAIT_S, channel: str = ""
    ) -> None:
        self.node_id = node_id
        self.nick = nick
        self.channel = channel
        self.nick_wait_s = nick_wait_s
        self._held: list[_HeldNotice] = []
        self._leave_requested: set[str] = set()
        self._forgotten: set[str] = set()
        """Voters this node carried on without (``/forget``), until their removal applies."""
        self._quorum_shown = False
        self.witnesses: frozenset[str] = frozenset()
        """The witnesses of the latest configuration seen (named, not nicked)."""
        self.webrtc: str | None = None
        """The WebRTC engine the node's mesh runs on, once it started (the status says it)."""
        self.history_through = 0
        """Entries up to this index are history to this node: stored in an earlier run,
        or committed before they reached it (catching up). Their notices carry the time
        of the chat around them, not the time this node applies them."""

    def received_entries(self, last_index: int, leader_commit: int) -> None:
        """The leader sent entries up to ``last_index`` and had committed up to
        ``leader_commit``: those already committed are history (this node catches up)."""
        self.history_through = max(self.history_through, min(last_index, leader_commit))

    def history_time(self, chat_state: chat.ChatState) -> float | None:
        """When a change at the end of the history applied so far happened, as near as the
        log tells: membership and nick entries carry no time of their own, so this is the
        sender's time of the nearest earlier chat message in the log (the change came at
        or after it); None if the log holds no earlier message. Read from the chat state
        each time, so a snapshot installed while catching up counts (membership and nick
        changes are few)."""
        history = chat_state.history()
        return history[-1].ts / 1000 if history else None

    def forgetting(self, node_ids: frozenset[str]) -> None:
        """This node forced its way on without ``node_ids``: their removal notice says so."""
        self._forgotten |= node_ids

    def nick_of(self, chat_state: chat.ChatState, node_id: str) -> str:
        return self.nick if node_id == self.node_id else (chat_state.nick_of(node_id) or "")

    def name(self, chat_state: chat.ChatState, node_id: str) -> str:
        """A member as notices show it: its nick (with the start of its id when another
        member uses the same nick), or ``user-3f2a`` while no nick is known."""
        if node_id == self.node_id:
            return self.nick
        if node_id in self.witnesses:
            return WITNESS_NAME
        if chat_state.nick_of(node_id):
            return chat_state.display_name(node_id)
        return short_name(node_id)

    def status_event(
        self,
        status: Status,
        *,
        applied_index: int,
        election_timeout_ms: int,
        messages_dropped: int,
        stopped: bool,
        other_cluster_dropped: int = 0,
        cluster: ClusterIdentity | None = None,
        signaling_state: str,
        chat_state: chat.ChatState | None = None,
        liveness: Liveness | None = None,
    ) -> StatusEvent:
        self.witnesses = status.configuration.witnesses
        sent, received = status.messages_sent, status.messages_received
        counters = {
            "requestvote_sent": sent.get("RequestVote", 0),
            "requestvote_received": received.get("RequestVote", 0),
            "appendentries_sent": sent.get("AppendEntries", 0),
            "appendentries_received": received.get("AppendEntries", 0),
            "proposals_forwarded": status.proposals_forwarded,
            "snapshots_sent": status.snapshots_sent,
            "snapshots_received": status.snapshots_installed,
            "messages_dropped": messages_dropped,
            "other_cluster_dropped": other_cluster_dropped,
        }
        state = "stopped" if stopped else STATE_NAMES[status.role]
        report = None
        if not stopped and chat_state is not None and liveness is not None:
            report = self.quorum_report(status, chat_state, liveness, election_timeout_ms / 1000)
        return StatusEvent(
            node_id=self.node_id,
            state=state,  # type: ignore[arg-type]
            term=status.term,
            leader=status.leader or None,
            voters=tuple(sorted(status.configuration.voters)),
            witness=min(status.configuration.witnesses, default=None),
            learners=tuple(sorted(status.configuration.learners)),
            commit_index=status.commit_index,
            applied_index=applied_index,
            last_index=status.last_index,
            snapshot_index=status.snapshot_index,
            election_timeout_ms=float(election_timeout_ms),
            counters=counters,
            cluster_id=cluster.cluster_id if cluster is not None else None,
            signaling_state=signaling_state,  # type: ignore[arg-type]
            webrtc=self.webrtc,
            quorum_problem=report.problem if report else None,
            missing_voters=report.missing if report else (),
            voters_needed=report.needed if report else None,
            voters_reachable=report.reachable if report else None,
            forget_command=forget_line(report.forget) if report and report.forget else None,
        )

    def quorum_report(
        self,
        status: Status,
        chat_state: chat.ChatState,
        liveness: Liveness,
        election_timeout_s: float,
    ) -> QuorumReport | None:
        """Why the channel cannot commit, or None while it can (as far as this node knows).

        A problem: this node leads but reaches fewer voters than a quorum, or it has known
        no leader for longer than an election timeout. Once reported, the problem stays
        until a leader is known again (a leader that steps down for want of a quorum goes
        on reporting it without a gap).
        """
        configuration = status.configuration
        if self.node_id not in configuration.members or not configuration.voters:
            self._quorum_shown = False  # not a member (yet): nothing to wait for
            return None
        if status.leader and status.leader != self.node_id:
            self._quorum_shown = False
            return None
        report = assess_quorum(
            status, liveness, election_timeout_s, lambda node_id: self.name(chat_state, node_id)
        )
        if status.leader:  # this node leads
            shown = report.reachable < report.needed
        else:
            since = liveness.leaderless_since
            waited = since is not None and liveness.now - since > election_timeout_s
            shown = self._quorum_shown or waited
        self._quorum_shown = shown
        return report if shown else None

    def members_info(
        self,
        status: Status,
        chat_state: chat.ChatState,
        links: Mapping[str, LinkInfo],
        witness_reachable: bool = False,
    ) -> tuple[MemberInfo, ...]:
        """``witness_reachable``: the witness answered lately (through the server)."""
        configuration = status.configuration
        self.witnesses = configuration.witnesses
        members = []
        for node_id in sorted(configuration.members):
            if node_id in configuration.witnesses:
                state = "connected" if witness_reachable else "disconnected"
                members.append(MemberInfo(node_id, WITNESS_NAME, "witness", state))
                continue
            if node_id == status.leader:
                role = "leader"
            elif node_id in configuration.voters:
                role = "voter"
            else:
                role = "learner"
            link = links.get(node_id)
            if node_id == self.node_id:
                link_state, rtt = "self", None
            elif link is None:
                link_state, rtt = "disconnected", None
            else:
                link_state, rtt = _LINK_STATES.get(link.state, "disconnected"), link.rtt_ms
            nick = self.nick_of(chat_state, node_id)
            members.append(MemberInfo(node_id, nick, role, link_state, rtt))  # type: ignore[arg-type]
        return tuple(members)

    @staticmethod
    def message_event(chat_state: chat.ChatState, message: chat.MessageApplied) -> ChatMessageEvent:
        return ChatMessageEvent(
            index=message.index,
            id=message.id,
            sender_id=message.client_id,
            nick=chat_state.display_name(message.client_id, message.nick),
            text=message.text,
            ts=message.ts / 1000,
            action=message.action,
            merged=message.merged,
        )

    def notices_for(
        self,
        chat_state: chat.ChatState,
        event: chat.ChatEvent,
        liveness: Liveness | None = None,
        now: float | None = None,
    ) -> list[NoticeEvent]:
        """The notices a membership or nick event shows now (none, or notices it held).

        ``liveness`` says what this node saw of a member that is removed; ``now`` is the
        wall clock (epoch seconds). An event at or below :attr:`history_through` is
        history this node replays or catches up on: its notices are stamped with
        :meth:`history_time`, and not shown at all when the log has no earlier message
        to date them by (the members pane shows where those changes led); a removal then
        says only what every node knows, not what this node sees of the member now."""
        if isinstance(event, chat.MessageApplied):  # shows no notice: bookkeeping only
            return self._notices_for(chat_state, event, liveness, _UNDATED)
        if event.index <= self.history_through:
            when = self.history_time(chat_state)
            if when is not None:
                return self._notices_for(chat_state, event, None, when)
            # Undated: nothing of its own is shown or held; notices it releases (held
            # earlier, e.g. a leader notice waiting for this nick) are shown as dated.
            held_before = {id(held) for held in self._held}
            notices = self._notices_for(chat_state, event, None, _UNDATED)
            self._held = [held for held in self._held if id(held) in held_before]
            return [notice for notice in notices if notice.ts != _UNDATED]
        return self._notices_for(chat_state, event, liveness, time.time() if now is None else now)

    def _notices_for(
        self,
        chat_state: chat.ChatState,
        event: chat.ChatEvent,
        liveness: Liveness | None,
        now: float,
    ) -> list[NoticeEvent]:
        match event:
            case chat.NickChanged(client_id=client_id, old=old, new=new):
                self._leave_requested.discard(client_id)  # it is still here
                notices = self._release(chat_state, lambda held: held.node_id == client_id)
                if old:  # named as everywhere else: a lookalike of another's nick shows its id
                    was, now_is = (chat_state.display_name(client_id, nick) for nick in (old, new))
                    notices.append(NoticeEvent("nick", f"{was} is now known as {now_is}", now))
                return notices
            case chat.MessageApplied(client_id=client_id):
                self._leave_requested.discard(client_id)
            case chat.LeaveRequested(client_id=client_id):
                self._leave_requested.add(client_id)
            case chat.MemberJoined(node_id=node_id):
                self._leave_requested.discard(node_id)
                role = "voter" if event.voter else "learner"
                return self._named(chat_state, node_id, "join", f" joined as {role}", now)
            case chat.MergeCompleted(count=count) if count:
                noun, verb = ("message", "was") if count == 1 else ("messages", "were")
                text = f"{count} {noun} from an earlier split of #{self.channel} {verb} merged"
                return [NoticeEvent("info", text, now)]
            case chat.MemberRoleChanged(node_id=node_id):
                role = "voter" if event.voter else "learner"
                return self._named(chat_state, node_id, "info", f" is now a {role}", now)
            case chat.MemberLeft(node_id=node_id):
                requested = node_id in self._leave_requested
                self._leave_requested.discard(node_id)
                notices = self._release(
                    chat_state, lambda held: held.node_id == node_id, named=False
                )
                if node_id in self._forgotten:
                    self._forgotten.discard(node_id)
                    text = forgotten_text(self.name(chat_state, node_id))
                else:
                    text = removal_text(
                        self.name(chat_state, node_id),
                        node_id,
                        own=node_id == self.node_id,
                        requested=requested,
                        liveness=liveness,
                    )
                notices.append(NoticeEvent("leave", text, now, node_id))
                return notices
        return []

    def due_notices(
        self, chat_state: chat.ChatState, now: float | None = None
    ) -> list[NoticeEvent]:
        """Held notices whose nick did not come within ``nick_wait_s``: shown with a short id."""
        now = time.time() if now is None else now
        if not self._held:
            return []
        late = {held.node_id for held in self._held if now - held.ts >= self.nick_wait_s}
        return self._release(chat_state, lambda held: held.node_id in late, named=False)

    def _named(
        self, chat_state: chat.ChatState, node_id: str, kind: NoticeKind, rest: str, now: float
    ) -> list[NoticeEvent]:
        """A notice about ``node_id``, or none yet if its nick is not known (held)."""
        if node_id == self.node_id or chat_state.nick_of(node_id):
            return [NoticeEvent(kind, self.name(chat_state, node_id) + rest, now, node_id)]
        self._held.append(_HeldNotice(node_id, kind, rest, now))
        return []

    def _release(
        self,
        chat_state: chat.ChatState,
        which: Callable[[_HeldNotice], bool],
        *,
        named: bool = True,
    ) -> list[NoticeEvent]:
        """Held notices matching ``which``, in the order they were held (``named``: only if
        the member's nick is known by now)."""
        released, kept = [], []
        for held in self._held:
            if which(held) and (not named or chat_state.nick_of(held.node_id)):
                name = self.name(chat_state, held.node_id)
                released.append(NoticeEvent(held.kind, name + held.rest, held.ts, held.node_id))
            else:
                kept.append(held)
        self._held = kept
        return released

    def leader_notices(
        self, chat_state: chat.ChatState, leader: str, term: int, now: float | None = None
    ) -> list[NoticeEvent]:
        """The notice that ``leader`` leads, or none yet: a node that just started learns
        who leads before the log tells it the leader's nick, so the notice waits for the
        nick like a join notice does."""
        now = time.time() if now is None else now
        rest = f" is the leader (term {term})"
        if leader == self.node_id:
            return [NoticeEvent("leader", "this node" + rest, now, leader)]
        return self._named(chat_state, leader, "leader", rest, now)
