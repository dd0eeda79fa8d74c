"""The members pane: who is in the channel, their Raft role and how well we reach them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from raftchat.chat.textsafety import sanitize_nick, sanitize_text
from raftchat.node.api import MemberInfo
from raftchat.tui.chat_lines import nick_color

logger = logging.getLogger(__name__)

ROLE_ORDER = {"leader": 0, "voter": 1, "learner": 2, "witness": 3}
LINK_LABELS = {
    "self": ("self", "dim"),
    "connected": ("up", "green"),
    "connecting": ("wait", "yellow"),
    "disconnected": ("down", "red"),
    "failed": ("fail", "bold red"),
}
"""Short words for link states: the pane is narrow."""
ID_CHARS = 6
"""How much of a node id the pane shows."""


def members_table(members: Sequence[MemberInfo]) -> Table:
    """One row per member, leader first; every cell is plain Text."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, expand=True)
    table.add_column("nick  id", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("role", no_wrap=True)
    table.add_column("link", no_wrap=True)
    table.add_column("rtt", no_wrap=True, justify="right")
    ordered = sorted(members, key=lambda m: (ROLE_ORDER.get(m.role, 3), m.nick.lower()))
    for member in ordered:
        nick = sanitize_nick(member.nick)
        name = Text(nick, style=Style(color=nick_color(nick)))
        name.append(" " + sanitize_text(member.node_id)[:ID_CHARS], style="dim")
        link, link_style = LINK_LABELS.get(
            member.link_state, (sanitize_text(member.link_state), "")
        )
        rtt = "" if member.rtt_ms is None else f"{member.rtt_ms:.0f}ms"
        role = Text(sanitize_text(member.role), style="bold" if member.role == "leader" else "")
        table.add_row(name, role, Text(link, style=link_style), Text(rtt))
    return table


class MembersPane(Static):
    """Shows the latest MembersEvent."""

    def show_members(self, members: Sequence[MemberInfo]) -> None:
        self.border_title = f"members ({len(members)})"
        self.update(members_table(members))
