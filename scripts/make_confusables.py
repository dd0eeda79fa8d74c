"""Write raftchat/chat/confusables.txt, the prototype table of UTS #39 skeletons, from
Unicode's confusables.txt (https://www.unicode.org/Public/security/latest/confusables.txt).

    python scripts/make_confusables.py PATH/TO/confusables.txt

The table keeps every mapping of the source (each character to its prototype, a string
of one or more characters) in a compact form, with the source's version, date and
SHA-256, so a newer release of Unicode's data is one command away and a change to the
table is a reviewable diff. :mod:`raftchat.chat.confusables` reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "raftchat" / "chat" / "confusables.txt"

_HEADER_FIELDS = re.compile(r"^#\s*(Version|Date):\s*(.+?)\s*$")


def read_mappings(text: str) -> tuple[dict[str, str], dict[int, list[int]]]:
    """The header fields (Version, Date) and source code point → prototype code points."""
    header: dict[str, str] = {}
    mappings: dict[int, list[int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        field = _HEADER_FIELDS.match(line)
        if field:
            header.setdefault(field.group(1), field.group(2))
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        parts = [part.strip() for part in data.split(";")]
        if len(parts) != 3 or parts[2] != "MA":
            raise SystemExit(f"line {number}: expected 'SOURCE ; TARGET ; MA', got {data!r}")
        source = [int(code, 16) for code in parts[0].split()]
        target = [int(code, 16) for code in parts[1].split()]
        if len(source) != 1 or not target:
            raise SystemExit(f"line {number}: one source character and a target expected")
        if source[0] in mappings:
            raise SystemExit(f"line {number}: U+{source[0]:04X} is mapped twice")
        mappings[source[0]] = target
    for field in ("Version", "Date"):
        if field not in header:
            raise SystemExit(f"no '# {field}:' line: is this Unicode's confusables.txt?")
    return header, mappings


def check_idempotent(mappings: dict[int, list[int]]) -> None:
    """A prototype is never itself mapped, so one pass of the table gives the skeleton."""
    for source, target in mappings.items():
        mapped = [code for code in target if code in mappings]
        if mapped:
            raise SystemExit(f"U+{source:04X} maps to U+{mapped[0]:04X}, which is mapped too")


def render(header: dict[str, str], digest: str, mappings: dict[int, list[int]]) -> str:
    lines = [
        "# Prototypes for UTS #39 skeletons: each line is a character and the characters it",
        "# looks like (its prototype), as hexadecimal code points. Generated from Unicode's",
        "# confusables.txt by scripts/make_confusables.py; do not edit by hand.",
        f"# Version: {header['Version']}",
        f"# Date: {header['Date']}",
        f"# Source SHA-256: {digest}",
        "# Unicode data: Copyright (c) Unicode, Inc. Terms of use and license:",
        "# https://www.unicode.org/terms_of_use.html and https://www.unicode.org/license.txt",
    ]
    for source in sorted(mappings):
        lines.append(" ".join(f"{code:04X}" for code in (source, *mappings[source])))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="Unicode's confusables.txt")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    raw = args.source.read_bytes()
    header, mappings = read_mappings(raw.decode("utf-8-sig"))
    check_idempotent(mappings)
    args.out.write_text(render(header, hashlib.sha256(raw).hexdigest(), mappings), "utf-8")
    print(f"{args.out}: {len(mappings)} mappings, Unicode {header['Version']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
