"""Nicks that look alike have equal UTS #39 skeletons; the table is Unicode's data."""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftchat.chat.confusables import (
    ConfusablesTableError,
    read_table,
    skeleton,
    table_version,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("\u0430lice", "alice"),  # Cyrillic a
        ("\u0251lice", "alice"),  # Latin alpha
        ("p\u0430yp\u0430l", "paypal"),
        ("paypaI", "paypal"),  # capital I
        ("rn", "m"),
        ("\u217f", "m"),  # Roman numeral one thousand
        ("\u2113", "l"),  # script small l
        ("\U0001d41a\U0001d41b\U0001d41c", "abc"),  # mathematical bold
        ("\u03bfscar", "oscar"),  # Greek omicron
        ("a\u200bda", "ada"),  # default-ignorable characters are dropped
        ("a\u3164da", "ada"),
        ("caf\u00e9", "cafe\u0301"),  # canonically equivalent
    ],
)
def test_lookalikes_have_the_same_skeleton(one: str, other: str) -> None:
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("alice", "Alice"), ("alice", "alicia"), ("bob", "b0b"), ("ada", "ad\u00e1"), ("x", "")],
)
def test_different_looking_nicks_have_different_skeletons(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)


def test_the_bundled_table_is_unicodes_recent_data() -> None:
    major = int(table_version().split(".")[0])
    assert major >= 17
    text = (ROOT / "raftchat" / "chat" / "confusables.txt").read_text("utf-8")
    version, mappings = read_table(text)
    assert version == table_version()
    assert len(mappings) > 6_000
    assert mappings[0x0430] == "a" and mappings[ord("m")] == "rn"


@given(st.text(max_size=30))
def test_canonically_equivalent_text_has_one_skeleton(text: str) -> None:
    assert skeleton(unicodedata.normalize("NFC", text)) == skeleton(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("# Version: 17.0.0\n0430\n", "line 2 is malformed"),
        ("# Version: 17.0.0\n0430 zz\n", "line 2 is malformed"),
        ("0430 0061\n", "no version"),
        ("# Version: 17.0.0\n", "no mappings"),
    ],
)
def test_a_damaged_table_is_reported(text: str, fragment: str) -> None:
    with pytest.raises(ConfusablesTableError, match=fragment):
        read_table(text)


def make_confusables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_confusables", ROOT / "scripts" / "make_confusables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = """\ufeff# confusables.txt
# Date: 2025-07-22, 05:49:37 GMT
# Version: 17.0.0
#
0430 ;\t0061 ;\tMA\t# ( \u0430 \u2192 a ) CYRILLIC SMALL LETTER A \u2192 LATIN SMALL LETTER A
217F ;\t0072 006E ;\tMA\t# ( \u217f \u2192 rn ) SMALL ROMAN NUMERAL ONE THOUSAND \u2192 r, n
006D ;\t0072 006E ;\tMA\t# ( m \u2192 rn ) LATIN SMALL LETTER M \u2192 r, n
"""


def test_the_generator_writes_a_table_the_module_reads(tmp_path: Path) -> None:
    source, out = tmp_path / "confusables.txt", tmp_path / "table.txt"
    source.write_text(SOURCE, "utf-8")
    assert make_confusables().main([str(source), "--out", str(out)]) == 0
    version, mappings = read_table(out.read_text("utf-8"))
    assert version == "17.0.0"
    assert mappings == {0x0430: "a", 0x006D: "rn", 0x217F: "rn"}


def test_the_generator_refuses_a_prototype_that_is_mapped_again(tmp_path: Path) -> None:
    source = tmp_path / "confusables.txt"
    source.write_text(SOURCE + "0072 ;\t0131 ;\tMA\t# r\n", "utf-8")
    with pytest.raises(SystemExit, match="which is mapped too"):
        make_confusables().main([str(source), "--out", str(tmp_path / "table.txt")])
