"""The members pane: who is in the channel, their Raft role and how well we reach them."""

from __future__ import annotations

import logging
import math
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


def rtt_label(rtt_ms: float | None) -> str:
    """``12ms``, ``0.4ms`` on a fast link (never a bare ``0ms``), "" when unknown."""
    if rtt_ms is None or not math.isfinite(rtt_ms) or rtt_ms < 0:
        return ""
    if rtt_ms < 9.95:
        return f"{rtt_ms:.1f}ms"
    if rtt_ms < 99_999.5:
        return f"{rtt_ms:.0f}ms"
    return ">99s"


def members_table(members: Sequence[MemberInfo]) -> Table:
    """One row per member, leader first; every cell is plain Text, one column per field so
    ids, roles, links and round-trip times line up."""
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, expand=True)
    table.add_column("nick", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("id", no_wrap=True, width=ID_CHARS, style="dim")
    table.add_column("role", no_wrap=True)
    table.add_column("link", no_wrap=True)
    table.add_column("rtt", no_wrap=True, justify="right")
    ordered = sorted(members, key=lambda m: (ROLE_ORDER.get(m.role, 3), m.nick.lower()))
    for member in ordered:
        nick = sanitize_nick(member.nick)
        name = Text(nick, style=Style(color=nick_color(nick)))
        link, link_style = LINK_LABELS.get(
            member.link_state, (sanitize_text(member.link_state), "")
        )
        rtt = rtt_label(member.rtt_ms) if member.link_state == "connected" else ""
        role = Text(sanitize_text(member.role), style="bold" if member.role == "leader" else "")
        table.add_row(
            name,
            Text(sanitize_text(member.node_id)[:ID_CHARS]),
            role,
            Text(link, style=link_style),
            Text(rtt),
        )
    return table


class MembersPane(Static):
    """Shows the latest MembersEvent."""

    def show_members(self, members: Sequence[MemberInfo]) -> None:
        self.border_title = f"members ({len(members)})"
        self.update(members_table(members))
