"""A bound on the data aiortc's SCTP keeps in flight on one association.

aiortc 1.16's SCTP (``aiortc.rtcsctptransport.RTCSctpTransport``) sends while its
congestion window allows and ignores the receiver's advertised window; the window
grows until a packet is lost. Between processes on one busy machine nothing is lost
for a long time (the peer's UDP socket buffer just fills), so the window reaches
megabytes: measured on loopback, a leader replicating a burst had about 1 MB in
flight to each follower and a smoothed round-trip time of over one second, all of it
queueing in front of the followers' sockets. A Raft heartbeat sent then arrives a
second late, whatever queue it jumped on our side, and an election starts.

:func:`limit_flight` caps the congestion window of one transport, which bounds the
bytes in flight and so the queueing delay. The cap is applied through a property
that replaces the ``_cwnd`` attribute on the class; transports without a cap (any
not passed to :func:`limit_flight`) behave exactly as before. Only aiortc versions
whose SCTP was checked to keep its window in ``_cwnd`` are adapted; on any other,
:func:`limit_flight` does nothing and returns False.
"""

from __future__ import annotations

import logging
from typing import Any

import aiortc
from aiortc.rtcsctptransport import RTCSctpTransport

logger = logging.getLogger(__name__)

CHECKED_AIORTC_VERSIONS = ("1.16.",)
"""Versions whose SCTP congestion control was read: it keeps the window in ``_cwnd``,
compares it with ``_flight_size`` before each send, and only ever assigns it."""

_WINDOW = "_raftchat_cwnd"
_CAP = "_raftchat_max_cwnd"


def _get_cwnd(transport: Any) -> int:
    state = transport.__dict__
    return state[_WINDOW] if _WINDOW in state else state["_cwnd"]


def _set_cwnd(transport: Any, value: int) -> None:
    cap = transport.__dict__.get(_CAP)
    transport.__dict__[_WINDOW] = value if cap is None else min(value, cap)


def _supported() -> bool:
    version = getattr(aiortc, "__version__", "")
    return version.startswith(CHECKED_AIORTC_VERSIONS)


def _install() -> bool:
    """Put the capping property on the class once; False if this aiortc is not checked."""
    if isinstance(RTCSctpTransport.__dict__.get("_cwnd"), property):
        return True
    if not _supported():
        logger.info(
            "aiortc %s not checked: SCTP flight is not limited",
            getattr(aiortc, "__version__", "?"),
        )
        return False
    RTCSctpTransport._cwnd = property(_get_cwnd, _set_cwnd)  # type: ignore[attr-defined]
    return True


def limit_flight(transport: RTCSctpTransport, max_bytes: int) -> bool:
    """Never keep more than about ``max_bytes`` (plus one packet) unacknowledged on
    ``transport``. False if this aiortc version is not adapted (nothing changed)."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    if not _install():
        return False
    transport.__dict__[_CAP] = max_bytes
    transport._cwnd = transport._cwnd  # type: ignore[attr-defined]  # apply the cap now
    return True


def flight_limit(transport: RTCSctpTransport) -> int | None:
    """The cap :func:`limit_flight` set on ``transport``, or None."""
    return transport.__dict__.get(_CAP)
