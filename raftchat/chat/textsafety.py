"""Make text typed by a peer safe to show on anyone's terminal.

Chat text and nicks come from other people. Shown raw, an escape sequence
(CSI, OSC, DCS ...) could move the cursor, rewrite the window title or hide
text, and a BiDi override could make a line read differently from what it
contains ("Trojan Source"). These pure functions turn such characters into
visible stand-ins, so what a peer typed is shown *literally* and controls
nothing. The TUI builds ``rich.text.Text`` from the results (never markup
strings), so ``[bold]`` typed by a peer also stays literal.

Nicks get more: the invisible characters the nick rule refuses (fillers, zero-width and
other default-ignorable characters, blank symbols) show as ``\ufffd`` too, for nicks
committed before the rule refused them.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from raftchat.limits import MAX_NICK_CHARS, replace_invisible

logger = logging.getLogger(__name__)

REPLACEMENT_CHAR = "\ufffd"
"""Shown for invisible formatting characters that could reorder or hide text."""

_C0_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)}
"""C0 controls become their Unicode 'control pictures' (ESC -> '␛', NUL -> '␀')."""
_C0_PICTURES[0x7F] = "\u2421"  # DEL -> '␡'
_C0_PICTURES[0x09] = " "  # a tab is shown as one space: its width depends on the terminal
_C0_PICTURES[0x0A] = "\u21b5"  # newline -> '↵': a chat line stays one logical line
_C0_PICTURES[0x0D] = "\u21b5"

_BIDI_CONTROLS = frozenset(
    [
        *(0x061C, 0x200E, 0x200F),  # ALM, LRM, RLM
        *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
        *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
    ]
)
"""Characters that reorder the display of the text around them."""

_ALLOWED_FORMAT = frozenset([0x200C, 0x200D, 0xFE0E, 0xFE0F])
"""Format characters kept because emoji and some scripts need them (ZWNJ, ZWJ, VS15, VS16)."""

_ASCII_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
"""The fast path for ASCII text: only C0 controls and DEL need replacing."""


def _replacement(char: str) -> str:
    code = ord(char)
    if code in _C0_PICTURES:
        return _C0_PICTURES[code]
    if 0x80 <= code <= 0x9F:  # C1 controls, e.g. 0x9B is a one-byte CSI
        return REPLACEMENT_CHAR
    if code in _BIDI_CONTROLS:
        return REPLACEMENT_CHAR
    if code in (0x2028, 0x2029):  # line and paragraph separators
        return "\u21b5"
    if code in _ALLOWED_FORMAT:
        return char
    category = unicodedata.category(char)
    if category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return REPLACEMENT_CHAR
    return char


def _replace(match: re.Match[str]) -> str:
    return _C0_PICTURES[ord(match.group())]


def sanitize_text(text: str) -> str:
    """Return ``text`` with every control or reordering character made visible and inert.

    The result is one logical line with no C0/C1 control characters (so no
    escape sequence can start), no BiDi overrides or isolates and no line
    separators. Printable text, including emoji and non-Latin scripts, is
    unchanged.
    """
    if text.isascii():
        return text if text.isprintable() else _ASCII_CONTROLS.sub(_replace, text)
    return "".join([_replacement(char) if not char.isprintable() else char for char in text])


def sanitize_nick(nick: str, max_chars: int = MAX_NICK_CHARS) -> str:
    """Return a nick fit for display: sanitized, invisible characters made visible,
    whitespace collapsed, at most ``max_chars`` (longer ones are cut, with an ellipsis)."""
    cleaned = " ".join(replace_invisible(sanitize_text(nick), REPLACEMENT_CHAR).split())
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1] + "\u2026"
    return cleaned or "?"


def is_safe(text: str) -> bool:
    """True if ``text`` would be shown unchanged by :func:`sanitize_text`."""
    return sanitize_text(text) == text
