"""The channel list: one line under the status bar, shown while several channels are open.

``1 #lobby  2 #raft-lab 3  3 #ops 1!`` — the number is the Alt+number key, then the
unread messages of a channel not shown, ``!`` when some of them mention this user.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from raftchat.chat.textsafety import sanitize_text

ChannelEntry = tuple[str, int, int]
"""(channel name, unread messages, unread mentions)."""


def channel_list_line(entries: Sequence[ChannelEntry], active: int | None) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    for number, (channel, unread, mentions) in enumerate(entries, start=1):
        if number > 1:
            line.append("  ")
        shown = number - 1 == active
        line.append(f"{number} " if number <= 9 else "", style="dim")
        line.append(f"#{sanitize_text(channel)}", style="bold reverse" if shown else "")
        if unread and not shown:
            line.append(f" {unread}", style="bold" if mentions else "")
        if mentions and not shown:
            line.append("!", style="bold red")
    return line


class ChannelList(Static):
    """Which channels are open, which one is shown, and what is unread in the others."""

    def show(self, entries: Sequence[ChannelEntry], active: int | None) -> None:
        self.entries = list(entries)
        self.update(channel_list_line(entries, active))
