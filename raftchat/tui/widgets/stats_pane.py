"""The node stats pane: the Raft state behind the chat, with live charts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline, Static

from raftchat.chat.textsafety import sanitize_nick, sanitize_text
from raftchat.node.api import StatusEvent

logger = logging.getLogger(__name__)


def cluster_summary(status: StatusEvent) -> str:
    """``2 voters + witness, 1 learner``: the witness votes but is no member's node."""
    members = len(status.voters) - (1 if status.witness else 0)
    text = f"{members} voters"
    if status.witness:
        text += " + witness"
    return f"{text}, {len(status.learners)} learners"


def _row(table: Table, label: str, value: object) -> None:
    table.add_row(Text(label, style="dim"), Text(sanitize_text(str(value))))


def status_table(status: StatusEvent, leader_nick: str | None = None) -> Table:
    """The stats as a two-column grid of plain Text cells (no markup from node data)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis")
    counters = status.counters
    _row(table, "node", status.node_id)
    _row(table, "state", status.state)
    _row(table, "term", status.term)
    if status.leader is None:
        leader = "none (election)"
    elif leader_nick:
        leader = f"{sanitize_nick(leader_nick)} ({status.leader})"
    else:
        leader = status.leader
    _row(table, "leader", leader)
    _row(table, "cluster", cluster_summary(status))
    _row(table, "log length", status.last_index)
    _row(table, "commit", status.commit_index)
    _row(table, "applied", status.applied_index)
    _row(table, "snapshot", status.snapshot_index)
    _row(table, "election t/o", f"{status.election_timeout_ms:.0f} ms")
    if status.webrtc is not None:
        _row(table, "webrtc", status.webrtc)
    _row(
        table,
        "RequestVote",
        f"{counters.get('requestvote_sent', 0)} sent / "
        f"{counters.get('requestvote_received', 0)} recv",
    )
    _row(
        table,
        "AppendEntries",
        f"{counters.get('appendentries_sent', 0)} sent / "
        f"{counters.get('appendentries_received', 0)} recv",
    )
    _row(table, "forwarded", counters.get("proposals_forwarded", 0))
    return table


class StatsPane(Vertical):
    """Term, roles, indexes and counters from StatusEvents; latency and rate charts."""

    def on_mount(self) -> None:
        self.border_title = "node stats"

    def compose(self) -> ComposeResult:
        yield Static(id="stats-table")
        yield Label("commit latency", id="latency-label", classes="chart-label")
        yield Sparkline([], id="latency-chart")
        yield Label("messages/s", id="rate-label", classes="chart-label")
        yield Sparkline([], id="rate-chart")

    def show_status(self, status: StatusEvent, leader_nick: str | None = None) -> None:
        self.query_one("#stats-table", Static).update(status_table(status, leader_nick))

    def show_latency(self, samples_ms: Sequence[float]) -> None:
        """Send-to-commit times of own messages, most recent last."""
        self.query_one("#latency-chart", Sparkline).data = list(samples_ms)
        label = "commit latency"
        if samples_ms:
            ordered = sorted(samples_ms)
            median = ordered[len(ordered) // 2]
            label += f" {samples_ms[-1]:.0f} ms (median {median:.0f})"
        self.query_one("#latency-label", Label).update(Text(label))

    def show_rate(self, samples: Sequence[float]) -> None:
        """Committed messages per second, one sample per interval, most recent last."""
        self.query_one("#rate-chart", Sparkline).data = list(samples)
        label = "messages/s"
        if samples:
            label += f" {samples[-1]:.1f} (peak {max(samples):.1f})"
        self.query_one("#rate-label", Label).update(Text(label))
