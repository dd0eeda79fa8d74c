"""Which nicks look alike: the confusable skeleton of Unicode Technical Standard #39.

Two strings whose skeletons are equal can look the same on screen: ``alice`` spelt with a
Cyrillic a (U+0430) and ``alice``, ``paypaI`` with a capital I and ``paypal``, ``rn`` and
``m``. The display treats nicks with equal skeletons as one nick and tells their holders
apart by the start of their node ids (:meth:`~raftchat.chat.state.ChatState.display_name`).

``skeleton(X)`` is UTS #39's (section 4, "Confusable Detection"): X in NFD, without its
default-ignorable characters, each character replaced by its prototype, and NFD again.
The prototypes are Unicode's confusables.txt, kept as ``confusables.txt`` next to this
module (``scripts/make_confusables.py`` writes it; its header names the Unicode version).
Python's :mod:`unicodedata` does the normalization. What is shown never depends on the
table's version across members in a way that matters: the skeleton decides only where an
id suffix is added, on each member's own screen, never which entries are applied.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache, lru_cache
from importlib import resources

logger = logging.getLogger(__name__)

TABLE_NAME = "confusables.txt"

_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
"""Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt): removed from a
skeleton, since they show as nothing."""

_TABLE_LINE = re.compile(r"[0-9A-F]{4,6}(?: [0-9A-F]{4,6})+")


class ConfusablesTableError(ValueError):
    """The bundled table is damaged (an installation problem)."""


def read_table(text: str) -> tuple[str, dict[int, str]]:
    """The Unicode version and the mappings (code point → prototype) of a table as
    ``scripts/make_confusables.py`` writes it."""
    version = ""
    mappings: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            if line.startswith("# Version:"):
                version = line.partition(":")[2].strip()
            continue
        if not _TABLE_LINE.fullmatch(line):
            raise ConfusablesTableError(f"{TABLE_NAME} line {number} is malformed: {line!r}")
        source, *prototype = (int(code, 16) for code in line.split())
        mappings[source] = "".join(map(chr, prototype))
    if not version or not mappings:
        raise ConfusablesTableError(f"{TABLE_NAME} has no version or no mappings")
    return version, mappings


@cache
def _table() -> tuple[str, dict[int, str | None]]:
    """The Unicode version of the bundled table, and the ``str.translate`` table of the
    skeleton: default-ignorable characters to nothing, the others to their prototype."""
    text = resources.files(__package__).joinpath(TABLE_NAME).read_text("utf-8")
    version, mappings = read_table(text)
    translation: dict[int, str | None] = dict(mappings)
    for first, last in _DEFAULT_IGNORABLE_RANGES:
        for code in range(first, last + 1):
            translation[code] = None
    return version, translation


def table_version() -> str:
    """The Unicode version of the confusables data in use (``"17.0.0"``)."""
    return _table()[0]


@lru_cache(maxsize=4096)
def skeleton(text: str) -> str:
    """UTS #39's skeleton of ``text``: equal for strings that can be confused with each
    other (``skeleton("\u0430lice") == skeleton("alice")``)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(_table()[1]))
