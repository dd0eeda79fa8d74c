"""Client sessions: each client's nick and latest serials, and who uses which nick.

Nicks that look alike count as one nick for display: two clients whose nicks have the same
confusable skeleton (:func:`~raftchat.chat.confusables.skeleton`: ``alice``, and ``alice``
with a Cyrillic a, U+0430; or two equal nicks) are both shown with the start of their id.

A client numbers its proposals with increasing serials; the session remembers the
latest (serial, index) pairs: the last applied serial decides what applies next (the
rule is in :class:`~raftchat.chat.state.ChatState`), and a retried serial is dropped as
a duplicate that points at its original. Sessions are bounded: beyond the cap the
least recently active client is forgotten (see :mod:`raftchat.chat` for why that is
safe).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from raftchat.chat.confusables import skeleton
from raftchat.limits import NICK_DISAMBIGUATOR

logger = logging.getLogger(__name__)

_MIN_SUFFIX_CHARS = 4
"""Shortest node id prefix shown after a shared nick (``ada#3f2a``)."""


@dataclass(slots=True)
class Session:
    """What is known about one client: its nick and its latest (serial, index) pairs."""

    nick: str
    recent: deque[tuple[int, int]] = field(default_factory=deque)

    @property
    def last_serial(self) -> int:
        return self.recent[-1][0]


class SessionTable:
    """The sessions of every known client, least recently active first.

    Moving a client to the end on every proposal makes the eviction order a
    function of the log alone, so every node forgets the same clients.
    """

    def __init__(self, max_sessions: int, serials_remembered: int) -> None:
        self.max_sessions = max_sessions
        self.serials_remembered = serials_remembered
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._clients_by_skeleton: dict[str, set[str]] = {}
        """Who holds a nick of each skeleton (only built for nicks someone holds)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._sessions

    def get(self, client_id: str) -> Session | None:
        return self._sessions.get(client_id)

    def items(self) -> Iterator[tuple[str, Session]]:
        """(client id, session) pairs, least recently active first."""
        return iter(self._sessions.items())

    def nick_of(self, client_id: str) -> str | None:
        """The client's current nick (empty if it never sent a valid one), or None if the
        client is not (or no longer) known."""
        session = self._sessions.get(client_id)
        return session.nick if session else None

    def nicks(self) -> dict[str, str]:
        """Client id → current nick, for every known client."""
        return {client_id: session.nick for client_id, session in self._sessions.items()}

    def last_serial(self, client_id: str) -> int:
        """The highest serial applied for the client (0 if unknown)."""
        session = self._sessions.get(client_id)
        return session.last_serial if session else 0

    def display_name(self, client_id: str, nick: str | None = None) -> str:
        """How to show a client: its nick, plus ``#<id prefix>`` when another known client
        uses the same nick or one that looks alike (``ada`` vs ``ada#3f2a``; ``alice#3f2a`` and
        ``alice#c0ff`` when one of them is spelt with a Cyrillic a). ``nick`` defaults to
        the current one."""
        if nick is None:
            nick = self.nick_of(client_id)
        if not nick:
            return client_id[:8] or "?"
        holders = self._clients_by_skeleton.get(skeleton(nick))
        if not holders or (len(holders) == 1 and client_id in holders):
            return nick  # nobody else uses a nick like it (the common case)
        others = holders - {client_id}
        length = _MIN_SUFFIX_CHARS
        while length < len(client_id) and any(
            other[:length] == client_id[:length] for other in others
        ):
            length += 1
        return f"{nick}{NICK_DISAMBIGUATOR}{client_id[:length]}"

    def record(self, client_id: str, serial: int, index: int, nick: str) -> None:
        """Note (serial, index) and the nick for the client, mark it most recently active,
        and forget the least recently active clients beyond the cap."""
        session = self._sessions.pop(client_id, None)
        if session is None:
            session = Session(nick="", recent=deque(maxlen=self.serials_remembered))
        self._sessions[client_id] = session
        self._set_nick(client_id, session, nick)
        session.recent.append((serial, index))
        while len(self._sessions) > self.max_sessions:
            evicted_id, evicted = self._sessions.popitem(last=False)
            self._set_nick(evicted_id, evicted, "")
            logger.debug("session of client %s forgotten (cap %d)", evicted_id, len(self._sessions))

    def restore(self, client_id: str, nick: str, recent: deque[tuple[int, int]]) -> None:
        """Add a session read from a snapshot as the most recently active one."""
        session = Session(nick="", recent=recent)
        self._sessions[client_id] = session
        self._set_nick(client_id, session, nick)

    def _set_nick(self, client_id: str, session: Session, nick: str) -> None:
        if session.nick == nick:
            return
        if session.nick:
            key = skeleton(session.nick)
            holders = self._clients_by_skeleton[key]
            holders.discard(client_id)
            if not holders:
                del self._clients_by_skeleton[key]
        if nick:
            self._clients_by_skeleton.setdefault(skeleton(nick), set()).add(client_id)
        session.nick = nick
