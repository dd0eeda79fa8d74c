"""The members pane: who is in the channel, their Raft role and how well we reach them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from raftchat.nodeapi import MemberInfo
from raftchat.textsafety import sanitize_nick, sanitize_text
from raftchat.tui.chat_lines import nick_color

logger = logging.getLogger(__name__)

ROLE_ORDER = {"leader": 0, "voter": 1, "learner": 2}
LINK_STYLES = {
    "self": "dim",
    "connected": "green",
    "connecting": "yellow",
    "disconnected": "red",
    "failed": "bold red",
}
ID_CHARS = 8
"""How much of a node id the pane shows."""


def members_table(members: Sequence[MemberInfo]) -> Table:
    """One row per member, leader first; every cell is plain Text."""
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    table.add_column("nick", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("id", no_wrap=True, style="dim")
    table.add_column("role", no_wrap=True)
    table.add_column("link", no_wrap=True)
    table.add_column("rtt", no_wrap=True, justify="right")
    ordered = sorted(members, key=lambda m: (ROLE_ORDER.get(m.role, 3), m.nick.lower()))
    for member in ordered:
        nick = sanitize_nick(member.nick)
        rtt = "" if member.rtt_ms is None else f"{member.rtt_ms:.0f}ms"
        role = Text(sanitize_text(member.role), style="bold" if member.role == "leader" else "")
        table.add_row(
            Text(nick, style=Style(color=nick_color(nick))),
            Text(sanitize_text(member.node_id)[:ID_CHARS]),
            role,
            Text(sanitize_text(member.link_state), style=LINK_STYLES.get(member.link_state, "")),
            Text(rtt),
        )
    return table


class MembersPane(Static):
    """Shows the latest MembersEvent."""

    def show_members(self, members: Sequence[MemberInfo]) -> None:
        self.border_title = f"members ({len(members)})"
        self.update(members_table(members))
