"""WebRTC engines behind one seam (:mod:`raftchat.net.engines.base`), and which one runs.

Two engines implement :class:`Engine`: ``wrtc`` (:mod:`~raftchat.net.engines.wrtc_engine`,
Chrome's libwebrtc through the optional ``wrtc`` package: ``pip install raftchat[wrtc]``)
and ``aiortc`` (:mod:`~raftchat.net.engines.aiortc_engine`, pure Python, always
installed). They interoperate: members of one channel may run either.

The ``webrtc`` setting chooses (:func:`create_engine`): ``"wrtc"`` or ``"aiortc"`` by
name, ``"auto"`` (the default) the one :data:`AUTO_PREFERENCE` names first that can run
here (:func:`wrtc_problem` says why wrtc cannot, if it cannot).
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Literal

from raftchat.net.engines.base import (
    CHANNEL_LABEL,
    ConnectionHandler,
    ConnectionSettings,
    Direction,
    Engine,
    EngineError,
    FrameFilter,
    FrameFilterHook,
    PeerConnection,
    SelectedPair,
)

logger = logging.getLogger(__name__)

EngineChoice = Literal["auto", "wrtc", "aiortc"]
ENGINE_CHOICES: tuple[EngineChoice, ...] = ("auto", "wrtc", "aiortc")
"""The values of the ``webrtc`` setting."""

AUTO_PREFERENCE: tuple[Literal["wrtc", "aiortc"], ...] = ("wrtc", "aiortc")
"""What ``auto`` picks, best first (see docs/performance.md for the evidence)."""


@functools.cache
def wrtc_problem() -> str | None:
    """Why the wrtc engine cannot run here, or None if it can.

    It can when the ``wrtc`` package imports (its native library loads on this
    platform) and is a version this engine was checked against. Nothing else is tried:
    a test connection would use up libwebrtc's one chance to allow loopback candidates
    (see ``wrtc_engine.prepare_for``)."""
    try:
        wrtc_engine = importlib.import_module("raftchat.net.engines.wrtc_engine")
    except ImportError as exc:
        return f"wrtc is not installed or does not load here ({exc}); pip install raftchat[wrtc]"
    version = wrtc_engine.wrtc_version()
    if version is None or not version.startswith(wrtc_engine.CHECKED_VERSIONS):
        return f"wrtc {version} is not a version this engine was checked with (0.1.x)"
    return None


def resolve_engine(choice: str = "auto") -> Literal["wrtc", "aiortc"]:
    """The engine ``choice`` stands for here. ValueError for an unknown choice or for
    ``"wrtc"`` where it cannot run (the message says why)."""
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"webrtc must be one of {', '.join(ENGINE_CHOICES)}, got {choice!r}")
    if choice == "aiortc":
        return "aiortc"
    problem = wrtc_problem()
    if choice == "wrtc":
        if problem is not None:
            raise ValueError(f"webrtc = wrtc: {problem}")
        return "wrtc"
    for name in AUTO_PREFERENCE:
        if name == "aiortc" or problem is None:
            return name
        logger.info("webrtc auto: not wrtc (%s)", problem)
    return "aiortc"


def create_engine(
    choice: str = "auto",
    *,
    udp_receive_buffer_bytes: int | None = None,
    sctp_max_flight_bytes: int | None = None,
) -> Engine:
    """A new engine for one mesh, as ``choice`` says (see :func:`resolve_engine`).

    The two byte counts are aiortc's tuning (``MeshConfig``'s fields of those names;
    None: the defaults); the wrtc engine needs none."""
    name = resolve_engine(choice)
    if name == "wrtc":
        from raftchat.net.engines.wrtc_engine import WrtcEngine

        return WrtcEngine()
    from raftchat.net.engines.aiortc_engine import AiortcEngine, AiortcTuning

    tuning = AiortcTuning()
    if udp_receive_buffer_bytes is not None:
        tuning = AiortcTuning(udp_receive_buffer_bytes, tuning.sctp_max_flight_bytes)
    if sctp_max_flight_bytes is not None:
        tuning = AiortcTuning(tuning.udp_receive_buffer_bytes, sctp_max_flight_bytes)
    return AiortcEngine(tuning)


def default_engine() -> Engine:
    """The engine a mesh uses unless it is given one or a choice: ``auto``."""
    return create_engine("auto")


__all__ = [
    "AUTO_PREFERENCE",
    "CHANNEL_LABEL",
    "ENGINE_CHOICES",
    "ConnectionHandler",
    "ConnectionSettings",
    "Direction",
    "Engine",
    "EngineChoice",
    "EngineError",
    "FrameFilter",
    "FrameFilterHook",
    "PeerConnection",
    "SelectedPair",
    "create_engine",
    "default_engine",
    "resolve_engine",
    "wrtc_problem",
]
