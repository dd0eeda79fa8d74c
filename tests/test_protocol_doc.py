"""docs/protocol.md's tables say what the code does: every node message with its tag and
fields in wire order, and the chat command tags."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from raftchat.chat import commands
from raftchat.net.engines.base import CHANNEL_LABEL
from raftchat.node.cluster import NODE_CODEC
from raftchat.raft.codec import PROTOCOL_VERSION

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")


def table_rows(heading_marker: str) -> list[list[str]]:
    """The rows of the first table after ``heading_marker`` (cells stripped)."""
    section = DOC[DOC.index(heading_marker) :]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ---"):
            continue
        if line.startswith("| "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[1:]  # without the header


def test_every_node_message_is_documented_with_its_tag_and_fields_in_order() -> None:
    documented = {
        int(tag): (name, [field.split(":")[0].strip() for field in fields.split(",")])
        for tag, name, fields in table_rows("<!-- The tables below")
    }
    types = NODE_CODEC.message_types
    assert sorted(documented) == list(range(len(types)))
    for tag, cls in enumerate(types):
        name, fields = documented[tag]
        assert name == cls.__name__, f"tag {tag}"
        assert fields == [field.name for field in dataclasses.fields(cls)], name


def test_the_versions_and_labels_the_doc_names_are_the_codes() -> None:
    assert f"PROTOCOL_VERSION = {PROTOCOL_VERSION}" in DOC
    assert f"COMMAND_VERSION = {commands.COMMAND_VERSION}" in DOC
    assert f"label `{CHANNEL_LABEL}`" in DOC
    tags = {int(tag): name for tag, name, _ in table_rows("### Chat commands")}
    code_tags = {
        value: name for name, value in vars(commands).items() if re.fullmatch(r"_TAG_[A-Z_]+", name)
    }
    assert sorted(tags) == sorted(code_tags)


def test_every_signaling_frame_type_and_both_websockets_are_documented() -> None:
    from raftchat.net.signaling.protocol import SHARED_WS_PATH, WS_PATH_TEMPLATE, FrameType

    section = DOC[DOC.index("## 1. Signaling") : DOC.index("## 2. DataChannel frames")]
    for frame_type in FrameType:
        assert f'"type":"{frame_type}"' in section, frame_type
    assert f"`GET {SHARED_WS_PATH}`" in section
    assert f"`GET {WS_PATH_TEMPLATE}`" in section
