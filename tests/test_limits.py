"""The naming and size rules every layer shares: channel names and node ids."""

from __future__ import annotations

import secrets

import pytest

from raftchat.limits import (
    MAX_CHANNEL_NAME_CHARS,
    MAX_NODE_ID_CHARS,
    PEER_ID_PATTERN,
    channel_name_problem,
    node_id_problem,
)


@pytest.mark.parametrize("name", ["general", "room-1", "a", "x_y", "9" * MAX_CHANNEL_NAME_CHARS])
def test_canonical_channel_names_are_accepted(name: str) -> None:
    assert channel_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", "Upper", "a.b", "-lead", "_lead", "a/b", "sp ace", "x" * (MAX_CHANNEL_NAME_CHARS + 1), 7],
)
def test_other_channel_names_are_refused_with_the_rule_in_words(name: object) -> None:
    problem = channel_name_problem(name)
    assert problem is not None
    assert problem.startswith("invalid channel name") and "a-z, 0-9" in problem


def test_a_minted_node_id_is_a_node_id_and_a_peer_id() -> None:
    node_id = secrets.token_hex(8)  # what a new data dir gets
    assert node_id_problem(node_id) is None
    assert PEER_ID_PATTERN.fullmatch(node_id)


@pytest.mark.parametrize(
    ("node_id", "fragment"),
    [
        ("", "missing node id"),
        (None, "missing node id"),
        ("n" * (MAX_NODE_ID_CHARS + 1), "longer than 64"),
        ("n 1", "only the characters"),
        ("né", "only the characters"),
        ("a:b", "only the characters"),
    ],
)
def test_malformed_node_ids_are_refused(node_id: object, fragment: str) -> None:
    problem = node_id_problem(node_id)
    assert problem is not None and fragment in problem


def test_short_ids_are_node_ids_but_not_signaling_peer_ids() -> None:
    assert node_id_problem("n1") is None
    assert not PEER_ID_PATTERN.fullmatch("n1")
