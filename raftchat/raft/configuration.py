"""Membership configurations: the ones in the log, and single-server changes to them.

A configuration takes effect as soon as its entry is appended to a log (not
when it commits), and reverts if that entry is truncated away; so every node
keeps the list of configuration entries past its snapshot. The ``data`` of a
CONFIG entry is the codec's encoding of the configuration (the same one the
wire and the snapshot metadata use).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from .codec import decode_configuration
from .messages import Configuration, Entry, EntryKind, NodeId
from .reasons import Reason

logger = logging.getLogger(__name__)


class ConfigurationHistory:
    """The configurations found in the log past the snapshot, newest last."""

    def __init__(self, base_index: int, base: Configuration) -> None:
        self._base_index = base_index
        self._base = base
        self._changes: list[tuple[int, Configuration]] = []

    @property
    def base(self) -> Configuration:
        """The configuration in force at the snapshot."""
        return self._base

    @property
    def changes(self) -> tuple[tuple[int, Configuration], ...]:
        """(index, configuration) of each configuration entry past the snapshot, in order."""
        return tuple(self._changes)

    @property
    def current(self) -> Configuration:
        return self._changes[-1][1] if self._changes else self._base

    @property
    def current_index(self) -> int:
        """Index of the entry that set the current configuration (snapshot index if none)."""
        return self._changes[-1][0] if self._changes else self._base_index

    def at(self, index: int) -> Configuration:
        """The configuration in force once the log is applied up to ``index``."""
        result = self._base
        for change_index, configuration in self._changes:
            if change_index > index:
                break
            result = configuration
        return result

    def observe(self, entries: list[Entry] | tuple[Entry, ...]) -> bool:
        """Record the CONFIG entries among freshly appended ``entries``; True if any."""
        changed = False
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                try:
                    configuration = decode_configuration(entry.data)
                except ValueError as error:
                    logger.error("ignoring configuration entry %d: %s", entry.index, error)
                    continue
                self.record(entry.index, configuration)
                changed = True
        return changed

    def record(self, index: int, configuration: Configuration) -> None:
        """The configuration entry at ``index``, past every one recorded, says
        ``configuration``."""
        self._changes.append((index, configuration))

    def truncate_from(self, index: int) -> bool:
        """Forget configurations of entries at ``index`` and later; True if any."""
        before = len(self._changes)
        while self._changes and self._changes[-1][0] >= index:
            self._changes.pop()
        return len(self._changes) != before

    def compact_to(self, index: int) -> None:
        """The log prefix up to ``index`` became a snapshot."""
        self._base = self.at(index)
        self._base_index = max(self._base_index, index)
        self._changes = [(i, c) for i, c in self._changes if i > index]

    def reset(self, index: int, configuration: Configuration) -> None:
        """The whole log was replaced by a snapshot ending at ``index``."""
        self._base_index = index
        self._base = configuration
        self._changes = []


# --- single-server changes ---------------------------------------------------------


class ConfigurationChangeError(ValueError):
    """A membership change that makes no sense for the current configuration."""


def with_learner(current: Configuration, node_id: NodeId) -> Configuration:
    """``current`` with ``node_id`` added as a learner (it must not be a member yet)."""
    _require_newcomer(current, node_id)
    return replace(current, learners=current.learners | {node_id})


def with_learner_promoted(current: Configuration, node_id: NodeId) -> Configuration:
    """``current`` with the learner ``node_id`` turned into a voter."""
    if node_id not in current.learners:
        raise ConfigurationChangeError(Reason.NOT_A_LEARNER.format(node=node_id))
    return replace(
        current, voters=current.voters | {node_id}, learners=current.learners - {node_id}
    )


def with_witness(current: Configuration, node_id: NodeId) -> Configuration:
    """``current`` with ``node_id`` added as a witness (a voter at once: it needs no data,
    so catching it up is cheap, and it must count the moment it joins)."""
    _require_newcomer(current, node_id)
    return replace(
        current, voters=current.voters | {node_id}, witnesses=current.witnesses | {node_id}
    )


def without_member(current: Configuration, node_id: NodeId) -> Configuration:
    """``current`` without ``node_id`` (any member; never the last voter that can lead)."""
    if node_id not in current.members:
        raise ConfigurationChangeError(Reason.NOT_A_MEMBER.format(node=node_id))
    if not current.member_voters - {node_id}:
        raise ConfigurationChangeError(Reason.LAST_VOTER.format(node=node_id))
    return replace(
        current,
        voters=current.voters - {node_id},
        learners=current.learners - {node_id},
        witnesses=current.witnesses - {node_id},
    )


def without_witness(current: Configuration, node_id: NodeId) -> Configuration:
    """``current`` without the witness ``node_id``."""
    if node_id not in current.witnesses:
        raise ConfigurationChangeError(Reason.NOT_A_WITNESS.format(node=node_id))
    return without_member(current, node_id)


def _require_newcomer(current: Configuration, node_id: NodeId) -> None:
    if node_id in current.members:
        if node_id in current.witnesses:
            kind = "witness"
        else:
            kind = "voter" if node_id in current.voters else "learner"
        raise ConfigurationChangeError(Reason.ALREADY_MEMBER.format(node=node_id, kind=kind))
