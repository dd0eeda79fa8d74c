"""The status bar: signaling connection, channel, own nick, Raft leader and term."""

from __future__ import annotations

import logging

from rich.text import Text
from textual.widgets import Static

from raftchat.chat.textsafety import sanitize_nick, sanitize_text
from raftchat.node.api import StatusEvent

logger = logging.getLogger(__name__)

SIGNALING_STYLES = {
    "connected": "green",
    "connecting": "yellow",
    "reconnecting": "yellow",
    "disconnected": "red",
}


def status_line(channel: str, nick: str, status: StatusEvent, leader_nick: str | None) -> Text:
    """Plain Text pieces only: channel names and nicks come from other people."""
    signaling = status.signaling_state
    line = Text(no_wrap=True, overflow="ellipsis")  # one line; the start matters most
    line.append("\u25cf ", style=SIGNALING_STYLES.get(signaling, ""))
    line.append(f"signaling {sanitize_text(signaling)}")
    line.append("  #", style="dim")
    line.append(sanitize_text(channel), style="bold")
    line.append("  as ", style="dim")
    line.append(sanitize_nick(nick), style="bold")
    line.append("  leader ", style="dim")
    if status.leader is None:
        line.append("none (election)", style="yellow")
    else:
        line.append(sanitize_nick(leader_nick or status.leader))
    line.append("  term ", style="dim")
    line.append(str(status.term))
    line.append("  ", style="dim")
    line.append(sanitize_text(status.state))
    return line


class StatusBar(Static):
    """One line at the top of the screen."""

    def show(self, channel: str, nick: str, status: StatusEvent, leader_nick: str | None) -> None:
        self.update(status_line(channel, nick, status, leader_nick))
