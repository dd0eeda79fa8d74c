"""The scrollback: a Line-API view that stays smooth with hundreds of thousands of messages.

Only the lines on screen are rendered (``render_line``), from an LRU cache of
rendered records. A record may wrap to several lines, so the view keeps the
first line number of every committed record in a sorted list: finding the
record under a screen line is a binary search, appending is O(1), and a width
change recomputes the heights once (cheaply: a record whose text fits the
width is one line without wrapping it).

Own messages that are not committed yet live in a small "pending" zone below
the committed ones; when a message commits it moves into the log, which is
where Raft put it.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable
from datetime import tzinfo
from itertools import accumulate
from typing import ClassVar

from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from raftchat.tui.chat_lines import (
    ChatRecord,
    LineLayout,
    LineStyles,
    RecordKind,
    blank_strip,
    make_day_separator,
    record_height,
    render_record,
)

logger = logging.getLogger(__name__)

RENDER_CACHE_RECORDS = 2048
"""Rendered records kept; a screen shows at most a few hundred."""


class ChatLog(ScrollView, can_focus=False):
    """The chat scrollback. Focus stays in the input; PageUp/PageDown scroll this view."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "chat-log--time",
        "chat-log--separator",
        "chat-log--pending",
        "chat-log--ack",
        "chat-log--mention",
        "chat-log--found",
        "chat-log--notice",
        "chat-log--error",
        "chat-log--day",
        "chat-log--own-nick",
    }

    class UnreadChanged(Message):
        """The number of messages that arrived below the visible part changed."""

        def __init__(self, unread: int) -> None:
            super().__init__()
            self.unread = unread

    def __init__(
        self,
        *,
        tz: tzinfo | None = None,
        layout: LineLayout | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.tz = tz
        self.line_layout = layout or LineLayout()
        self.records: list[ChatRecord] = []
        """Committed records (messages, notices, day separators) in display order."""
        self.pending: list[ChatRecord] = []
        """Own messages proposed but not committed, shown below the committed ones."""
        self._starts: list[int] = []
        self._committed_lines = 0
        self._wrap_width = 0
        self._last_day: int | None = None
        self._cache: LRUCache[tuple[int, int], list[Strip]] = LRUCache(RENDER_CACHE_RECORDS)
        self._styles: LineStyles | None = None
        self._following = True
        self.unread = 0

    # --- adding content --------------------------------------------------------

    def add_records(self, records: Iterable[ChatRecord]) -> None:
        """Append committed records in order (a day separator goes in when the date changes)."""
        width = self._wrap_width
        new: list[ChatRecord] = []
        for record in records:
            if record.day != self._last_day and record.kind is not RecordKind.DAY:
                self._last_day = record.day
                new.append(make_day_separator(record.ts, self.tz))
            new.append(record)
        if not new:
            return
        if width:
            layout = self.line_layout
            body_width = layout.body_width(width)
            total = self._committed_lines
            starts = self._starts
            for record in new:
                starts.append(total)
                if record.body_cells <= body_width or record.kind is RecordKind.DAY:
                    total += 1
                else:
                    total += record_height(record, width, layout)
            self._committed_lines = total
        self.records.extend(new)
        arrived = sum(1 for record in new if record.kind in _COUNTED_KINDS)
        self._content_changed(arrived)

    def replace_last(self, record: ChatRecord) -> None:
        """Show ``record`` instead of the last committed record (a line updated in place)."""
        if not self.records:
            self.add_records([record])
            return
        self.records[-1] = record
        self._relayout_tail(len(self.records) - 1)

    def refresh_record(self, position: int) -> None:
        """Record ``position`` changed how it looks (it was restyled and its key renewed)."""
        self._relayout_tail(position)

    def _relayout_tail(self, position: int) -> None:
        """Recompute the line numbers from record ``position`` on (a few records: cheap)."""
        width = self._wrap_width
        if width:
            layout = self.line_layout
            total = self._starts[position]
            for number in range(position, len(self.records)):
                self._starts[number] = total
                total += record_height(self.records[number], width, layout)
            self._committed_lines = total
        self._content_changed(0)

    def scroll_to_record(self, position: int) -> None:
        """Bring committed record ``position`` into view, in the middle of the screen."""
        if not self._wrap_width or position >= len(self._starts):
            return
        self._following = False
        top = self._starts[position] - self.scrollable_content_region.height // 2
        top_padding = max(0, self.scrollable_content_region.height - self.total_lines)
        self.scroll_to(y=max(0, top + top_padding), animate=False, immediate=True)
        self.refresh()

    def add_pending(self, record: ChatRecord) -> None:
        """Show an own message that was proposed but is not committed yet."""
        self.pending.append(record)
        self._content_changed(0)
        self.scroll_to_latest()

    def remove_pending(self, message_id: str) -> ChatRecord | None:
        """Take an own message out of the pending zone (it committed); None if unknown."""
        for position, record in enumerate(self.pending):
            if record.message_id == message_id:
                del self.pending[position]
                self._content_changed(0)
                return record
        return None

    def clear(self) -> None:
        self.records.clear()
        self.pending.clear()
        self._starts.clear()
        self._committed_lines = 0
        self._last_day = None
        self._cache.clear()
        self._content_changed(0)

    # --- scrolling and the unread count ----------------------------------------

    @property
    def is_following(self) -> bool:
        """True while the view sticks to the newest line."""
        return self._following

    def scroll_to_latest(self) -> None:
        self._following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._set_unread(0)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        at_bottom = round(new_value) >= self.max_scroll_y
        if at_bottom != self._following and self.virtual_size.height > 0:
            self._following = at_bottom
            if at_bottom:
                self._set_unread(0)

    def _set_unread(self, unread: int) -> None:
        if unread != self.unread:
            self.unread = unread
            self.post_message(self.UnreadChanged(unread))

    # --- layout ----------------------------------------------------------------

    @property
    def total_lines(self) -> int:
        return self._committed_lines + sum(self._pending_heights())

    def _pending_heights(self) -> list[int]:
        width = self._wrap_width
        if not width:
            return [0 for _ in self.pending]
        return [record_height(record, width, self.line_layout) for record in self.pending]

    def _content_changed(self, arrived: int) -> None:
        following = self._following
        self._update_virtual_size()
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif arrived:
            self._set_unread(self.unread + arrived)
        self.refresh()

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._wrap_width, self.total_lines)

    def _relayout(self, width: int) -> None:
        """Recompute every record's height for a new width (once per width change)."""
        anchor = None if self._following else self._line_to_record(round(self.scroll_y))
        self._wrap_width = width
        layout = self.line_layout
        body_width = layout.body_width(width)
        heights = [
            1
            if record.body_cells <= body_width or record.kind is RecordKind.DAY
            else record_height(record, width, layout)
            for record in self.records
        ]
        self._starts = [0, *accumulate(heights)]
        self._committed_lines = self._starts.pop()
        self._update_virtual_size()
        if anchor is not None and anchor[0] < len(self._starts):
            self.scroll_to(y=self._starts[anchor[0]], animate=False, immediate=True)
        else:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._wrap_width and width > 0:
            self._relayout(width)
        elif self._following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _line_to_record(self, line: int) -> tuple[int, int] | None:
        """(record number, line within it) for a committed line, else None."""
        if line < 0 or line >= self._committed_lines:
            return None
        position = bisect_right(self._starts, line) - 1
        return position, line - self._starts[position]

    # --- rendering -------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._cache.clear()

    def _line_styles(self) -> LineStyles:
        if self._styles is None:

            def component(name: str) -> Style:
                return self.get_component_rich_style(f"chat-log--{name}", partial=True)

            self._styles = LineStyles(
                base=self.rich_style,
                time=component("time"),
                separator=component("separator"),
                pending=component("pending"),
                ack=component("ack"),
                mention=component("mention"),
                found=component("found"),
                notice=component("notice"),
                error=component("error"),
                day=component("day"),
                own_nick=component("own-nick"),
            )
        return self._styles

    def _render_record(self, record: ChatRecord) -> list[Strip]:
        key = (record.key, self._wrap_width)
        strips = self._cache.get(key)
        if strips is None:
            strips = render_record(
                record, self._wrap_width, self.line_layout, self._line_styles(), self.app.console
            )
            self._cache.set(key, strips)
        return strips

    def render_line(self, y: int) -> Strip:
        width = self._wrap_width or self.size.width
        # A short conversation sits at the bottom, next to the input, as in other chat clients.
        top_padding = max(0, self.scrollable_content_region.height - self.total_lines)
        line = round(self.scroll_y) + y - top_padding
        if line < 0:
            return blank_strip(width, self._line_styles())
        found = self._line_to_record(line)
        if found is not None:
            position, offset = found
            strips = self._render_record(self.records[position])
            if offset < len(strips):
                return strips[offset]
            return blank_strip(width, self._line_styles())
        offset = line - self._committed_lines
        for record in self.pending:
            strips = self._render_record(record)
            if 0 <= offset < len(strips):
                return strips[offset]
            offset -= len(strips)
        return blank_strip(width, self._line_styles())

    def visible_text(self) -> list[str]:
        """The plain text of the lines on screen now (for tests and screen readers)."""
        return [self.render_line(y).text for y in range(self.scrollable_content_region.height)]


_COUNTED_KINDS = (RecordKind.MESSAGE, RecordKind.ACTION)
