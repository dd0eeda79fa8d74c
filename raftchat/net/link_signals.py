"""The signals the two ends of a link exchange over the signaling relay.

Each is a small JSON object (the relay's opaque ``payload``)::

    {"type": "offer",   "session": ID, "sdp": SDP}   from the peer with the smaller id
    {"type": "answer",  "session": ID, "sdp": SDP}   the answer to that session's offer
    {"type": "restart", "session": ID | null}         "offer again", naming the last
                                                      session the requester saw

The relay (the signaling server) is not trusted: :func:`signal_problem` checks every
payload before a link sees it.
"""

from __future__ import annotations

from typing import Any, Protocol

SIGNAL_OFFER = "offer"
SIGNAL_ANSWER = "answer"
SIGNAL_RESTART = "restart"

MAX_SESSION_ID_LENGTH = 64


class SignalSender(Protocol):
    """The part of the signaling client the mesh uses."""

    async def send_signal(self, to: str, payload: dict) -> bool: ...


def signal_problem(self_id: str, sender: Any, payload: Any, max_sdp_bytes: int) -> str | None:
    """What is wrong with a signal from ``sender`` to ``self_id``; None if it is valid."""
    if not isinstance(sender, str) or not sender or sender == self_id:
        return f"invalid sender {sender!r}"
    if not isinstance(payload, dict):
        return "payload is not an object"
    kind = payload.get("type")
    if kind not in (SIGNAL_OFFER, SIGNAL_ANSWER, SIGNAL_RESTART):
        return f"unknown type {kind!r}"
    session = payload.get("session")
    valid_session = isinstance(session, str) and 0 < len(session) <= MAX_SESSION_ID_LENGTH
    # A restart request may carry no session: the peer has not seen any offer yet.
    if not valid_session and not (kind == SIGNAL_RESTART and session is None):
        return "missing or invalid session id"
    if kind in (SIGNAL_OFFER, SIGNAL_ANSWER):
        sdp = payload.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            return "missing sdp"
        if len(sdp) > max_sdp_bytes:
            return f"sdp of {len(sdp)} bytes exceeds max_sdp_bytes={max_sdp_bytes}"
    if kind == SIGNAL_OFFER and self_id < sender:
        return "an offer from a peer with a larger id breaks the no-glare rule"
    return None
