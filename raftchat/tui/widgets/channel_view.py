"""One channel's buffer: its chat log, input (with its own line history), stats and
members panes, and the worker that consumes its node's events.

The app shows one ChannelView at a time and switches between them; each keeps
everything of its channel, so switching loses nothing. A view tells the app what the
channel list and status bar need through messages (:class:`ChannelView.Activity`,
:class:`ChannelView.StatusChanged`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from raftchat.chat.textsafety import sanitize_text
from raftchat.frontends.commands import Forget
from raftchat.node.api import (
    AckEvent,
    ChatInputError,
    ChatMessageEvent,
    ChatNode,
    ErrorEvent,
    Event,
    MemberInfo,
    MembersEvent,
    NoticeEvent,
    ResetEvent,
    StatusEvent,
    validate_chat_text,
    validate_nick,
)
from raftchat.settings import NoticeMode
from raftchat.tui.chat_lines import ChatRecord, make_message, make_notice
from raftchat.tui.notices import NoticeBurst, is_membership
from raftchat.tui.search import HistorySearch
from raftchat.tui.widgets.chat_input import ChatInput
from raftchat.tui.widgets.chat_log import ChatLog
from raftchat.tui.widgets.members_pane import MembersPane
from raftchat.tui.widgets.stats_pane import StatsPane

if TYPE_CHECKING:
    from raftchat.tui.app import TuiConfig

logger = logging.getLogger(__name__)


class ChannelView(Vertical):
    """Everything the UI shows of one channel (one node)."""

    class Activity(Message):
        """Messages arrived in this channel (``mentions``: some name this user)."""

        def __init__(self, view: ChannelView, messages: int, mentions: int) -> None:
            super().__init__()
            self.view = view
            self.messages = messages
            self.mentions = mentions

    class StatusChanged(Message):
        """The status bar's facts about this channel changed."""

        def __init__(self, view: ChannelView) -> None:
            super().__init__()
            self.view = view

    class NodeEvents(Message):
        """A batch of events from the node, in the order the node published them."""

        def __init__(self, events: tuple[Event, ...]) -> None:
            super().__init__()
            self.events = events

    def __init__(self, node: ChatNode, config: TuiConfig, notice_mode: NoticeMode) -> None:
        super().__init__(classes="channel-view")
        self.node = node
        self.config = config
        self.notice_mode: NoticeMode = notice_mode
        self.channel = node.channel
        self._queue: asyncio.Queue[Event] | None = None
        self._sent_at: dict[str, float] = {}
        self._latencies: deque[float] = deque(maxlen=config.chart_points)
        self._rates: deque[float] = deque(maxlen=config.chart_points)
        self._committed_since_sample = 0
        self._last_sample = config.monotonic()
        self._members: tuple[MemberInfo, ...] = ()
        self._recent_nicks: dict[str, None] = {}
        self._mention_pattern: re.Pattern[str] | None = None
        self._mention_nick = ""
        self.status: StatusEvent | None = None
        self.leader_nick: str | None = None
        self._burst: NoticeBurst | None = None
        self._burst_record: ChatRecord | None = None
        self.search = HistorySearch()

    # --- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat-log", tz=self.config.tz)
                yield Static(id="unread")
                yield Static(id="search-status")
            with VerticalScroll(id="side"):
                yield MembersPane(id="members")
                yield StatsPane(id="stats")
        yield Static(id="quorum-banner")
        yield Static(id="input-error")
        yield ChatInput(
            id="input",
            nick_source=self._completion_nicks,
            placeholder="Message, or /help for commands",
        )

    @property
    def chat_log(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        self.query_one("#stats").display = self.config.show_stats
        self.query_one("#members").display = self.config.show_members
        self.update_side_visibility()
        self.chat_input.cursor_blink = self.config.cursor_blink
        # history() and subscribe() back to back: no await between, so no gap.
        history = self.node.history()
        self._queue = self.node.subscribe()
        self.chat_log.add_records(self._message_record(event) for event in history)
        self._remember_senders(event.nick for event in history[-self.config.recent_nicks :])
        self._show_status(self.node.status())
        self._show_members(self.node.members())
        self._show_latency()
        self._consume_events(self._queue)

    def on_unmount(self) -> None:
        if self._queue is not None:
            self.node.unsubscribe(self._queue)

    @work(exclusive=True, group="node-events")
    async def _consume_events(self, queue: asyncio.Queue[Event]) -> None:
        """Move node events to the UI in batches, so a burst costs one screen update."""
        limit = self.config.event_batch_max
        while True:
            batch = [await queue.get()]
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            self.post_message(self.NodeEvents(tuple(batch)))

    # --- node events -------------------------------------------------------------

    def on_channel_view_node_events(self, message: NodeEvents) -> None:
        message.stop()
        committed: list[ChatRecord] = []
        for event in message.events:
            if isinstance(event, ChatMessageEvent):
                committed.append(self._on_chat_message(event))
                continue
            if committed:
                self._add_committed(committed)
                committed = []
            if isinstance(event, AckEvent):
                self._on_ack(event)
            elif isinstance(event, StatusEvent):
                self._show_status(event)
            elif isinstance(event, MembersEvent):
                self._show_members(event.members)
            elif isinstance(event, NoticeEvent):
                self._on_notice(event)
            elif isinstance(event, ErrorEvent):
                self.add_notice("error", event.message)
            elif isinstance(event, ResetEvent):
                self._reset_history()
            else:
                logger.warning("ignoring unknown node event %r", event)
        if committed:
            self._add_committed(committed)

    def _add_committed(self, records: list[ChatRecord]) -> None:
        self._end_burst()
        self.chat_log.add_records(records)
        mentions = sum(1 for record in records if record.mention)
        self.post_message(self.Activity(self, len(records), mentions))

    def _reset_history(self) -> None:
        """The node's history was replaced (its part of the channel merges into another):
        drop what is shown but own messages still on their way; the new history follows."""
        pending = list(self.chat_log.pending)
        self.chat_log.clear()
        self.search.clear()
        self._end_burst()
        for record in pending:
            self.chat_log.add_pending(record)
        self.add_notice(
            "info",
            "this part of the channel split off while its members were away and now merges"
            " into the older part: the channel's history follows in its order",
        )

    def _on_chat_message(self, event: ChatMessageEvent) -> ChatRecord:
        self._committed_since_sample += 1
        self._remember_senders((event.nick,))
        if event.id in self._sent_at:
            self._record_latency(event.id)
            self.chat_log.remove_pending(event.id)
        record = self._message_record(event)
        if record.mention:
            self.app.bell()
        return record

    def _on_ack(self, event: AckEvent) -> None:
        """Normally the message already moved when its ChatMessageEvent came; if not, move it."""
        if event.id not in self._sent_at:
            return
        self._record_latency(event.id)
        record = self.chat_log.remove_pending(event.id)
        if record is not None:
            record.pending = False
            record.renew_key()
            self.chat_log.add_records([record])

    def _message_record(self, event: ChatMessageEvent) -> ChatRecord:
        own = event.sender_id == self.node.node_id
        return make_message(
            ts=event.ts,
            nick=event.nick,
            text=event.text,
            tz=self.config.tz,
            message_id=event.id,
            action=event.action,
            own=own,
            mention=not own and self._mentions_me(event.text),
        )

    def _mentions_me(self, text: str) -> bool:
        """True if ``text`` names this node's nick as a word (any case)."""
        nick = self.node.nick
        if nick != self._mention_nick:
            self._mention_nick = nick
            self._mention_pattern = (
                re.compile(rf"(?<!\w){re.escape(nick)}(?!\w)", re.IGNORECASE) if nick else None
            )
        pattern = self._mention_pattern
        # The substring test is a cheap filter: history at join can be 100,000 messages.
        return (
            pattern is not None
            and nick.lower() in text.lower()
            and pattern.search(text) is not None
        )

    # --- notices -------------------------------------------------------------------

    def _on_notice(self, event: NoticeEvent) -> None:
        if event.kind == "nick":
            self._end_burst()
            self.add_notice(event.kind, event.text, event.ts)
            self._refresh_status_views()
            return
        if not is_membership(event) or self.notice_mode == "all":
            self._end_burst()
            self.add_notice(event.kind, event.text, event.ts)
            return
        if self.notice_mode == "none":
            return
        self._fold_notice(event)

    def _fold_notice(self, event: NoticeEvent) -> None:
        """Add a membership notice to the burst line at the bottom, or start one."""
        burst = self._burst
        chat_log = self.chat_log
        name = event.text.split(" ", 1)[0]
        if (
            burst is not None
            and self._burst_record is not None
            and chat_log.records
            and chat_log.records[-1] is self._burst_record
            and burst.continues(event)
        ):
            burst.add(event, name)
            record = make_notice(
                ts=burst.started, text=burst.text(), kind=burst.kind, tz=self.config.tz
            )
            chat_log.replace_last(record)
            self._burst_record = record
            return
        burst = NoticeBurst(started=event.ts, last=event.ts)
        burst.add(event, name)
        record = make_notice(ts=event.ts, text=burst.text(), kind=burst.kind, tz=self.config.tz)
        chat_log.add_records([record])
        self._burst, self._burst_record = burst, record

    def _end_burst(self) -> None:
        self._burst = self._burst_record = None

    def add_notice(self, kind: str, text: str, ts: float | None = None) -> None:
        when = self.config.wall_clock() if ts is None else ts
        self._end_burst()
        self.chat_log.add_records([make_notice(ts=when, text=text, kind=kind, tz=self.config.tz)])

    # --- stats, members, status bar ----------------------------------------------

    def _show_status(self, status: StatusEvent) -> None:
        self.status = status
        self._refresh_status_views()
        self._show_quorum_problem(status.quorum_problem)

    def _show_quorum_problem(self, problem: str | None) -> None:
        """The banner above the input: why messages cannot commit now (hidden otherwise)."""
        banner = self.query_one("#quorum-banner", Static)
        banner.update(Text("\u26a0 " + sanitize_text(problem)) if problem else "")
        banner.set_class(bool(problem), "-visible")

    def _refresh_status_views(self) -> None:
        """Status bar and stats pane: they name the leader by nick, so members matter too."""
        status = self.status or self.node.status()
        self.leader_nick = next(
            (member.nick for member in self._members if member.node_id == status.leader), None
        )
        self.query_one(StatsPane).show_status(status, self.leader_nick)
        self.post_message(self.StatusChanged(self))

    def _show_members(self, members: tuple[MemberInfo, ...]) -> None:
        self._members = members
        self.query_one(MembersPane).show_members(members)
        self._refresh_status_views()

    def _record_latency(self, message_id: str) -> None:
        sent = self._sent_at.pop(message_id)
        self._latencies.append((self.config.monotonic() - sent) * 1000.0)
        self._show_latency()

    def _show_latency(self) -> None:
        self.query_one(StatsPane).show_latency(list(self._latencies))

    def sample_rate(self) -> None:
        """Add a messages/s point to the chart (called every `rate_interval_s`)."""
        now = self.config.monotonic()
        elapsed = now - self._last_sample
        if elapsed <= 0:
            return
        self._rates.append(self._committed_since_sample / elapsed)
        self._committed_since_sample = 0
        self._last_sample = now
        self.query_one(StatsPane).show_rate(list(self._rates))

    def _remember_senders(self, nicks: Iterable[str]) -> None:
        recent = self._recent_nicks
        for nick in nicks:
            recent.pop(nick, None)
            recent[nick] = None
        while len(recent) > self.config.recent_nicks:
            del recent[next(iter(recent))]

    def _completion_nicks(self) -> list[str]:
        return [*(member.nick for member in self._members), *self._recent_nicks]

    # --- input -----------------------------------------------------------------------

    def show_input_error(self, message: str) -> None:
        error = self.query_one("#input-error", Static)
        error.update(Text(message))
        error.set_class(bool(message), "-visible")

    def send(self, text: str, action: bool) -> bool:
        """Propose a message and show it as pending; False (with an error shown) if refused."""
        try:
            validate_chat_text(text)
            message_id = self.node.send_chat(text, action=action)
        except ChatInputError as error:
            self.show_input_error(str(error))
            return False
        except Exception as error:  # the node may be stopping; the UI must stay up
            logger.exception("send_chat failed")
            self.show_input_error(f"Could not send the message: {error}. Try again.")
            return False
        self._sent_at[message_id] = self.config.monotonic()
        self.chat_log.add_pending(
            make_message(
                ts=self.config.wall_clock(),
                nick=self.node.nick,
                text=text,
                tz=self.config.tz,
                message_id=message_id,
                action=action,
                own=True,
                pending=True,
            )
        )
        return True

    def change_nick(self, nick: str) -> bool:
        try:
            validate_nick(nick)
        except ChatInputError as error:
            self.show_input_error(str(error))
            return False
        self._change_nick(nick)
        return True

    @work(group="nick")
    async def _change_nick(self, nick: str) -> None:
        try:
            await self.node.set_nick(nick)
        except ChatInputError as error:
            self.show_input_error(str(error))
        except Exception as error:
            logger.exception("set_nick failed")
            self.show_input_error(f"Could not change the nick: {error}. Try again.")

    def forget(self, command: Forget) -> bool:
        """Show the warning, or carry on without the members (the node's notice follows);
        False (with the reason shown) if the node refuses."""
        try:
            warning = self.node.forget(command.names, confirm=command.confirm)
        except ChatInputError as error:
            self.show_input_error(str(error))
            return False
        except Exception as error:  # the node may be stopping; the UI must stay up
            logger.exception("forget failed")
            self.show_input_error(f"Could not forget: {error}.")
            return False
        if warning is not None:
            self.add_notice("error", warning)
        return True

    # --- panes and scrolling ---------------------------------------------------------

    def toggle_pane(self, pane_id: str) -> None:
        pane = self.query_one(f"#{pane_id}")
        pane.display = not pane.display
        self.update_side_visibility()

    def update_side_visibility(self) -> None:
        side = self.query_one("#side")
        side.display = self.query_one("#stats").display or self.query_one("#members").display
        self.set_class(side.display, "-side-open")

    def close_side_panes(self) -> None:
        self.query_one("#stats").display = False
        self.query_one("#members").display = False
        self.update_side_visibility()

    def on_chat_log_unread_changed(self, event: ChatLog.UnreadChanged) -> None:
        unread = self.query_one("#unread", Static)
        plural = "" if event.unread == 1 else "s"
        unread.update(f"\u2193 {event.unread} new message{plural} \u2014 press End to jump")
        unread.set_class(event.unread > 0, "-visible")

    def on_chat_input_jump_to_latest(self) -> None:
        self.chat_log.scroll_to_latest()

    # --- history search ----------------------------------------------------------------

    def start_search(self, query: str) -> None:
        self._unmark_found()
        self.search.start(self.chat_log.records, query)
        self._show_found()

    def step_search(self, older: bool) -> None:
        if not self.search.active:
            return
        self._unmark_found()
        if older:
            self.search.older()
        else:
            self.search.newer()
        self._show_found()

    def end_search(self) -> bool:
        """End the search (back to the newest messages); False if none was on."""
        if not self.search.active:
            return False
        self._unmark_found()
        self.search.clear()
        self._show_search_status()
        self.chat_log.scroll_to_latest()
        return True

    def _show_found(self) -> None:
        position = self.search.position
        if position is not None:
            record = self.chat_log.records[position]
            record.found = True
            record.renew_key()
            self.chat_log.refresh_record(position)
            self.chat_log.scroll_to_record(position)
        self._show_search_status()

    def _unmark_found(self) -> None:
        position = self.search.position
        if position is not None and position < len(self.chat_log.records):
            record = self.chat_log.records[position]
            record.found = False
            record.renew_key()
            self.chat_log.refresh_record(position)

    def _show_search_status(self) -> None:
        status = self.query_one("#search-status", Static)
        status.update(Text("search " + self.search.describe()) if self.search.active else "")
        status.set_class(self.search.active, "-visible")
