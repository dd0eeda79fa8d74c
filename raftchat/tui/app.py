"""The raftchat terminal UI: one buffer per channel over :class:`~raftchat.node.api.ChatNode`\\ s.

The app only talks to the nodes through :mod:`raftchat.node.api` (each
:class:`~raftchat.tui.widgets.channel_view.ChannelView` shows one node's history and
consumes its events) and opens or closes channels through a
:class:`~raftchat.frontends.channels.ChannelHost` when it has one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import ClassVar

import platformdirs
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer, Input

from raftchat import APP_NAME
from raftchat.frontends.channels import ChannelHost, ChannelOpenError
from raftchat.frontends.commands import TUI_COMMANDS, Forget, InputProblem, RunCommand, SendText
from raftchat.node.api import ChatNode
from raftchat.settings import DEFAULT_NOTICE_MODE, NoticeMode, default_config_path
from raftchat.tui.notices import notice_mode_problem
from raftchat.tui.terminal_keys import report_alt_digits
from raftchat.tui.widgets.channel_list import ChannelList
from raftchat.tui.widgets.channel_view import ChannelView
from raftchat.tui.widgets.chat_input import ChatInput
from raftchat.tui.widgets.chat_log import ChatLog
from raftchat.tui.widgets.status_bar import StatusBar

logger = logging.getLogger(__name__)

NARROW_WIDTH = 100
"""Below this many columns the side panes are closed; F2/F3 open one in the chat's place."""
MAX_NUMBERED_CHANNELS = 9
"""Alt+1 … Alt+9 switch to the first nine channels."""


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
    """Samples kept by each chart."""
    rate_interval_s: float = 1.0
    """How often the messages/s chart takes a sample."""
    leave_timeout_s: float = 5.0
    """How long /leave waits for the node to leave cleanly before quitting anyway."""
    recent_nicks: int = 200
    """Distinct senders remembered for Tab completion (besides current members)."""
    screenshot_dir: Path | None = None
    """Where the palette's Screenshot saves SVGs; None: :func:`default_screenshot_dir`."""
    notices: NoticeMode = DEFAULT_NOTICE_MODE
    """How membership notices show at start (the ``notices`` setting; ``/set notices``
    changes it while the app runs)."""
    config_file: Path | None = None
    """The config file the settings came from, named when ``/set`` says how to keep a
    change; None: :func:`~raftchat.settings.default_config_path`."""

    def __post_init__(self) -> None:
        for name in ("event_batch_max", "chart_points", "recent_nicks"):
            if getattr(self, name) < 1:
                raise ValueError(f"TuiConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("rate_interval_s", "leave_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TuiConfig.{name} must be positive, got {getattr(self, name)}")
        problem = notice_mode_problem(self.notices)
        if problem is not None:
            raise ValueError(f"TuiConfig.notices: {problem}")


class RaftChatApp(App[None]):
    """A buffer per channel (chat, input, stats and members), a channel list, a status bar."""

    CSS_PATH = "app.tcss"
    TITLE = "raftchat"
    COMMAND_PALETTE_BINDING = "f1"
    """Ctrl+P (Textual's default) switches to the previous channel here."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "toggle_pane('stats')", "Stats", tooltip="show or hide the node stats"),
        Binding("f3", "toggle_pane('members')", "Members", tooltip="show or hide the members"),
        # Priority: the single-line input would otherwise take these keys.
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
        Binding(
            "ctrl+n", "cycle_channel(1)", "Next", show=False, priority=True,
            tooltip="next channel",
        ),
        Binding(
            "ctrl+p", "cycle_channel(-1)", "Previous", show=False, priority=True,
            tooltip="previous channel",
        ),
        *(
            Binding(
                f"alt+{number}",
                f"switch_channel({number - 1})",
                show=False,
                priority=True,
                key_display="Alt+1…9" if number == 1 else None,
                tooltip="go to channel 1 … 9 of the list" if number == 1 else "",
            )
            for number in range(1, MAX_NUMBERED_CHANNELS + 1)
        ),
        Binding(
            "ctrl+f", "search(1)", "Search", show=False, priority=True,
            tooltip="search: older match (starts /search when none is on)",
        ),
        Binding(
            "ctrl+g", "search(0)", "Newer", show=False, priority=True,
            tooltip="search: newer match",
        ),
        Binding(
            "escape", "end_search", show=False, key_display="Esc",
            tooltip="end the search",
        ),
        Binding(
            "ctrl+q", "quit_all", "Quit", priority=True, tooltip="leave every channel and quit"
        ),
        # Ctrl+C quits as in other terminal programs (the input's copy gives way to it).
        Binding(
            "ctrl+c", "quit_all", "Quit", show=False, priority=True, tooltip="same as Ctrl+Q"
        ),
    ]  # fmt: skip
    EXTRA_KEYS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Enter", "send the line"),
        ("Up/Down", "recall what you typed in this channel"),
        ("Tab", "complete commands and nicks"),
        ("End", "jump to the newest message"),
        ("F1", "command palette: theme, screenshot, keys"),
    )
    """Keys /help lists besides the bindings above (the input's own and Textual's)."""

    def __init__(
        self,
        nodes: ChatNode | Sequence[ChatNode],
        config: TuiConfig | None = None,
        host: ChannelHost | None = None,
    ) -> None:
        super().__init__()
        report_alt_digits()  # Alt+1…9 switch channels in xterm, tmux and the like
        self.config = config or TuiConfig()
        self.host = host
        self.notice_mode: NoticeMode = self.config.notices
        self._initial_nodes = list(nodes) if isinstance(nodes, Sequence) else [nodes]
        if not self._initial_nodes:
            raise ValueError("RaftChatApp needs at least one node")
        self._view_numbers = iter(range(1, 1_000_000))
        self.active_view: ChannelView | None = None
        self.unread: dict[ChannelView, tuple[int, int]] = {}
        """Per view that is not shown: (messages, mentions) since it was last shown."""
        self._narrow = False
        self._leaving = False

    # --- layout ----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield ChannelList(id="channel-list")
        with Container(id="channels"):
            for node in self._initial_nodes:
                yield self._new_view(node)
        yield Footer()

    def _new_view(self, node: ChatNode) -> ChannelView:
        view = ChannelView(node, self.config, self.notice_mode)
        view.id = f"channel-{next(self._view_numbers)}"
        return view

    @property
    def views(self) -> list[ChannelView]:
        return list(self.query_one("#channels").query_children(ChannelView))

    @property
    def view(self) -> ChannelView:
        """The channel shown now."""
        assert self.active_view is not None
        return self.active_view

    @property
    def node(self) -> ChatNode:
        return self.view.node

    @property
    def chat_log(self) -> ChatLog:
        return self.view.chat_log

    @property
    def chat_input(self) -> ChatInput:
        return self.view.chat_input

    def on_mount(self) -> None:
        self.show_view(self.views[0])
        self._apply_width(self.size.width)
        self.set_interval(self.config.rate_interval_s, self.sample_rate)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        """Narrow screens: side panes close, and one opened with F2/F3 takes the chat's place."""
        narrow = width < NARROW_WIDTH
        if narrow == self._narrow:
            return
        self._narrow = narrow
        self.screen.set_class(narrow, "-narrow")
        if narrow:
            for view in self.views:
                view.close_side_panes()

    def sample_rate(self) -> None:
        for view in self.views:
            view.sample_rate()

    # --- switching channels ------------------------------------------------------

    def show_view(self, view: ChannelView) -> None:
        for other in self.views:
            other.display = other is view
        self.active_view = view
        self.unread.pop(view, None)
        self.title = f"raftchat #{view.channel}"
        view.chat_input.focus()
        self._refresh_channel_list()
        self._refresh_status_bar()

    def action_switch_channel(self, number: int) -> None:
        views = self.views
        if 0 <= number < len(views):
            self.show_view(views[number])

    def action_cycle_channel(self, step: int) -> None:
        views = self.views
        position = views.index(self.view)
        self.show_view(views[(position + step) % len(views)])

    def _refresh_channel_list(self) -> None:
        views = self.views
        channel_list = self.query_one(ChannelList)
        channel_list.show(
            [(view.channel, *self.unread.get(view, (0, 0))) for view in views],
            views.index(self.view) if self.active_view in views else None,
        )
        channel_list.set_class(len(views) > 1, "-visible")

    def _refresh_status_bar(self) -> None:
        view = self.active_view
        if view is None or view.status is None:
            return
        self.query_one(StatusBar).show(view.channel, view.node.nick, view.status, view.leader_nick)

    @on(ChannelView.Activity)
    def _on_activity(self, event: ChannelView.Activity) -> None:
        if event.view is self.active_view:
            return
        messages, mentions = self.unread.get(event.view, (0, 0))
        self.unread[event.view] = (messages + event.messages, mentions + event.mentions)
        self._refresh_channel_list()

    @on(ChannelView.StatusChanged)
    def _on_status_changed(self, event: ChannelView.StatusChanged) -> None:
        if event.view is self.active_view:
            self._refresh_status_bar()

    # --- input -------------------------------------------------------------------

    @on(Input.Submitted, "#input")
    def _on_submit(self, event: Input.Submitted) -> None:
        view = next((node for node in event.input.ancestors if isinstance(node, ChannelView)), None)
        if view is None:
            return
        line = event.value
        parsed = TUI_COMMANDS.parse(line)
        if parsed is None:
            return
        if isinstance(parsed, InputProblem):
            view.show_input_error(parsed.sentence())
            return
        if isinstance(parsed, SendText):
            done = view.send(parsed.text, parsed.action)
        elif isinstance(parsed, Forget):
            done = view.forget(parsed)
        else:
            done = self._run_command(view, parsed)
        if not done:
            return
        view.chat_input.remember(line)
        view.chat_input.value = ""

    @on(Input.Changed, "#input")
    def _on_input_changed(self, event: Input.Changed) -> None:
        for view in event.input.ancestors:
            if isinstance(view, ChannelView):
                view.show_input_error("")

    def _run_command(self, view: ChannelView, command: RunCommand) -> bool:
        """Run a command; False (with an error shown) if it cannot run as typed."""
        name, argument = command.name, command.argument
        if name == "/help":
            for line in [*TUI_COMMANDS.help_lines(), *self.key_help_lines()]:
                view.add_notice("info", line)
        elif name == "/nick":
            return view.change_nick(argument)
        elif name == "/members":
            self.action_toggle_pane("members")
        elif name == "/stats":
            self.action_toggle_pane("stats")
        elif name == "/search":
            view.start_search(argument)
        elif name == "/set":
            return self._set(view, argument)
        elif name == "/join":
            return self._join(view, argument)
        elif name == "/part" or (name == "/leave" and len(self.views) > 1):
            self._part(view)
        elif name in ("/leave", "/quit"):
            self.action_quit_all()
        return True

    def _set(self, view: ChannelView, argument: str) -> bool:
        key, _, value = argument.partition(" ")
        value = value.strip().lower()
        if key.lower() != "notices":
            view.show_input_error(f"Unknown setting {key!r}: type /set notices all|smart|none")
            return False
        problem = notice_mode_problem(value)
        if problem is not None:
            view.show_input_error(f"Cannot set that: {problem}.")
            return False
        self.notice_mode = value  # type: ignore[assignment]
        for each in self.views:
            each.notice_mode = self.notice_mode
        view.add_notice("info", self.set_notices_text(value))
        return True

    def set_notices_text(self, value: str) -> str:
        """What ``/set notices VALUE`` says: it is not saved (raftchat never writes the
        user's config file, which may hold comments), and the line that would keep it."""
        config_file = self.config.config_file or default_config_path()
        return (
            f"membership notices: {value} until you quit (not saved); to keep it, put"
            f' notices = "{value}" in {config_file}'
        )

    # --- opening and closing channels -----------------------------------------------

    def _join(self, view: ChannelView, name: str) -> bool:
        if self.host is None:
            view.show_input_error(
                "This window shows one channel: start another raftchat join to be in"
                f" #{name} as well."
            )
            return False
        for other in self.views:
            if other.channel == name:
                self.show_view(other)
                return True
        view.add_notice("info", f"joining #{name}\u2026")
        self._open_channel(view, name)
        return True

    @work(group="channels")
    async def _open_channel(self, asking: ChannelView, name: str) -> None:
        assert self.host is not None
        try:
            node = await self.host.open(name)
        except ChannelOpenError as error:
            if asking.is_attached:
                asking.add_notice("error", f"Could not join #{name}: {error}")
            return
        except Exception as error:  # the UI must stay up whatever the host does
            logger.exception("opening channel %r failed", name)
            if asking.is_attached:
                asking.add_notice("error", f"Could not join #{name}: {error}")
            return
        for other in self.views:
            if other.channel == node.channel:  # the host named it as one already open
                self.show_view(other)
                return
        view = self._new_view(node)
        await self.query_one("#channels").mount(view)
        if self._narrow:
            view.close_side_panes()
        self.show_view(view)

    def _part(self, view: ChannelView) -> None:
        if len(self.views) == 1:
            self.action_quit_all()
            return
        view.add_notice("info", f"Leaving #{view.channel}\u2026")
        self._close_channel(view)

    @work(group="channels")
    async def _close_channel(self, view: ChannelView) -> None:
        await self._leave(view)
        views = self.views
        if view not in views:
            return
        if view is self.active_view:
            position = views.index(view)
            rest = [other for other in views if other is not view]
            self.show_view(rest[min(position, len(rest) - 1)])
        self.unread.pop(view, None)
        await view.remove()
        self._refresh_channel_list()

    async def _leave(self, view: ChannelView) -> None:
        """Leave ``view``'s channel cleanly, waiting at most ``leave_timeout_s``."""
        leaving = self.host.close(view.channel) if self.host is not None else view.node.leave()
        try:
            await asyncio.wait_for(leaving, self.config.leave_timeout_s)
        except TimeoutError:
            logger.warning(
                "leaving #%s took over %.1f s; going on", view.channel, self.config.leave_timeout_s
            )
        except Exception:
            logger.exception("leaving #%s failed; going on", view.channel)

    # --- palette, help ----------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's palette, with Quit leaving the channels cleanly and Screenshot saving
        to :attr:`TuiConfig.screenshot_dir` and saying where."""
        for command in super().get_system_commands(screen):
            if command.title == "Quit":
                yield SystemCommand("Quit", "Leave every channel and quit", self.action_quit_all)
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
            if binding.tooltip:
                keys.setdefault(binding.key_display or key_label(binding.key), binding.tooltip)
        keys.update(self.EXTRA_KEYS)
        return [f"{key:<9} {what}" for key, what in keys.items()]

    # --- actions ---------------------------------------------------------------------

    def action_toggle_pane(self, pane_id: str) -> None:
        self.view.toggle_pane(pane_id)

    def action_scroll_chat(self, pages: int) -> None:
        chat_log = self.chat_log
        if pages < 0:
            chat_log.scroll_page_up(animate=False)
        else:
            chat_log.scroll_page_down(animate=False)

    def action_search(self, older: int) -> None:
        view = self.view
        if view.search.active:
            view.step_search(older=bool(older))
        elif older:
            view.chat_input.value = "/search "
            view.chat_input.cursor_position = len(view.chat_input.value)

    def action_end_search(self) -> None:
        self.view.end_search()

    def action_quit_all(self) -> None:
        if self._leaving:
            return
        self._leaving = True
        for view in self.views:
            view.add_notice("info", f"Leaving #{view.channel}\u2026")
        self._leave_all_and_exit()

    @work(exclusive=True, group="leave")
    async def _leave_all_and_exit(self) -> None:
        await asyncio.gather(*(self._leave(view) for view in self.views))
        self.exit()


def default_screenshot_dir() -> Path:
    """Where Screenshot saves unless :attr:`TuiConfig.screenshot_dir` says otherwise:
    ``screenshots`` in the user data folder (``~/.local/share/raftchat/screenshots``)."""
    return platformdirs.user_data_path(APP_NAME) / "screenshots"


def key_label(key: str) -> str:
    """``ctrl+q`` as people write it: ``Ctrl+Q``; ``f2``: ``F2``."""
    parts = key.split("+")
    return "+".join(part.upper() if len(part) == 1 else part.capitalize() for part in parts)


async def run_app(
    nodes: ChatNode | Sequence[ChatNode],
    config: TuiConfig | None = None,
    host: ChannelHost | None = None,
) -> None:
    """Run the chat UI for ``nodes`` inside an already running event loop (the nodes')."""
    await RaftChatApp(nodes, config, host).run_async()
