"""``/forget``: the last member the channel can reach carries on without the dead ones.

A channel whose voters are mostly gone cannot commit, and Raft cannot remove them
either (that needs a quorum too). Two members where one machine died are the common
case: a private channel has no witness on the signaling server to break the tie. The
way out is a forced change (:mod:`raftchat.raft.forced`); this module holds the rules
a person meets around it, each defined once:

- when the status suggests it (:func:`forgettable`): the channel cannot commit and
  forgetting every voter this node cannot reach would leave it the only voter;
- whom a typed name means, and when ``/forget`` is refused (:func:`plan_forget`): an
  unknown name or one's own, a voter heard from lately, a channel that can commit (the
  leader then removes a silent member by itself), or one that would still not commit,
  or would keep another voter (only the last voter left may carry on alone);
- the warning shown before anything happens, confirmed by ``--yes``
  (:attr:`ForgetPlan.warning`), and what a node says when it finds that two members
  forgot each other: their histories split (:func:`split_history_text`,
  :func:`messages_lost`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from raftchat import chat
from raftchat.node.api import FORGET_CONFIRM, ForgetRefusedError, MissingVoter
from raftchat.raft import Configuration, NodeId


def forget_line(names: Sequence[str], *, confirm: bool = False) -> str:
    """The command that forgets ``names``: ``/forget bob`` (``/forget bob --yes``)."""
    return " ".join(("/forget", *names, *((FORGET_CONFIRM,) if confirm else ())))


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def forgettable(self_id: NodeId, configuration: Configuration, missing: Collection[NodeId]) -> bool:
    """Whether forgetting the voters ``missing`` (this node cannot reach them) would let
    the channel commit again: this node would be the only voter left, and may lead."""
    return (
        bool(missing)
        and self_id in configuration.member_voters
        and configuration.voters - frozenset(missing) == {self_id}
    )


@dataclass(frozen=True, slots=True)
class ForgetPlan:
    """The voters a confirmed ``/forget`` removes, and what to tell the user first."""

    node_ids: frozenset[NodeId]
    names: tuple[str, ...]

    @property
    def warning(self) -> str:
        """The warning shown before anything happens, ending with how to confirm."""
        who = _and(self.names)
        one = len(self.names) == 1
        machine = f"{who}'s machine is" if one else f"the machines of {who} are"
        pronoun = "they are" if not one else f"{self.names[0]} is"
        together = "the two of you" if one else "you and they"
        return (
            f"Only do this if {machine} really gone. If {pronoun} still running somewhere"
            f" and also carr{'ies' if one else 'y'} on without you, {together} will have"
            " split histories and messages may be lost. To carry on without"
            f" {who}, type {forget_line(self.names, confirm=True)}"
        )


def plan_forget(
    names: Sequence[str],
    *,
    self_id: NodeId,
    configuration: Configuration,
    missing: Sequence[MissingVoter],
    needed: int,
    reachable: int,
    name_of: Callable[[NodeId], str],
) -> ForgetPlan:
    """Whom ``names`` (as the status and notices show them) mean, if forgetting them is
    allowed now; ForgetRefusedError saying why not and what to do otherwise.

    ``missing``, ``needed`` and ``reachable`` are the quorum facts the status shows
    (:func:`raftchat.node.events.assess_quorum`): one rule of who is reachable.
    """
    if self_id not in configuration.member_voters:
        raise ForgetRefusedError(
            "Cannot forget anyone: this node is not a voter of the channel (yet)."
        )
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise ForgetRefusedError(f"Name whom to forget: type {forget_line(['NICK'])}.")
    by_name = _members_by_name(configuration, name_of)
    own = name_of(self_id)
    node_ids: list[NodeId] = []
    for name in wanted:
        found = by_name.get(name, [])
        if name == own or self_id in found:
            raise ForgetRefusedError("You cannot forget yourself.")
        if not found:
            voters = ", ".join(sorted(name_of(v) for v in configuration.voters - {self_id}))
            raise ForgetRefusedError(
                f"No member is called {name}. The other voters are: {voters or 'none'}."
            )
        if len(found) > 1:
            raise ForgetRefusedError(f"{name} names {len(found)} members; use the name shown.")
        if found[0] not in configuration.voters:
            raise ForgetRefusedError(
                f"{name} is a learner: learners never hold the channel up, nothing to forget."
            )
        node_ids.append(found[0])
    gone = {voter.node_id for voter in missing}
    heard = [name for name, node_id in zip(wanted, node_ids, strict=True) if node_id not in gone]
    if heard:
        raise ForgetRefusedError(
            f"{_and(heard)} {'is' if len(heard) == 1 else 'are'} reachable (heard from lately):"
            " forget only members whose machines are gone."
        )
    if reachable >= needed:
        raise ForgetRefusedError(
            f"The channel can commit ({reachable} of {len(configuration.voters)} voters"
            f" reachable, {needed} needed): the leader removes {_and(wanted)} by itself"
            " once not heard from for the member timeout."
        )
    left_missing = [voter.nick for voter in missing if voter.node_id not in node_ids]
    if left_missing:
        everyone = [*wanted, *left_missing]
        raise ForgetRefusedError(
            f"The channel would still wait for {_and(left_missing)}: to carry on alone, "
            f"type {forget_line(everyone)}."
        )
    others = sorted(name_of(v) for v in configuration.voters - frozenset(node_ids) - {self_id})
    if others:
        raise ForgetRefusedError(
            f"{_and(others)} would still be {'a voter' if len(others) == 1 else 'voters'}:"
            " only the last voter left can carry on alone. Wait for the missing members to"
            " come back."
        )
    return ForgetPlan(frozenset(node_ids), tuple(wanted))


def _members_by_name(
    configuration: Configuration, name_of: Callable[[NodeId], str]
) -> dict[str, list[NodeId]]:
    found: dict[str, list[NodeId]] = {}
    for node_id in sorted(configuration.members):
        found.setdefault(name_of(node_id), []).append(node_id)
    return found


def forgotten_text(name: str) -> str:
    """The notice once the change is done (in place of the usual removal notice)."""
    return f"you carried on without {name} (forgotten)"


# --- after a split ------------------------------------------------------------------


def split_history_text(other: str) -> str:
    """Told when this node finds that its history and ``other``'s split."""
    return (
        f"Your history and {other}'s split: both of you carried on without the other."
        f" This node keeps its own history and ignores {other}'s; messages written on"
        " either side since are not on the other. To join the other side, leave and"
        " join again with a new data dir (what only this side has is then not carried"
        " over)."
    )


def messages_lost(
    before: Iterable[chat.MessageApplied], after: chat.ChatState
) -> list[chat.MessageApplied]:
    """Messages this node had committed (``before``) that the state ``after`` a snapshot
    install lacks, though its history window reaches back to them: it came from a
    history that split from this node's. None in a channel that never split."""
    window = after.history()
    oldest = window[0].index if window else 0
    return [m for m in before if m.index >= oldest and not after.has_message(m.id)]


def lost_text(lost: Sequence[chat.MessageApplied]) -> str:
    """Told when a snapshot replaced messages this node had committed."""
    count = len(lost)
    noun = "message" if count == 1 else "messages"
    return (
        f"The channel's history split (two members carried on without each other) and"
        f" this node took the other side's: {count} {noun} committed here "
        f"{'is' if count == 1 else 'are'} not in it and no longer shown."
    )
