"""The node stats pane: the Raft state behind the chat, with live charts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Static

from raftchat.chat.textsafety import sanitize_nick, sanitize_text
from raftchat.node.api import StatusEvent
from raftchat.tui.widgets.chart import Chart

logger = logging.getLogger(__name__)


SHORT_ID_CHARS = 6
"""How much of a node id names the leader (as in the members pane)."""


NODE_ID_CELLS = 16
"""A node id longer than this shows its start and "…" (the members pane has the rest)."""


def short_id(node_id: str) -> str:
    if len(node_id) <= NODE_ID_CELLS:
        return node_id
    return node_id[: NODE_ID_CELLS - 1] + "\u2026"


def compact_count(value: int) -> str:
    """A counter or index in at most 6 cells: ``1874``, ``98765``, ``1.2M``, ``340k``."""
    if value < 100_000:
        return str(value)
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= divisor:
            scaled = value / divisor
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return str(value)  # unreachable: 100,000 and more have a suffix


def cluster_summary(status: StatusEvent) -> str:
    """``2 voters + witness, 1 learner``: the witness votes but is no member's node."""
    members = len(status.voters) - (1 if status.witness else 0)
    text = f"{members} voters"
    if status.witness:
        text += " + witness"
    return f"{text}, {len(status.learners)} learners"


def _row(table: Table, label: str, value: object) -> None:
    table.add_row(Text(label, style="dim"), Text(sanitize_text(str(value))))


def _sent_received(counters: Mapping[str, int], name: str) -> str:
    sent = compact_count(counters.get(f"{name}_sent", 0))
    received = compact_count(counters.get(f"{name}_received", 0))
    return f"{sent} out, {received} in"


def status_table(status: StatusEvent, leader_nick: str | None = None) -> Table:
    """The stats as a two-column grid of plain Text cells (no markup from node data).

    Labels and values are short enough for the side pane (36 cells): ids and counters
    are abbreviated rather than cut off; a value too long all the same wraps at a space.
    """
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    counters = status.counters
    _row(table, "node", short_id(status.node_id))
    _row(table, "state", status.state)
    _row(table, "term", compact_count(status.term))
    if status.leader is None:
        leader = "none (election)"
    elif leader_nick:
        leader = f"{sanitize_nick(leader_nick)} ({status.leader[:SHORT_ID_CHARS]})"
    else:
        leader = status.leader
    _row(table, "leader", leader)
    _row(table, "cluster", cluster_summary(status))
    _row(table, "log length", compact_count(status.last_index))
    _row(table, "commit", compact_count(status.commit_index))
    _row(table, "applied", compact_count(status.applied_index))
    _row(table, "snapshot", compact_count(status.snapshot_index))
    _row(table, "election t/o", f"{status.election_timeout_ms:.0f} ms")
    if status.webrtc is not None:
        _row(table, "webrtc", status.webrtc)
    _row(table, "RequestVote", _sent_received(counters, "requestvote"))
    _row(table, "AppendEntries", _sent_received(counters, "appendentries"))
    _row(table, "forwarded", compact_count(counters.get("proposals_forwarded", 0)))
    return table


class StatsPane(Vertical):
    """Term, roles, indexes and counters from StatusEvents; latency and rate charts."""

    def on_mount(self) -> None:
        self.border_title = "node stats"

    def compose(self) -> ComposeResult:
        yield Static(id="stats-table")
        yield Label("commit latency", id="latency-label", classes="chart-label")
        yield Chart(" ms", id="latency-chart")
        yield Label("messages/s", id="rate-label", classes="chart-label")
        yield Chart("/s", id="rate-chart")

    def show_status(self, status: StatusEvent, leader_nick: str | None = None) -> None:
        self.query_one("#stats-table", Static).update(status_table(status, leader_nick))

    def show_latency(self, samples_ms: Sequence[float]) -> None:
        """Send-to-commit times of own messages, most recent last."""
        self.query_one("#latency-chart", Chart).show(samples_ms)
        label = "commit latency"
        if samples_ms:
            ordered = sorted(samples_ms)
            median = ordered[len(ordered) // 2]
            label += f" {samples_ms[-1]:.0f} ms (median {median:.0f})"
        self.query_one("#latency-label", Label).update(Text(label))

    def show_rate(self, samples: Sequence[float]) -> None:
        """Committed messages per second, one sample per interval, most recent last."""
        self.query_one("#rate-chart", Chart).show(samples)
        label = "messages/s"
        if samples:
            label += f" {samples[-1]:.1f} (peak {max(samples):.1f})"
        self.query_one("#rate-label", Label).update(Text(label))
