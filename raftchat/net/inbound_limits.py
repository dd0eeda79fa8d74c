"""What one peer may send a link: frame and message rates, and the offences forgiven.

Frames beyond ``inbound_frames_per_second`` (or messages beyond
``inbound_messages_per_second``) are dropped. Every dropped frame (over the rate,
malformed, out of turn) is an *offence*; a few are forgiven over time, but a peer that
keeps offending is disconnected by its link (see ``MeshConfig.max_offences``).
Time is passed in, so this is pure.
"""

from __future__ import annotations

from raftchat.net.mesh_config import MeshConfig
from raftchat.net.rate_limit import TokenBucket


class InboundLimits:
    """The inbound rate limits of one link."""

    def __init__(self, config: MeshConfig, now: float) -> None:
        self._frames = TokenBucket(
            config.inbound_frames_per_second, config.inbound_frame_burst, now
        )
        self._messages = TokenBucket(
            config.inbound_messages_per_second, config.inbound_message_burst, now
        )
        self._offences = TokenBucket(config.offences_forgiven_per_second, config.max_offences, now)
        self.rate_limited_frames = 0
        "Frames dropped because the peer sent faster than the limits allow."

    def admit_frame(self, now: float) -> bool:
        """Whether one more frame is within the frame rate (False: drop it, counted)."""
        if self._frames.take(now):
            return True
        self.rate_limited_frames += 1
        return False

    def admit_messages(self, now: float, count: int) -> bool:
        """Whether a frame of ``count`` messages is within the message rate (False: drop
        the whole frame, counted)."""
        if self._messages.take(now, count):
            return True
        self.rate_limited_frames += 1
        return False

    def forgive_offence(self, now: float) -> bool:
        """Count one offence; False once the peer has more than are forgiven."""
        return self._offences.take(now)
