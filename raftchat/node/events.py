"""What the front ends see: the node's state and the chat, as :mod:`raftchat.node.api` events.

Pure builders (core status and chat state in, events out) and a small fan-out to the
subscribed front ends, which publishes status and member lists only when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from raftchat import chat
from raftchat.net import LinkInfo
from raftchat.node.api import (
    ChatMessageEvent,
    Event,
    MemberInfo,
    MembersEvent,
    NoticeEvent,
    StatusEvent,
)
from raftchat.raft import Role, Status

STATE_NAMES = {
    Role.FOLLOWER: "follower",
    Role.PRE_CANDIDATE: "pre_candidate",
    Role.CANDIDATE: "candidate",
    Role.LEADER: "leader",
    Role.LEARNER: "learner",
}
_LINK_STATES = {"connecting": "connecting", "open": "connected", "failed": "failed"}


class Subscribers:
    """Front ends' event queues; status and member lists go out only when they change."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []
        self._last_status: StatusEvent | None = None
        self._last_members: tuple[MemberInfo, ...] | None = None

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def publish(self, event: Event) -> None:
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


class NodeView:
    """How one node names things for people: its own nick, others' from the chat state."""

    def __init__(self, node_id: str, nick: str) -> None:
        self.node_id = node_id
        self.nick = nick

    def nick_of(self, chat_state: chat.ChatState, node_id: str) -> str:
        return self.nick if node_id == self.node_id else (chat_state.nick_of(node_id) or "")

    def name(self, chat_state: chat.ChatState, node_id: str) -> str:
        """A member as notices show it: nick and short id, or the id alone."""
        nick = self.nick_of(chat_state, node_id)
        return f"{nick} ({node_id[:6]})" if nick else node_id

    def status_event(
        self,
        status: Status,
        *,
        applied_index: int,
        election_timeout_ms: int,
        messages_dropped: int,
        stopped: bool,
        signaling_state: str,
    ) -> StatusEvent:
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
        }
        state = "stopped" if stopped else STATE_NAMES[status.role]
        return StatusEvent(
            node_id=self.node_id,
            state=state,  # type: ignore[arg-type]
            term=status.term,
            leader=status.leader or None,
            voters=tuple(sorted(status.configuration.voters)),
            learners=tuple(sorted(status.configuration.learners)),
            commit_index=status.commit_index,
            applied_index=applied_index,
            last_index=status.last_index,
            snapshot_index=status.snapshot_index,
            election_timeout_ms=float(election_timeout_ms),
            counters=counters,
            signaling_state=signaling_state,  # type: ignore[arg-type]
        )

    def members_info(
        self, status: Status, chat_state: chat.ChatState, links: Mapping[str, LinkInfo]
    ) -> tuple[MemberInfo, ...]:
        configuration = status.configuration
        members = []
        for node_id in sorted(configuration.members):
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
        )

    def notice_for(self, chat_state: chat.ChatState, event: chat.ChatEvent) -> NoticeEvent | None:
        """The notice a membership or nick event shows, if any."""
        now = time.time()
        match event:
            case chat.NickChanged(old=old, new=new) if old:
                return NoticeEvent("nick", f"{old} is now known as {new}", now)
            case chat.MemberJoined():
                role = "voter" if event.voter else "learner"
                name = self.name(chat_state, event.node_id)
                return NoticeEvent("join", f"{name} joined as {role}", now)
            case chat.MemberLeft():
                return NoticeEvent("leave", f"{self.name(chat_state, event.node_id)} left", now)
            case chat.MemberRoleChanged():
                role = "voter" if event.voter else "learner"
                text = f"{self.name(chat_state, event.node_id)} is now a {role}"
                return NoticeEvent("info", text, now)
        return None

    def leader_notice(self, chat_state: chat.ChatState, leader: str, term: int) -> NoticeEvent:
        name = "this node" if leader == self.node_id else self.name(chat_state, leader)
        return NoticeEvent("leader", f"{name} is the leader (term {term})", time.time())
