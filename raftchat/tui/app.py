"""The raftchat terminal UI: a chat view over a :class:`~raftchat.node.api.ChatNode`.

The app only talks to the node through :mod:`raftchat.node.api`: it shows the
node's history, consumes its event queue in a worker (which posts batches of
events as Textual messages), and calls ``send_chat``/``set_nick``/``leave``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import ClassVar

import platformdirs
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from raftchat import APP_NAME
from raftchat.chat.textsafety import sanitize_text
from raftchat.frontends.commands import TUI_COMMANDS, Forget, InputProblem, RunCommand, SendText
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
from raftchat.tui.chat_lines import ChatRecord, make_message, make_notice
from raftchat.tui.widgets.chat_input import ChatInput
from raftchat.tui.widgets.chat_log import ChatLog
from raftchat.tui.widgets.members_pane import MembersPane
from raftchat.tui.widgets.stats_pane import StatsPane
from raftchat.tui.widgets.status_bar import StatusBar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuiConfig:
    """Settings of the chat UI; the clocks and timezone are injectable for tests."""

    tz: tzinfo | None = None
    """Timezone for timestamps and day separators; None means local time."""
    monotonic: Callable[[], float] = time.monotonic
    """Measures commit latency and message rate."""
    wall_clock: Callable[[], float] = time.time
    """Timestamps of lines the UI makes itself (pending messages, local notices)."""
    cursor_blink: bool = True
    show_stats: bool = True
    show_members: bool = False
    event_batch_max: int = 5000
    """Most node events handled in one UI update (history catch-up comes in batches)."""
    chart_points: int = 60
    """Samples kept by each sparkline."""
    rate_interval_s: float = 1.0
    """How often the messages/s chart takes a sample."""
    leave_timeout_s: float = 5.0
    """How long /leave waits for the node to leave cleanly before quitting anyway."""
    recent_nicks: int = 200
    """Distinct senders remembered for Tab completion (besides current members)."""
    screenshot_dir: Path | None = None
    """Where the palette's Screenshot saves SVGs; None: :func:`default_screenshot_dir`."""

    def __post_init__(self) -> None:
        for name in ("event_batch_max", "chart_points", "recent_nicks"):
            if getattr(self, name) < 1:
                raise ValueError(f"TuiConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("rate_interval_s", "leave_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TuiConfig.{name} must be positive, got {getattr(self, name)}")


class RaftChatApp(App[None]):
    """Chat view, input, stats and members panes for one node."""

    CSS_PATH = "app.tcss"
    TITLE = "raftchat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "toggle_stats", "Stats", tooltip="show or hide the node stats"),
        Binding("f3", "toggle_members", "Members", tooltip="show or hide the members"),
        # Priority: the single-line input would otherwise take the page keys.
        Binding(
            "pageup",
            "scroll_chat(-1)",
            "Scroll",
            key_display="PgUp",
            priority=True,
            tooltip="scroll the chat up a page",
        ),
        Binding(
            "pagedown",
            "scroll_chat(1)",
            "Scroll",
            key_display="PgDn",
            priority=True,
            tooltip="scroll the chat down a page (End: to the newest)",
        ),
        Binding("ctrl+q", "leave", "Leave", priority=True, tooltip="leave the channel and quit"),
        # Ctrl+C quits as in other terminal programs (the input's copy gives way to it).
        Binding("ctrl+c", "leave", "Leave", show=False, priority=True, tooltip="same as Ctrl+Q"),
    ]
    EXTRA_KEYS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Enter", "send the line"),
        ("Up/Down", "recall what you typed"),
        ("Tab", "complete commands and nicks"),
        ("F1", "command palette: theme, screenshot, keys"),
    )
    """Keys /help lists besides the bindings above (the input's own and Textual's)."""

    COMMAND_PALETTE_BINDING = "f1"
    """Ctrl+P (Textual's default) switches to the previous channel here."""

    class NodeEvents(Message):
        """A batch of events from the node, in the order the node published them."""

        def __init__(self, events: tuple[Event, ...]) -> None:
            super().__init__()
            self.events = events

    def __init__(self, node: ChatNode, config: TuiConfig | None = None) -> None:
        super().__init__()
        self.node = node
        self.config = config or TuiConfig()
        self._queue: asyncio.Queue[Event] | None = None
        self._sent_at: dict[str, float] = {}
        self._latencies: deque[float] = deque(maxlen=self.config.chart_points)
        self._rates: deque[float] = deque(maxlen=self.config.chart_points)
        self._committed_since_sample = 0
        self._last_sample = self.config.monotonic()
        self._members: tuple[MemberInfo, ...] = ()
        self._recent_nicks: dict[str, None] = {}
        self._mention_pattern: re.Pattern[str] | None = None
        self._mention_nick = ""
        self._status: StatusEvent | None = None

    # --- layout ----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat-log", tz=self.config.tz)
                yield Static(id="unread")
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
        yield Footer()

    @property
    def chat_log(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        self.title = f"raftchat #{self.node.channel}"
        self.query_one("#stats").display = self.config.show_stats
        self.query_one("#members").display = self.config.show_members
        self._update_side_visibility()
        self.chat_input.cursor_blink = self.config.cursor_blink
        self.chat_input.focus()
        # history() and subscribe() back to back: no await between, so no gap.
        history = self.node.history()
        self._queue = self.node.subscribe()
        self.chat_log.add_records(self._message_record(event) for event in history)
        self._remember_senders(event.nick for event in history[-self.config.recent_nicks :])
        self._show_status(self.node.status())
        self._show_members(self.node.members())
        self._show_latency()
        self.set_interval(self.config.rate_interval_s, self.sample_rate)
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

    def on_raft_chat_app_node_events(self, message: NodeEvents) -> None:
        committed: list[ChatRecord] = []
        for event in message.events:
            if isinstance(event, ChatMessageEvent):
                committed.append(self._on_chat_message(event))
                continue
            if committed:
                self.chat_log.add_records(committed)
                committed = []
            if isinstance(event, AckEvent):
                self._on_ack(event)
            elif isinstance(event, StatusEvent):
                self._show_status(event)
            elif isinstance(event, MembersEvent):
                self._show_members(event.members)
            elif isinstance(event, NoticeEvent):
                self._add_notice(event.kind, event.text, event.ts)
                if event.kind == "nick":
                    self._refresh_status_views()
            elif isinstance(event, ErrorEvent):
                self._add_notice("error", event.message)
            elif isinstance(event, ResetEvent):
                self._reset_history()
            else:
                logger.warning("ignoring unknown node event %r", event)
        if committed:
            self.chat_log.add_records(committed)

    def _reset_history(self) -> None:
        """The node's history was replaced (its part of the channel merges into another):
        drop what is shown but own messages still on their way; the new history follows."""
        pending = list(self.chat_log.pending)
        self.chat_log.clear()
        for record in pending:
            self.chat_log.add_pending(record)
        self._add_notice(
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
            self.bell()
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

    def _add_notice(self, kind: str, text: str, ts: float | None = None) -> None:
        when = self.config.wall_clock() if ts is None else ts
        self.chat_log.add_records([make_notice(ts=when, text=text, kind=kind, tz=self.config.tz)])

    # --- stats, members, status bar ----------------------------------------------

    def _show_status(self, status: StatusEvent) -> None:
        self._status = status
        self._refresh_status_views()
        self._show_quorum_problem(status.quorum_problem)

    def _show_quorum_problem(self, problem: str | None) -> None:
        """The banner above the input: why messages cannot commit now (hidden otherwise)."""
        banner = self.query_one("#quorum-banner", Static)
        banner.update(Text("\u26a0 " + sanitize_text(problem)) if problem else "")
        banner.set_class(bool(problem), "-visible")

    def _refresh_status_views(self) -> None:
        """Status bar and stats pane: they name the leader by nick, so members matter too."""
        status = self._status or self.node.status()
        leader_nick = next(
            (member.nick for member in self._members if member.node_id == status.leader), None
        )
        self.query_one(StatusBar).show(self.node.channel, self.node.nick, status, leader_nick)
        self.query_one(StatsPane).show_status(status, leader_nick)

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

    # --- input ---------------------------------------------------------------------

    @on(Input.Submitted, "#input")
    def _on_submit(self, event: Input.Submitted) -> None:
        line = event.value
        parsed = TUI_COMMANDS.parse(line)
        if parsed is None:
            return
        if isinstance(parsed, InputProblem):
            self._show_input_error(parsed.sentence())
            return
        if isinstance(parsed, SendText):
            done = self._send(parsed.text, parsed.action)
        elif isinstance(parsed, Forget):
            done = self._forget(parsed)
        else:
            done = self._run_command(parsed)
        if not done:
            return
        self.chat_input.remember(line)
        self.chat_input.value = ""

    @on(Input.Changed, "#input")
    def _on_input_changed(self) -> None:
        self._show_input_error("")

    def _show_input_error(self, message: str) -> None:
        error = self.query_one("#input-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")

    def _send(self, text: str, action: bool) -> bool:
        """Propose a message and show it as pending; False (with an error shown) if refused."""
        try:
            validate_chat_text(text)
            message_id = self.node.send_chat(text, action=action)
        except ChatInputError as error:
            self._show_input_error(str(error))
            return False
        except Exception as error:  # the node may be stopping; the UI must stay up
            logger.exception("send_chat failed")
            self._show_input_error(f"Could not send the message: {error}. Try again.")
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

    def _run_command(self, command: RunCommand) -> bool:
        """Run a command; False (with an error shown) if it cannot run as typed."""
        name = command.name
        if name == "/help":
            for line in [*TUI_COMMANDS.help_lines(), *self.key_help_lines()]:
                self._add_notice("info", line)
        elif name == "/nick":
            try:
                validate_nick(command.argument)
            except ChatInputError as error:
                self._show_input_error(str(error))
                return False
            self._change_nick(command.argument)
        elif name == "/members":
            self.action_toggle_members()
        elif name == "/stats":
            self.action_toggle_stats()
        elif name in ("/leave", "/quit"):
            self.action_leave()
        return True

    def _forget(self, command: Forget) -> bool:
        """Show the warning, or carry on without the members (the node's notice follows);
        False (with the reason shown) if the node refuses."""
        try:
            warning = self.node.forget(command.names, confirm=command.confirm)
        except ChatInputError as error:
            self._show_input_error(str(error))
            return False
        except Exception as error:  # the node may be stopping; the UI must stay up
            logger.exception("forget failed")
            self._show_input_error(f"Could not forget: {error}.")
            return False
        if warning is not None:
            self._add_notice("error", warning)
        return True

    @work(group="nick")
    async def _change_nick(self, nick: str) -> None:
        try:
            await self.node.set_nick(nick)
        except ChatInputError as error:
            self._show_input_error(str(error))
        except Exception as error:
            logger.exception("set_nick failed")
            self._show_input_error(f"Could not change the nick: {error}. Try again.")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's palette, with Quit leaving the channels cleanly and Screenshot saving
        to :attr:`TuiConfig.screenshot_dir` and saying where."""
        for command in super().get_system_commands(screen):
            if command.title == "Quit":
                yield SystemCommand("Quit", "Leave the channel and quit", self.action_leave)
            elif command.title == "Screenshot":
                yield SystemCommand(
                    "Screenshot",
                    f"Save an SVG of the screen in {self.screenshot_dir()}",
                    self.action_save_screenshot,
                )
            else:
                yield command

    def screenshot_dir(self) -> Path:
        return self.config.screenshot_dir or default_screenshot_dir()

    def action_save_screenshot(self) -> None:
        """Save the screen as an SVG file and say where (or why not)."""
        folder = self.screenshot_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = self.save_screenshot(path=str(folder))
        except OSError as error:
            self.notify(
                f"Could not save a screenshot in {folder}: {error.strerror or error}",
                title="Screenshot",
                severity="error",
                markup=False,
            )
            return
        self.notify(f"Saved {path}", title="Screenshot", markup=False)

    def key_help_lines(self) -> list[str]:
        """The keys, as /help lists them: the bindings (once per key) and the extra keys."""
        keys: dict[str, str] = {}
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            for key in binding.key.split(","):
                keys.setdefault(binding.key_display or key_label(key), binding.tooltip)
        keys.update(self.EXTRA_KEYS)
        return [f"{key:<9} {what}" for key, what in keys.items()]

    # --- actions ---------------------------------------------------------------------

    def action_toggle_stats(self) -> None:
        stats = self.query_one("#stats")
        stats.display = not stats.display
        self._update_side_visibility()

    def action_toggle_members(self) -> None:
        members = self.query_one("#members")
        members.display = not members.display
        self._update_side_visibility()

    def _update_side_visibility(self) -> None:
        side = self.query_one("#side")
        side.display = self.query_one("#stats").display or self.query_one("#members").display

    def action_scroll_chat(self, pages: int) -> None:
        chat_log = self.chat_log
        if pages < 0:
            chat_log.scroll_page_up(animate=False)
        else:
            chat_log.scroll_page_down(animate=False)

    @on(ChatInput.JumpToLatest)
    def _on_jump_to_latest(self) -> None:
        self.chat_log.scroll_to_latest()

    @on(ChatLog.UnreadChanged)
    def _on_unread_changed(self, event: ChatLog.UnreadChanged) -> None:
        unread = self.query_one("#unread", Static)
        plural = "" if event.unread == 1 else "s"
        unread.update(f"\u2193 {event.unread} new message{plural} \u2014 press End to jump")
        unread.set_class(event.unread > 0, "-visible")

    def action_leave(self) -> None:
        self._add_notice("info", "Leaving the channel\u2026")
        self._leave_and_exit()

    @work(exclusive=True, group="leave")
    async def _leave_and_exit(self) -> None:
        try:
            await asyncio.wait_for(self.node.leave(), self.config.leave_timeout_s)
        except TimeoutError:
            logger.warning("leaving took over %.1f s; quitting anyway", self.config.leave_timeout_s)
        except Exception:
            logger.exception("leaving the channel failed; quitting anyway")
        self.exit()


def default_screenshot_dir() -> Path:
    """Where Screenshot saves unless :attr:`TuiConfig.screenshot_dir` says otherwise:
    ``screenshots`` in the user data folder (``~/.local/share/raftchat/screenshots``)."""
    return platformdirs.user_data_path(APP_NAME) / "screenshots"


def key_label(key: str) -> str:
    """``ctrl+q`` as people write it: ``Ctrl+Q``; ``f2``: ``F2``."""
    parts = key.split("+")
    return "+".join(part.upper() if len(part) == 1 else part.capitalize() for part in parts)


async def run_app(node: ChatNode, config: TuiConfig | None = None) -> None:
    """Run the chat UI for ``node`` inside an already running event loop (the node's)."""
    await RaftChatApp(node, config).run_async()
