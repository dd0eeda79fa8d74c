"""What one entry of the chat view is, and how it is laid out into terminal lines.

Pure functions and plain data (no widgets), so layout is easy to test. Every
piece of peer text is sanitized when the record is made and then only ever
put into ``rich.text.Text`` as plain text, never parsed as markup. Every time is
clamped into the range of message times (:func:`raftchat.limits.clamp_message_seconds`)
before it becomes a date: a sender's clock, or a history from before that range was
enforced, can say anything.

A message line looks like this (nick column right-aligned, continuation lines
indented under the text)::

    12:03      alice │ hello world, this is a long message that
                     │ wraps with a hanging indent
    12:04      bob ✓ a message of mine that the cluster has committed
    12:04        * * alice waves
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from functools import lru_cache
from itertools import count

from rich._wrap import divide_line
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from raftchat.chat.textsafety import sanitize_nick, sanitize_text
from raftchat.limits import clamp_message_seconds

logger = logging.getLogger(__name__)

NICK_PALETTE = (
    "#e06c75",
    "#98c379",
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#d19a66",
    "#be5046",
    "#7ec699",
    "#f08d49",
    "#a9a1e1",
    "#4fb6e3",
)
"""Nick colours: readable on dark and light backgrounds, distinct from each other."""


def nick_color(nick: str) -> str:
    """A colour for ``nick`` that is the same on every run and every machine."""
    return NICK_PALETTE[zlib.crc32(nick.encode("utf-8", "replace")) % len(NICK_PALETTE)]


class RecordKind(Enum):
    MESSAGE = "message"
    ACTION = "action"
    NOTICE = "notice"
    ERROR = "error"
    DAY = "day"


NOTICE_MARKERS = {
    "join": "-->",
    "leave": "<--",
    "leader": "***",
    "nick": "--",
    "info": "--",
    "error": "!!",
}
"""What the nick column shows for a notice, by kind."""

_keys = count()


@dataclass(slots=True, eq=False)
class ChatRecord:
    """One entry of the chat view. ``nick`` and ``text`` are already sanitized."""

    kind: RecordKind
    ts: float
    day: int
    """Proleptic ordinal of the local date of ``ts``: a change starts a day separator."""
    clock: str
    """``HH:MM`` in the view's timezone."""
    nick: str = ""
    text: str = ""
    message_id: str = ""
    notice_kind: str = ""
    own: bool = False
    pending: bool = False
    mention: bool = False
    body_cells: int = 0
    """Cells of the body text: if they fit the width the record is one line (fast path)."""
    key: int = 0
    """Unique per record and per state change, so the render cache never serves stale lines."""
    found: bool = False
    """The match of a history search the view is showing now."""

    def renew_key(self) -> None:
        self.key = next(_keys)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _moment(ts: float, tz: tzinfo | None) -> datetime:
    """``ts`` (epoch seconds, already clamped) as a date in ``tz``; in UTC if the platform
    cannot convert it (a 32-bit ``time_t``, a time zone database that gives up)."""
    try:
        return datetime.fromtimestamp(ts, tz)
    except (OverflowError, OSError, ValueError):
        return _EPOCH + timedelta(seconds=ts)


def _stamp(ts: float, tz: tzinfo | None) -> tuple[int, str]:
    return _stamp_minute(int(clamp_message_seconds(ts) // 60), tz)


@lru_cache(maxsize=4096)
def _stamp_minute(minute: int, tz: tzinfo | None) -> tuple[int, str]:
    """(day ordinal, "HH:MM") for a minute since the epoch; cached: messages come in runs."""
    moment = _moment(minute * 60, tz)
    return moment.toordinal(), f"{moment.hour:02d}:{moment.minute:02d}"


@lru_cache(maxsize=4096)
def _display_nick(nick: str) -> str:
    return sanitize_nick(nick)


def _cells(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def make_message(
    *,
    ts: float,
    nick: str,
    text: str,
    tz: tzinfo | None,
    message_id: str = "",
    action: bool = False,
    own: bool = False,
    pending: bool = False,
    mention: bool = False,
) -> ChatRecord:
    """A chat message or ``/me`` action record from untrusted nick and text.

    Called once per message of the history (maybe 100,000 at join), so it is
    kept lean: positional construction, cached nick and timestamp formatting.
    """
    ts = clamp_message_seconds(ts)
    day, clock = _stamp_minute(int(ts // 60), tz)
    safe_nick = _display_nick(nick)
    safe_text = sanitize_text(text)
    body_cells = len(safe_text) if safe_text.isascii() else cell_len(safe_text)
    if action:
        body_cells += _cells(safe_nick) + 1
    return ChatRecord(
        RecordKind.ACTION if action else RecordKind.MESSAGE,
        ts,
        day,
        clock,
        safe_nick,
        safe_text,
        message_id,
        "",
        own,
        pending,
        mention,
        body_cells,
        next(_keys),
    )


def make_notice(*, ts: float, text: str, kind: str, tz: tzinfo | None) -> ChatRecord:
    """A notice (join, leave, leader, nick, info) or a local error line."""
    ts = clamp_message_seconds(ts)
    day, clock = _stamp(ts, tz)
    safe_text = sanitize_text(text)
    return ChatRecord(
        kind=RecordKind.ERROR if kind == "error" else RecordKind.NOTICE,
        ts=ts,
        day=day,
        clock=clock,
        text=safe_text,
        notice_kind=kind,
        body_cells=_cells(safe_text),
        key=next(_keys),
    )


def make_day_separator(ts: float, tz: tzinfo | None) -> ChatRecord:
    ts = clamp_message_seconds(ts)
    moment = _moment(ts, tz)
    label = f" {moment:%A} {moment.day} {moment:%B %Y} "
    return ChatRecord(
        kind=RecordKind.DAY,
        ts=ts,
        day=moment.toordinal(),
        clock="",
        text=label,
        body_cells=cell_len(label),
        key=next(_keys),
    )


_PLAIN = Style()
_DIM = Style(dim=True)
_DIM_ITALIC = Style(dim=True, italic=True)
_GREEN = Style(color="green")
_BOLD = Style(bold=True)
_BOLD_REVERSE = Style(bold=True, reverse=True)
_BOLD_RED = Style(color="red", bold=True)


@dataclass(frozen=True, slots=True)
class LineStyles:
    """Rich styles for each part of a line; the widget fills them from its TCSS components."""

    base: Style = _PLAIN
    time: Style = _DIM
    separator: Style = _DIM
    pending: Style = _DIM_ITALIC
    ack: Style = _GREEN
    mention: Style = _BOLD_REVERSE
    found: Style = _BOLD_REVERSE
    notice: Style = _DIM
    error: Style = _BOLD_RED
    day: Style = _DIM
    own_nick: Style = _BOLD


@dataclass(frozen=True, slots=True)
class LineLayout:
    """Column widths of a message line."""

    time_width: int = 5
    nick_width: int = 12
    min_body_width: int = 10

    @property
    def prefix_width(self) -> int:
        """Time, a space, the nick column, then " │ "."""
        return self.time_width + 1 + self.nick_width + 3

    def body_width(self, width: int) -> int:
        return max(self.min_body_width, width - self.prefix_width)


def _body_text(record: ChatRecord, styles: LineStyles) -> Text:
    if record.kind is RecordKind.ACTION:
        body = Text(record.nick, style=Style(color=nick_color(record.nick), bold=True))
        body.append(" ")
        body.append(record.text)
    elif record.kind is RecordKind.ERROR:
        body = Text(record.text, style=styles.error)
    elif record.kind is RecordKind.NOTICE:
        body = Text(record.text, style=styles.notice)
    else:
        body = Text(record.text)
    if record.mention:
        body.stylize(styles.mention)
    if record.found:
        body.stylize(styles.found)
    if record.pending:
        body.stylize(styles.pending)
    return body


_SPACES = re.compile(" *")


def wrap_offsets(text: str, width: int) -> list[int]:
    """Where to break ``text`` so every line fits ``width`` cells (greedy word wrap).

    Breaks go before a word; a word longer than a line is folded. Trailing
    spaces of a line are dropped when it is drawn. Layout of a large
    scrollback calls this for every message that does not fit on one line,
    so ASCII text (after sanitizing, its only whitespace is " ") takes a fast
    path that does one ``rfind`` per line; other text uses rich's cell-aware
    word wrap.
    """
    if not text.isascii():
        return divide_line(text, width, fold=True)
    breaks: list[int] = []
    length = len(text)
    line_start = 0
    while length - line_start > width:
        limit = line_start + width
        if text[limit] == " ":
            next_start = _SPACES.match(text, limit).end()  # type: ignore[union-attr]
            if next_start >= length:
                break
        else:
            space = text.rfind(" ", line_start, limit)
            next_start = space + 1 if space >= line_start else limit
            if next_start <= line_start:
                next_start = limit
        breaks.append(next_start)
        line_start = next_start
    return breaks


def _body_text_plain(record: ChatRecord) -> str:
    if record.kind is RecordKind.ACTION:
        return f"{record.nick} {record.text}"
    return record.text


def record_height(record: ChatRecord, width: int, layout: LineLayout) -> int:
    """How many terminal lines ``record`` takes at ``width`` (cheap for one-line records)."""
    if record.kind is RecordKind.DAY:
        return 1
    body_width = layout.body_width(width)
    if record.body_cells <= body_width:
        return 1
    return len(wrap_offsets(_body_text_plain(record), body_width)) + 1


def _wrap(body: Text, width: int) -> list[Text]:
    lines = body.divide(wrap_offsets(body.plain, width))
    for line in lines:
        line.rstrip_end(width)
        line.truncate(width, overflow="fold")
    return list(lines)


def _nick_column(record: ChatRecord, layout: LineLayout, styles: LineStyles) -> Text:
    width = layout.nick_width
    if record.kind is RecordKind.MESSAGE:
        nick = _truncate(record.nick, width)
        style = Style(color=nick_color(record.nick))
        if record.own:
            style += styles.own_nick
        return Text(" " * (width - cell_len(nick)) + nick, style=style)
    if record.kind is RecordKind.ACTION:
        return Text("*".rjust(width), style=Style(color=nick_color(record.nick), bold=True))
    marker = NOTICE_MARKERS.get(record.notice_kind, "--")
    style = styles.error if record.kind is RecordKind.ERROR else styles.notice
    return Text(marker.rjust(width), style=style)


def _truncate(text: str, width: int) -> str:
    if cell_len(text) <= width:
        return text
    line = Text(text)
    line.truncate(width, overflow="ellipsis")
    return line.plain


def _separator(record: ChatRecord, styles: LineStyles) -> Text:
    if record.pending:
        return Text(" \u2026 ", style=styles.pending)  # …: proposed, not committed yet
    if record.own:
        return Text(" \u2713 ", style=styles.ack)  # ✓: committed by the cluster
    return Text(" \u2502 ", style=styles.separator)  # │


def render_record(
    record: ChatRecord,
    width: int,
    layout: LineLayout,
    styles: LineStyles,
    console: Console,
) -> list[Strip]:
    """The record's terminal lines, each exactly ``width`` cells wide."""
    if record.kind is RecordKind.DAY:
        line = Text(record.text.center(max(width, record.body_cells), "\u2500"), style=styles.day)
        line.truncate(width)
        return [_to_strip(line, width, styles, console)]

    body_width = layout.body_width(width)
    body = _body_text(record, styles)
    body_lines = [body] if record.body_cells <= body_width else _wrap(body, body_width)

    nick_column = _nick_column(record, layout, styles)
    time_text = Text(record.clock.ljust(layout.time_width), style=styles.time)
    separator = _separator(record, styles)
    blank_prefix = Text(" " * (layout.time_width + 1 + layout.nick_width))
    continuation = Text(" \u2502 ", style=styles.separator)

    strips = []
    for number, body_line in enumerate(body_lines):
        if number == 0:
            line = Text.assemble(time_text, " ", nick_column, separator, body_line)
        else:
            line = Text.assemble(blank_prefix, continuation, body_line)
        strips.append(_to_strip(line, width, styles, console))
    return strips


def _to_strip(line: Text, width: int, styles: LineStyles, console: Console) -> Strip:
    line.end = ""
    segments = list(line.render(console))
    strip = Strip(segments).adjust_cell_length(width, styles.base)
    if styles.base:
        strip = strip.apply_style(styles.base)
    return strip


def blank_strip(width: int, styles: LineStyles) -> Strip:
    return Strip([Segment(" " * width, styles.base)], width)
