"""Links as the node sees them, for unit tests that hand a node link changes: the states
the mesh reports, and a stand-in mesh that records the frames the node sends."""

from __future__ import annotations

from collections.abc import Iterable

from raftchat.net import LinkInfo, LinkState
from raftchat.node.cluster import NODE_CODEC

_COUNTERS = (
    "messages_sent",
    "messages_received",
    "bytes_sent",
    "bytes_received",
    "frames_sent",
    "frames_received",
    "malformed_frames",
    "dropped_overflow",
    "dropped_by_fault",
    "queued_messages",
    "queued_bytes",
    "buffered_amount",
)


def link_info(peer: str, state: LinkState = LinkState.OPEN, connects: int = 1) -> LinkInfo:
    """The link to ``peer`` in ``state`` after ``connects`` connections, counters at zero."""
    return LinkInfo(
        peer,
        state,
        None,
        **dict.fromkeys(_COUNTERS, 0),
        max_frame_bytes=None,
        connects=connects,
        local_candidate_type=None,
        remote_candidate_type=None,
    )


class FrameRecorder:
    """Stands in for the mesh: records what the node sends, decoded with the node's codec."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        self.sent.append((to, NODE_CODEC.decode(data)))
        return True

    def set_peers(self, peers: Iterable[str]) -> None:
        pass

    def kinds(self) -> list[type]:
        return [type(message) for _, message in self.sent]
