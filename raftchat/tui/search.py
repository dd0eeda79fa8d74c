"""Finding earlier messages in a channel's history: ``/search TEXT``, then older/newer."""

from __future__ import annotations

from collections.abc import Sequence

from raftchat.tui.chat_lines import ChatRecord, RecordKind

SEARCHED_KINDS = (RecordKind.MESSAGE, RecordKind.ACTION)


class HistorySearch:
    """The matches of one query (record positions, oldest first) and which one is shown.

    Matching ignores case and looks at the text and the sender's nick. A search starts at
    the newest match; :meth:`older` and :meth:`newer` step through the others.
    """

    def __init__(self) -> None:
        self.query = ""
        self.matches: list[int] = []
        self.current: int | None = None
        """Index into :attr:`matches` of the match shown."""

    @property
    def active(self) -> bool:
        return bool(self.query)

    def start(self, records: Sequence[ChatRecord], query: str) -> int | None:
        """Find ``query`` in ``records``; the newest match's position, or None."""
        self.query = query
        needle = query.casefold()
        self.matches = [
            position
            for position, record in enumerate(records)
            if record.kind in SEARCHED_KINDS
            and (needle in record.text.casefold() or needle in record.nick.casefold())
        ]
        self.current = len(self.matches) - 1 if self.matches else None
        return self.position

    @property
    def position(self) -> int | None:
        return None if self.current is None else self.matches[self.current]

    def older(self) -> int | None:
        """Step to the previous (older) match; stays on the oldest."""
        if self.current is not None and self.current > 0:
            self.current -= 1
        return self.position

    def newer(self) -> int | None:
        """Step to the next (newer) match; stays on the newest."""
        if self.current is not None and self.current < len(self.matches) - 1:
            self.current += 1
        return self.position

    def clear(self) -> None:
        self.query = ""
        self.matches = []
        self.current = None

    def describe(self) -> str:
        if not self.matches:
            return f"no message contains {self.query!r}"
        assert self.current is not None
        return (
            f"{self.query!r}: match {self.current + 1} of {len(self.matches)}"
            " \u2014 Ctrl+F older, Ctrl+G newer, Esc ends the search"
        )
