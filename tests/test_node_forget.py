"""The rules around /forget (node/forget.py): whom a name means, when it is refused, what
the user is told. Pure: configuration and quorum facts in, a plan or a refusal out."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from raftchat import chat
from raftchat.node.api import ForgetRefusedError, MissingVoter
from raftchat.node.forget import (
    ForgetPlan,
    forget_line,
    forgettable,
    messages_lost,
    plan_forget,
)
from raftchat.raft import Configuration, Entry, EntryKind

NAMES = {"a": "alice", "b": "bob", "c": "carol", "d": "dave", "l": "lee"}


def config(
    voters: Iterable[str], learners: Iterable[str] = "", witnesses: Iterable[str] = ""
) -> Configuration:
    return Configuration(frozenset(voters), frozenset(learners), None, frozenset(witnesses))


def plan(
    names: list[str],
    voters: Iterable[str] = "ab",
    missing: Iterable[str] = "b",
    *,
    learners: Iterable[str] = "l",
    me: str = "a",
    name_of: dict[str, str] | None = None,
) -> ForgetPlan:
    configuration = config(voters, learners)
    shown = name_of or NAMES
    gone = tuple(MissingVoter(n, shown[n], 30) for n in sorted(missing))
    return plan_forget(
        names,
        self_id=me,
        configuration=configuration,
        missing=gone,
        needed=len(configuration.voters) // 2 + 1,
        reachable=len(configuration.voters) - len(gone),
        name_of=lambda node_id: shown[node_id],
    )


def test_the_last_voter_may_forget_the_dead_one() -> None:
    forgotten = plan(["bob"])
    assert forgotten == ForgetPlan(frozenset("b"), ("bob",))
    assert forgotten.warning == (
        "Only do this if bob's machine is really gone. If bob is still running somewhere and"
        " also carries on without you, the two of you will have split histories and messages"
        " may be lost. To carry on without bob, type /forget bob --yes"
    )


def test_several_dead_voters_are_forgotten_together() -> None:
    forgotten = plan(["carol", "bob", "carol"], voters="abc", missing="bc")
    assert forgotten.node_ids == {"b", "c"} and forgotten.names == ("carol", "bob")
    assert "the machines of carol and bob are really gone" in forgotten.warning
    assert forgotten.warning.endswith("type /forget carol bob --yes")


@pytest.mark.parametrize(
    ("names", "voters", "missing", "error"),
    [
        (["alice"], "ab", "b", "You cannot forget yourself."),
        (["zed"], "ab", "b", "No member is called zed. The other voters are: bob."),
        (["lee"], "ab", "b", "lee is a learner"),
        (["bob"], "ab", "", "bob is reachable (heard from lately)"),
        (["bob", "carol"], "abc", "b", "carol is reachable"),
        (["bob"], "abc", "b", "The channel can commit (2 of 3 voters reachable, 2 needed)"),
        (
            ["bob"],
            "abc",
            "bc",
            "The channel would still wait for carol: to carry on alone, type /forget bob carol.",
        ),
        (["carol", "dave"], "abcd", "cd", "bob would still be a voter: only the last voter left"),
        ([], "ab", "b", "Name whom to forget"),
    ],
)
def test_refusals_say_why_and_what_to_do(names, voters, missing, error) -> None:
    with pytest.raises(ForgetRefusedError) as refused:
        plan(names, voters, missing)
    assert str(refused.value).startswith(error)


def test_a_learner_cannot_forget_anyone() -> None:
    with pytest.raises(ForgetRefusedError, match="not a voter"):
        plan(["bob"], voters="ab", missing="b", learners="l", me="l")


def test_names_are_the_ones_the_status_shows() -> None:
    """Two members called bob are shown as bob and bob#b2; a member without a nick as
    user-...: what the user reads is what the user types."""
    shown = {"a": "alice", "b": "bob", "b2": "bob#b2", "u": "user-u"}
    forgotten = plan(
        ["bob#b2", "user-u"], ["a", "b2", "u"], ["b2", "u"], learners=["b"], name_of=shown
    )
    assert forgotten.node_ids == {"b2", "u"}


def test_forget_is_suggested_when_it_would_leave_this_node_the_only_voter() -> None:
    assert forgettable("a", config("ab"), ["b"])
    assert forgettable("a", config("abc", "l"), ["b", "c"])
    assert not forgettable("a", config("abc"), ["b"])  # carol would still be needed
    assert not forgettable("a", config("ab"), [])
    assert not forgettable("l", config("ab", "l"), ["a", "b"])  # a learner cannot lead
    assert not forgettable("w", config("aw", witnesses="w"), ["a"])
    assert forget_line(["bob", "carol"]) == "/forget bob carol"
    assert forget_line(["bob"], confirm=True) == "/forget bob --yes"


# --- after a split ----------------------------------------------------------------------


def chat_with(messages: list[tuple[str, int, str]]) -> chat.ChatState:
    """A chat state that applied ``(client, serial, text)`` messages at indexes 1, 2, ..."""
    state = chat.ChatState(history_limit=3)
    for index, (client, serial, text) in enumerate(messages, start=1):
        data = chat.encode_command(chat.ChatMessage(client, text, 1_800_000_000_000, False))
        state.apply(Entry(index, 1, EntryKind.NORMAL, data, client, serial))
    return state


def test_messages_lost_are_committed_ones_a_snapshot_lacks_within_its_window() -> None:
    ours = chat_with([("a", 1, "hi"), ("b", 1, "one"), ("b", 2, "two")])
    theirs = chat_with([("a", 1, "hi"), ("a", 2, "other"), ("a", 3, "side")])
    lost = messages_lost(ours.history(), theirs)
    assert [m.text for m in lost] == ["one", "two"]
    caught_up = chat_with([("a", 1, "hi"), ("b", 1, "one"), ("b", 2, "two"), ("c", 1, "x")])
    assert messages_lost(ours.history(), caught_up) == []  # "hi" fell out of the window
