"""How membership notices are shown: every one, folded into one line per burst, or none.

Joins, promotions, leaves and leader changes come in bursts (a member joins as a
learner, is promoted, a leader is elected). In ``smart`` mode (the default) a burst
is one dim line, updated in place while it lasts::

    --> │ alice joined as learner, is now a voter · carol was removed: not heard from for 31 s

``all`` shows each notice on its own line; ``none`` hides them. Errors, nick changes
and the other notices are always shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftchat.node.api import NoticeEvent
from raftchat.settings import NOTICE_MODES

MEMBERSHIP_KINDS = frozenset({"join", "leave", "leader"})
"""Notice kinds that are about membership; ``info`` ones are when they name a member."""
BURST_GAP_S = 30.0
"""A membership notice this soon after the previous one extends its burst."""
PART_SEPARATOR = " \u00b7 "


def is_membership(notice: NoticeEvent) -> bool:
    return notice.kind in MEMBERSHIP_KINDS or (notice.kind == "info" and notice.member is not None)


def notice_mode_problem(value: str) -> str | None:
    """Why ``value`` is no notice mode, or None."""
    if value in NOTICE_MODES:
        return None
    return f"notices can be {', '.join(NOTICE_MODES[:-1])} or {NOTICE_MODES[-1]}, not {value!r}"


@dataclass
class _Part:
    member: str | None
    name: str
    """How the first notice named the member: the start of its text."""
    texts: list[str] = field(default_factory=list)


@dataclass
class NoticeBurst:
    """Membership notices close together in time, shown as one line."""

    started: float
    last: float
    parts: list[_Part] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)

    @property
    def kind(self) -> str:
        """The notice kind the line is marked as: joins only, leaves only, or a mix."""
        return next(iter(self.kinds)) if len(self.kinds) == 1 else "info"

    def add(self, notice: NoticeEvent, name: str) -> None:
        self.last = max(self.last, notice.ts)
        self.kinds.add(notice.kind)
        for part in self.parts:
            same_name = notice.text.startswith(part.name + " ")
            if notice.member is not None and part.member == notice.member and same_name:
                part.texts.append(notice.text[len(part.name) + 1 :])  # "alice joined, is …"
                return
        self.parts.append(_Part(notice.member, name, [notice.text]))

    def text(self) -> str:
        return PART_SEPARATOR.join(", ".join(part.texts) for part in self.parts)

    def continues(self, notice: NoticeEvent) -> bool:
        return 0 <= notice.ts - self.last <= BURST_GAP_S
