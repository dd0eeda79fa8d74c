"""A faithful in-memory ChatNode for TUI tests and screenshots.

It keeps the contract of :mod:`raftchat.node.api`: ``send_chat`` validates and
returns an id at once, the message commits only when the test says so
(``commit_next()``, or automatically with ``auto_commit=True``), and then a
ChatMessageEvent followed by an AckEvent is published, in log order, with
status indexes that move as a real node's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

from support.clocks import ManualClock

from raftchat.node.api import (
    AckEvent,
    ChatMessageEvent,
    Event,
    MemberInfo,
    MembersEvent,
    MissingVoter,
    NoticeEvent,
    StatusEvent,
    validate_chat_text,
    validate_nick,
)
from raftchat.node.events import quorum_problem_text
from raftchat.node.forget import forget_line, forgettable, forgotten_text, plan_forget
from raftchat.raft import Configuration


@dataclass
class _Proposal:
    id: str
    text: str
    action: bool
    ts: float


class FakeChatNode:
    """A one-process stand-in for a Raft chat node; the test plays the rest of the cluster."""

    def __init__(
        self,
        *,
        node_id: str = "n1",
        nick: str = "alice",
        channel: str = "lobby",
        clock: Callable[[], float] = lambda: 1_700_000_000.0,
        auto_commit: bool = False,
    ) -> None:
        self._node_id = node_id
        self._nick = nick
        self._channel = channel
        self.clock = clock
        self.auto_commit = auto_commit
        self._history: list[ChatMessageEvent] = []
        self._queues: list[asyncio.Queue[Event]] = []
        self._pending: list[_Proposal] = []
        self._serial = 0
        self.left = False
        self.sent: list[tuple[str, bool]] = []
        """Every (text, action) accepted by send_chat, for assertions."""
        self.forget_calls: list[tuple[tuple[str, ...], bool]] = []
        """Every (names, confirm) given to forget, refused ones included."""
        self._status = StatusEvent(
            node_id=node_id,
            state="leader",
            term=1,
            leader=node_id,
            voters=(node_id,),
            learners=(),
            commit_index=0,
            applied_index=0,
            last_index=0,
            snapshot_index=0,
            election_timeout_ms=300.0,
            counters={},
            signaling_state="connected",
        )
        self._members: tuple[MemberInfo, ...] = (MemberInfo(node_id, nick, "leader", "self", None),)

    # --- ChatNode protocol -------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def nick(self) -> str:
        return self._nick

    @property
    def channel(self) -> str:
        return self._channel

    def history(self) -> Sequence[ChatMessageEvent]:
        return tuple(self._history)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def send_chat(self, text: str, action: bool = False) -> str:
        validate_chat_text(text)
        self._serial += 1
        message_id = f"{self._node_id}:{self._serial}"
        self._pending.append(_Proposal(message_id, text, action, self.clock()))
        self.sent.append((text, action))
        self._set_status(last_index=self._status.last_index + 1)
        if self.auto_commit:
            asyncio.get_running_loop().call_soon(self.commit_next)
        return message_id

    async def set_nick(self, nick: str) -> None:
        validate_nick(nick)
        old, self._nick = self._nick, nick
        self._members = tuple(
            replace(member, nick=nick) if member.node_id == self._node_id else member
            for member in self._members
        )
        self.publish(NoticeEvent("nick", f"{old} is now known as {nick}", self.clock()))
        self.publish(MembersEvent(self._members))

    def status(self) -> StatusEvent:
        return self._status

    def members(self) -> tuple[MemberInfo, ...]:
        return self._members

    async def leave(self) -> None:
        self.left = True
        self.publish(NoticeEvent("leave", f"{self._nick} left the channel", self.clock()))

    def forget(self, names: Sequence[str], confirm: bool = False) -> str | None:
        """The node's rules on the status this fake shows; a confirmed change takes effect
        at once (it commits alone), with the notice a real node gives."""
        self.forget_calls.append((tuple(names), confirm))
        status = self._status
        nicks = {member.node_id: member.nick for member in self._members}
        nicks |= {voter.node_id: voter.nick for voter in status.missing_voters}
        voters = len(status.voters)
        plan = plan_forget(
            names,
            self_id=self._node_id,
            configuration=self._configuration(),
            missing=status.missing_voters,
            needed=status.voters_needed or voters // 2 + 1,
            reachable=voters if status.voters_reachable is None else status.voters_reachable,
            name_of=lambda node_id: nicks.get(node_id, node_id),
        )
        if not confirm:
            return plan.warning
        for node_id in sorted(plan.node_ids):
            self.publish(NoticeEvent("leave", forgotten_text(nicks[node_id]), self.clock()))
        self.set_members([m for m in self._members if m.node_id not in plan.node_ids])
        self.regain_quorum()
        self._set_status(voters=(self._node_id,))
        return None

    # --- test controls -------------------------------------------------------

    def publish(self, event: Event) -> None:
        for queue in self._queues:
            queue.put_nowait(event)

    def commit_next(self) -> ChatMessageEvent | None:
        """Commit the oldest pending own message: ChatMessageEvent, then AckEvent."""
        if not self._pending:
            return None
        proposal = self._pending.pop(0)
        event = self._append(
            proposal.id, self._node_id, self._nick, proposal.text, proposal.ts, proposal.action
        )
        self.publish(AckEvent(proposal.id, event.index))
        return event

    def receive(
        self,
        nick: str,
        text: str,
        *,
        sender_id: str | None = None,
        action: bool = False,
        ts: float | None = None,
    ) -> ChatMessageEvent:
        """A peer's message commits."""
        sender = sender_id or f"peer-{nick}"
        serial = len(self._history) + 1
        return self._append(
            f"{sender}:{serial}", sender, nick, text, self.clock() if ts is None else ts, action
        )

    def load_history(self, messages: Sequence[ChatMessageEvent]) -> None:
        """Pretend these messages were committed before the front end attached."""
        self._history.extend(messages)
        last = self._history[-1].index if self._history else 0
        self._set_status(commit_index=last, applied_index=last, last_index=last, publish=False)

    def set_status(self, **changes: object) -> StatusEvent:
        """Change status fields and publish the new StatusEvent."""
        return self._set_status(**changes)

    def lose_quorum(
        self, missing: Sequence[tuple[str, str, int | None]], *, needed: int, reachable: int
    ) -> StatusEvent:
        """The channel cannot commit: no leader, and ``missing`` (node id, nick, seconds
        silent) are out of reach; the status says so, as a real node's would."""
        absent = tuple(MissingVoter(*entry) for entry in missing)
        voters = tuple(sorted({*self._status.voters, *(voter.node_id for voter in absent)}))
        self._status = replace(self._status, voters=voters)
        gone = [voter.node_id for voter in absent]
        forget = (
            tuple(v.nick for v in absent)
            if forgettable(self._node_id, self._configuration(), gone)
            else ()
        )
        return self._set_status(
            state="pre_candidate",
            leader=None,
            quorum_problem=quorum_problem_text(
                leading=False,
                missing=absent,
                needed=needed,
                reachable=reachable,
                voters=len(voters),
                forget=forget,
            ),
            missing_voters=absent,
            voters_needed=needed,
            voters_reachable=reachable,
            forget_command=forget_line(forget) if forget else None,
        )

    def regain_quorum(self, leader: str | None = None) -> StatusEvent:
        """A leader is known again: commits are possible, the problem is gone."""
        return self._set_status(
            state="follower" if leader and leader != self._node_id else "leader",
            leader=leader or self._node_id,
            term=self._status.term + 1,
            quorum_problem=None,
            missing_voters=(),
            voters_needed=None,
            voters_reachable=None,
            forget_command=None,
        )

    def set_members(self, members: Sequence[MemberInfo]) -> None:
        self._members = tuple(members)
        self.publish(MembersEvent(self._members))

    # --- internals -------------------------------------------------------------

    def _configuration(self) -> Configuration:
        status = self._status
        return Configuration(frozenset(status.voters), frozenset(status.learners))

    def _append(
        self, message_id: str, sender: str, nick: str, text: str, ts: float, action: bool
    ) -> ChatMessageEvent:
        index = self._status.commit_index + 1
        event = ChatMessageEvent(index, message_id, sender, nick, text, ts, action)
        self._history.append(event)
        self.publish(event)
        self._set_status(
            commit_index=index,
            applied_index=index,
            last_index=max(index, self._status.last_index),
        )
        return event

    def _set_status(self, publish: bool = True, **changes: object) -> StatusEvent:
        self._status = replace(self._status, **changes)  # type: ignore[arg-type]
        if publish:
            self.publish(self._status)
        return self._status


def make_history(
    count: int,
    *,
    start_ts: float = 1_700_000_000.0,
    step_s: float = 7.0,
    nicks: Sequence[str] = ("bob", "carol", "dave", "erin"),
) -> list[ChatMessageEvent]:
    """``count`` committed messages from peers, indexes 1..count, for bulk-load tests."""
    messages = []
    for index in range(1, count + 1):
        nick = nicks[index % len(nicks)]
        text = f"message number {index}" + (" with a longer tail" * (index % 7 == 0) * 6)
        messages.append(
            ChatMessageEvent(
                index,
                f"peer-{nick}:{index}",
                f"peer-{nick}",
                nick,
                text,
                start_ts + index * step_s,
            )
        )
    return messages


DEMO_START_TS = 1_718_000_000.0
"""A fixed moment (2024-06-10 06:13 UTC) so screens made from the demo data never change."""

DEMO_CONVERSATION = (
    ("bob", "morning all! is the new build up?", False),
    ("carol", "yes, deployed it at 6. three voters and one learner now", False),
    ("dave", "joined from the train, rtt is awful but it works", False),
    ("bob", "leader moved to carol when my laptop slept, nobody lost a message", False),
    ("alice", "that's the point of raft :) every node has the same log", False),
    ("erin", "reading along, I'm only a learner until someone leaves", False),
    ("carol", "stretches", True),
    ("dave", "alice: can you check the stats pane? what's your commit latency?", False),
    ("alice", "about 40 ms to commit through carol, most of it is the round trip", False),
    (
        "bob",
        "try typing [bold]this[/bold] or an escape \x1b[31m: shown literally, no styling",
        False,
    ),
)


def demo_wall_clock() -> float:
    """The demo's "now": a little after the last message of its conversation."""
    return DEMO_START_TS + 1200


def demo_node(*, auto_commit: bool = False) -> FakeChatNode:
    """A node in a lively five-member channel, with a fixed clock (for screenshots)."""
    node = FakeChatNode(node_id="a1f3c9", nick="alice", channel="raft-lab", clock=demo_wall_clock)
    node.auto_commit = auto_commit
    node_ids = {
        "alice": "a1f3c9",
        "bob": "b7e210",
        "carol": "c04d5a",
        "dave": "d9a7b3",
        "erin": "e52f08",
    }
    history = []
    for number, (nick, text, action) in enumerate(DEMO_CONVERSATION, start=1):
        history.append(
            ChatMessageEvent(
                index=number + 3,
                id=f"{node_ids[nick]}:{number}",
                sender_id=node_ids[nick],
                nick=nick,
                text=text,
                ts=DEMO_START_TS + number * 95,
                action=action,
            )
        )
    node.load_history(history)
    node._members = (
        MemberInfo("c04d5a", "carol", "leader", "connected", 12.0),
        MemberInfo("a1f3c9", "alice", "voter", "self", None),
        MemberInfo("b7e210", "bob", "voter", "connected", 8.0),
        MemberInfo("d9a7b3", "dave", "learner", "connecting", 187.0),
        MemberInfo("e52f08", "erin", "learner", "connected", 23.0),
    )
    node._set_status(
        publish=False,
        state="follower",
        term=4,
        leader="c04d5a",
        voters=("a1f3c9", "b7e210", "c04d5a"),
        learners=("d9a7b3", "e52f08"),
        snapshot_index=0,
        election_timeout_ms=412.0,
        counters={
            "requestvote_sent": 3,
            "requestvote_received": 5,
            "appendentries_sent": 0,
            "appendentries_received": 1874,
            "proposals_forwarded": 2,
        },
    )
    return node


def demo_side_channels() -> list[FakeChatNode]:
    """Two more channels for the demo: #ops (a mention waiting) and #random."""
    ops = FakeChatNode(node_id="a1f3c9", nick="alice", channel="ops", clock=demo_wall_clock)
    random = FakeChatNode(node_id="a1f3c9", nick="alice", channel="random", clock=demo_wall_clock)
    for number, (node, nick, text) in enumerate(
        (
            (ops, "frank", "rolling out the signaling server on the new box"),
            (random, "grace", "anyone tried the wrtc engine yet?"),
        ),
        start=1,
    ):
        node.load_history(
            [ChatMessageEvent(1, f"{nick}:1", f"{nick}-id", nick, text, DEMO_START_TS + number)]
        )
    return [ops, random]


def demo_app(
    clock: ManualClock | None = None, *, channels: Sequence[FakeChatNode] = (), **config: Any
) -> Any:
    """The TUI on :func:`demo_node` (and ``channels``) with fixed clocks and timezone (same
    pixels every run)."""
    from raftchat.tui.app import RaftChatApp, TuiConfig

    node = demo_node()
    settings = TuiConfig(
        tz=UTC,
        monotonic=clock or ManualClock(),
        wall_clock=demo_wall_clock,
        cursor_blink=False,
        rate_interval_s=3600.0,  # charts move only when the demo calls sample_rate()
        **config,
    )
    return RaftChatApp([node, *channels], settings)


async def play_demo_traffic(pilot: Any, clock: ManualClock, rounds: int = 24) -> None:
    """Drive a demo app through ``rounds`` seconds of traffic so the charts have data.

    Each round: a burst of peer messages, one own message committed after a
    varying latency, then one messages/s sample.
    """
    app = pilot.app
    node = app.node
    for number in range(rounds):
        for burst in range(2 + (number * 7) % 5):
            node.receive(("bob", "carol", "erin")[burst % 3], f"load test line {number}.{burst}")
        app.chat_input.value = f"ping {number}"
        await pilot.press("enter")
        latency = 0.030 + ((number * 13) % 9) * 0.004
        clock.now += latency
        node.commit_next()
        for _ in range(1000):
            if not app.chat_log.pending and not any(q.qsize() for q in node._queues):
                break
            await pilot.pause()
        else:
            raise AssertionError("the app did not take in the demo traffic")
        clock.now += 1.0 - latency
        app.sample_rate()
    await pilot.pause()
