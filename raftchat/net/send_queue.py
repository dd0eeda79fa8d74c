"""A link's send queue: two lanes, batching and chunking into frames, backpressure.

Messages wait here until the link's DataChannel can take them. The queue has two
lanes. *Urgent* messages (small control messages: heartbeats, votes, responses) go out
before anything in the normal lane and regardless of the send-buffer high-water mark, so
they never wait behind a backlog of bulk data in this queue; each lane keeps its own
order, but an urgent message may overtake normal ones.

Small messages travel together in batch frames (each DataChannel message has a high
fixed cost); a message too large for one frame is chunked (``net/framing.py``). Normal
frames are handed over only while the channel's buffered amount is below the high-water
mark; the link asks for more when it falls to the low-water mark. The queue is bounded
in messages and bytes: beyond, the newest message is refused.

Pure, like the framing: no I/O and no clock; the link sends the frames it is given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from raftchat.net import framing


class SendQueue:
    """The messages a link has accepted and not yet turned into frames."""

    def __init__(
        self,
        *,
        max_messages: int,
        max_bytes: int,
        max_messages_per_frame: int,
        high_water_bytes: int,
    ) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._max_messages_per_frame = max_messages_per_frame
        self._high_water_bytes = high_water_bytes
        self._normal: deque[bytes] = deque()
        self._urgent: deque[bytes] = deque()
        "Messages that go out before the normal lane (each fits in one batch frame)."
        self._chunk_frames: deque[bytes] = deque()
        "The remaining frames of the message being chunked."
        self._next_message_id = 0
        self.queued_bytes = 0
        "Bytes of the messages in both lanes."
        self.messages_sent = 0
        "Messages turned into frames."
        self.bytes_sent = 0
        "Payload bytes of those messages."
        self.dropped_overflow = 0
        "Messages refused because the queue was full."

    @property
    def queued_messages(self) -> int:
        return len(self._normal) + len(self._urgent)

    def push(self, message: bytes, urgent: bool, max_frame_bytes: int) -> bool:
        """Queue ``message``; False (and counted) if the queue is full.

        An urgent message too large for one frame of ``max_frame_bytes`` is queued as a
        normal one (a chunked message cannot jump the queue).
        """
        if (
            self.queued_messages >= self._max_messages
            or self.queued_bytes + len(message) > self._max_bytes
        ):
            # Raft tolerates lost messages, and what is already queued is older and
            # usually needed first, so the newest message is the one refused.
            self.dropped_overflow += 1
            return False
        if urgent and framing.fits_in_batch(message, max_frame_bytes):
            self._urgent.append(bytes(message))
        else:
            self._normal.append(bytes(message))
        self.queued_bytes += len(message)
        return True

    def frames(self, max_frame_bytes: int, buffered_amount: Callable[[], int]) -> Iterator[bytes]:
        """The frames to send now, in order: every urgent message, then normal ones while
        ``buffered_amount()`` (read after each frame is sent) is below the high-water mark.

        A frame is taken off the queue when it is yielded; stop iterating at any point.
        """
        while self._urgent:
            frame = self._next_urgent_frame(max_frame_bytes)
            if frame is None:
                break
            yield frame
        while buffered_amount() < self._high_water_bytes:
            if self._chunk_frames:
                yield self._chunk_frames.popleft()
            elif self._normal:
                yield self._next_frame(max_frame_bytes)
            else:
                return

    def clear(self) -> None:
        """Drop everything queued (the connection went down)."""
        self._normal.clear()
        self._urgent.clear()
        self._chunk_frames.clear()
        self.queued_bytes = 0

    def _next_urgent_frame(self, max_frame_bytes: int) -> bytes | None:
        """A batch frame of urgent messages; None if the first one does not fit in a frame
        on this connection (then it joins the front of the normal lane)."""
        urgent = self._urgent
        if not framing.fits_in_batch(urgent[0], max_frame_bytes):
            self._normal.appendleft(urgent.popleft())
            return None
        batch = framing.pop_batch(urgent, max_frame_bytes, self._max_messages_per_frame)
        self._count_sent(batch)
        return framing.encode_batch(batch)

    def _next_frame(self, max_frame_bytes: int) -> bytes:
        """The next frame of the normal lane: a batch of small messages, or a chunked one."""
        if framing.fits_in_batch(self._normal[0], max_frame_bytes):
            batch = framing.pop_batch(self._normal, max_frame_bytes, self._max_messages_per_frame)
            self._count_sent(batch)
            return framing.encode_batch(batch)
        message = self._normal.popleft()
        self._count_sent([message])
        frames = framing.encode_chunks(self._next_message_id, message, max_frame_bytes)
        self._next_message_id += 1
        self._chunk_frames.extend(frames[1:])
        return frames[0]

    def _count_sent(self, messages: list[bytes]) -> None:
        size = sum(len(message) for message in messages)
        self.queued_bytes -= size
        self.messages_sent += len(messages)
        self.bytes_sent += size
