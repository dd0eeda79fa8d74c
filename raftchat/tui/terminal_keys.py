"""Alt+digit as terminals send it: ESC followed by the digit.

Textual maps the sequences ``ESC 1`` … ``ESC 9`` to the characters macOS's Option key
types with the digits (``¡``, ``™``, …), as WezTerm on macOS sends them. xterm, tmux
and most Linux terminals send the same bytes for Alt+1 … Alt+9, so the chat would get
``¡`` typed into its input instead of switching channels. Without those entries
Textual's parser reports ``alt+1`` … ``alt+9``, as it does for ESC and a letter.
"""

from __future__ import annotations

from typing import cast

from textual._ansi_sequences import ANSI_SEQUENCES_KEYS

ALT_DIGIT_SEQUENCES = tuple(f"\x1b{digit}" for digit in range(1, 10))


def report_alt_digits() -> None:
    """Let Textual's parser report ESC+digit as ``alt+<digit>`` (idempotent)."""
    sequences = cast("dict[str, object]", ANSI_SEQUENCES_KEYS)
    for sequence in ALT_DIGIT_SEQUENCES:
        if isinstance(sequences.get(sequence), str):
            del sequences[sequence]
