"""The message input: Up/Down recall earlier lines, Tab completes commands and nicks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from raftchat.frontends.commands import TUI_COMMANDS

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 500
"""Input lines remembered for Up/Down recall."""


@dataclass
class _Completion:
    """A Tab completion in progress: pressing Tab again cycles through ``candidates``."""

    start: int
    candidates: list[str]
    suffix: str
    position: int
    result: str


class ChatInput(Input):
    """An Input with line history and Tab completion.

    ``nick_source`` returns the nicks to complete (called on each Tab).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous line", show=False),
        Binding("down", "history_next", "Next line", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    class JumpToLatest(Message):
        """End was pressed with the cursor already at the end: show the newest messages."""

    def __init__(
        self,
        *,
        nick_source: Callable[[], Iterable[str]] = tuple,
        placeholder: str = "",
        id: str | None = None,
    ) -> None:
        super().__init__(placeholder=placeholder, id=id, select_on_focus=False)
        self.nick_source = nick_source
        self.history: list[str] = []
        self._history_position: int | None = None
        self._draft = ""
        self._completion: _Completion | None = None

    def action_end(self, select: bool = False) -> None:
        if not select and self.cursor_position >= len(self.value):
            self.post_message(self.JumpToLatest())
        super().action_end(select)

    # --- history ---------------------------------------------------------------

    def remember(self, line: str) -> None:
        """Add a submitted line to the history (not twice in a row)."""
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_LIMIT]
        self._history_position = None

    def action_history_previous(self) -> None:
        if not self.history:
            return
        if self._history_position is None:
            self._draft = self.value
            self._history_position = len(self.history) - 1
        elif self._history_position > 0:
            self._history_position -= 1
        self._show(self.history[self._history_position])

    def action_history_next(self) -> None:
        if self._history_position is None:
            return
        self._history_position += 1
        if self._history_position >= len(self.history):
            self._history_position = None
            self._show(self._draft)
        else:
            self._show(self.history[self._history_position])

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)

    # --- completion --------------------------------------------------------------

    def action_complete(self) -> None:
        completion = self._completion
        if completion is not None and self.value == completion.result:
            completion.position = (completion.position + 1) % len(completion.candidates)
        else:
            completion = self._start_completion()
            if completion is None:
                return
        self._completion = completion
        self._apply(completion)

    def _start_completion(self) -> _Completion | None:
        before = self.value[: self.cursor_position]
        start = before.rfind(" ") + 1
        word = before[start:]
        if not word:
            return None
        if start == 0 and word.startswith("/"):
            candidates = TUI_COMMANDS.complete(word)
            suffix = " "
        else:
            lowered = word.lower()
            candidates = sorted(
                {nick for nick in self.nick_source() if nick.lower().startswith(lowered)},
                key=str.lower,
            )
            suffix = ": " if start == 0 else " "
        if not candidates:
            return None
        return _Completion(start, candidates, suffix, 0, "")

    def _apply(self, completion: _Completion) -> None:
        # The cursor ends the word being completed (or what the previous Tab inserted).
        head = self.value[: completion.start]
        after = self.value[self.cursor_position :]
        word = completion.candidates[completion.position] + completion.suffix
        self.value = head + word + after
        self.cursor_position = len(head + word)
        completion.result = self.value
