"""DataChannel frame format: batches of small messages, chunks of large ones, ping/pong.

One DataChannel message is one *frame*. A frame starts with a two-byte header
(format version, frame kind):

- ``BATCH``: one or more application messages, each a 4-byte big-endian length
  followed by that many bytes. Sending a burst of small messages as one frame
  avoids aiortc's per-message cost (about 6,300 small messages/s per channel).
- ``CHUNK``: part of a message too large for one frame: message id, total
  length and offset (4 bytes each), then the part. The channel is reliable and
  ordered, so the parts of one message arrive consecutively and in order;
  anything else is a malformed stream.
- ``PING`` / ``PONG``: an 8-byte nonce, used by the mesh to measure RTT.
- ``AUTH``: one channel-authentication handshake message (``net/auth.py``), at most
  ``MAX_AUTH_PAYLOAD_BYTES`` long. Only these may cross before the handshake is done.

Everything here is pure (no I/O, no clock). Decoding never trusts its input:
any inconsistency raises :class:`FramingError`, which the receive path counts
and drops.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

FRAME_VERSION = 1

_HEADER = struct.Struct("!BB")
_RECORD_LENGTH = struct.Struct("!I")
_CHUNK_HEADER = struct.Struct("!III")
_NONCE = struct.Struct("!Q")

HEADER_BYTES = _HEADER.size
RECORD_OVERHEAD = _RECORD_LENGTH.size
CHUNK_OVERHEAD = HEADER_BYTES + _CHUNK_HEADER.size
MIN_FRAME_BYTES = CHUNK_OVERHEAD + 1
MAX_LENGTH_FIELD = 0xFFFFFFFF
MAX_AUTH_PAYLOAD_BYTES = 256
"""Handshake messages are tiny; a larger AUTH frame is malformed."""


class FrameKind(enum.IntEnum):
    BATCH = 1
    CHUNK = 2
    PING = 3
    PONG = 4
    AUTH = 5


class FramingError(ValueError):
    """A frame or chunk stream that does not follow the format; the frame is dropped."""


@dataclass(frozen=True, slots=True)
class Batch:
    messages: list[bytes]


@dataclass(frozen=True, slots=True)
class Chunk:
    message_id: int
    total_length: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Auth:
    payload: bytes


Frame = Batch | Chunk | Ping | Pong | Auth


def _header(kind: FrameKind) -> bytes:
    return _HEADER.pack(FRAME_VERSION, kind)


def record_size(message: bytes) -> int:
    """Bytes one message takes inside a batch frame."""
    return RECORD_OVERHEAD + len(message)


def fits_in_batch(message: bytes, max_frame_bytes: int) -> bool:
    """Whether ``message`` can travel in a batch frame, or must be chunked."""
    return HEADER_BYTES + record_size(message) <= max_frame_bytes


def encode_batch(messages: Sequence[bytes]) -> bytes:
    """One BATCH frame carrying ``messages`` in order (at least one)."""
    if not messages:
        raise ValueError("a batch frame needs at least one message")
    parts = [_header(FrameKind.BATCH)]
    for message in messages:
        parts.append(_RECORD_LENGTH.pack(len(message)))
        parts.append(message)
    return b"".join(parts)


def encode_chunks(message_id: int, message: bytes, max_frame_bytes: int) -> list[bytes]:
    """CHUNK frames, each at most ``max_frame_bytes`` long, that carry ``message``."""
    if max_frame_bytes < MIN_FRAME_BYTES:
        raise ValueError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")
    if not message:
        raise ValueError("an empty message is sent in a batch frame, not chunked")
    if len(message) > MAX_LENGTH_FIELD:
        raise ValueError(f"message of {len(message)} bytes is too large to chunk")
    message_id &= MAX_LENGTH_FIELD
    part_bytes = max_frame_bytes - CHUNK_OVERHEAD
    header = _header(FrameKind.CHUNK)
    view = memoryview(message)
    return [
        header
        + _CHUNK_HEADER.pack(message_id, len(message), offset)
        + view[offset : offset + part_bytes]
        for offset in range(0, len(message), part_bytes)
    ]


def encode_ping(nonce: int) -> bytes:
    return _header(FrameKind.PING) + _NONCE.pack(nonce & 0xFFFFFFFFFFFFFFFF)


def encode_pong(nonce: int) -> bytes:
    return _header(FrameKind.PONG) + _NONCE.pack(nonce & 0xFFFFFFFFFFFFFFFF)


def encode_auth(payload: bytes) -> bytes:
    if not 0 < len(payload) <= MAX_AUTH_PAYLOAD_BYTES:
        raise ValueError(f"auth payload must be 1-{MAX_AUTH_PAYLOAD_BYTES} bytes")
    return _header(FrameKind.AUTH) + payload


def pop_batch(queue: deque[bytes], max_frame_bytes: int, max_messages: int) -> list[bytes]:
    """Take up to ``max_messages`` from the front of ``queue`` that fit in one batch frame.

    The first message must fit (see :func:`fits_in_batch`); order is preserved.
    """
    batch: list[bytes] = []
    size = HEADER_BYTES
    while queue and len(batch) < max_messages and size + record_size(queue[0]) <= max_frame_bytes:
        message = queue.popleft()
        size += record_size(message)
        batch.append(message)
    return batch


def decode_frame(frame: bytes) -> Frame:
    """Parse one frame; raise :class:`FramingError` for anything malformed."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FramingError(f"frame must be bytes, got {type(frame).__name__}")
    if len(frame) < HEADER_BYTES:
        raise FramingError(f"frame of {len(frame)} bytes is shorter than its header")
    version, kind = _HEADER.unpack_from(frame)
    if version != FRAME_VERSION:
        raise FramingError(f"unsupported frame version {version}")
    if kind == FrameKind.BATCH:
        return Batch(_decode_records(frame))
    if kind == FrameKind.CHUNK:
        return _decode_chunk(frame)
    if kind in (FrameKind.PING, FrameKind.PONG):
        if len(frame) != HEADER_BYTES + _NONCE.size:
            raise FramingError(f"ping/pong frame has {len(frame)} bytes")
        (nonce,) = _NONCE.unpack_from(frame, HEADER_BYTES)
        return Ping(nonce) if kind == FrameKind.PING else Pong(nonce)
    if kind == FrameKind.AUTH:
        if not 0 < len(frame) - HEADER_BYTES <= MAX_AUTH_PAYLOAD_BYTES:
            raise FramingError(f"auth frame of {len(frame)} bytes")
        return Auth(bytes(frame[HEADER_BYTES:]))
    raise FramingError(f"unknown frame kind {kind}")


def _decode_records(frame: bytes) -> list[bytes]:
    messages = []
    position = HEADER_BYTES
    end = len(frame)
    view = memoryview(frame)
    while position < end:
        if end - position < RECORD_OVERHEAD:
            raise FramingError("batch frame ends inside a record length")
        (length,) = _RECORD_LENGTH.unpack_from(frame, position)
        position += RECORD_OVERHEAD
        if length > end - position:
            raise FramingError(f"batch record of {length} bytes overruns the frame")
        messages.append(bytes(view[position : position + length]))
        position += length
    if not messages:
        raise FramingError("batch frame carries no message")
    return messages


def _decode_chunk(frame: bytes) -> Chunk:
    if len(frame) < MIN_FRAME_BYTES:
        raise FramingError(f"chunk frame of {len(frame)} bytes carries no data")
    message_id, total_length, offset = _CHUNK_HEADER.unpack_from(frame, HEADER_BYTES)
    data = bytes(frame[CHUNK_OVERHEAD:])
    if offset + len(data) > total_length:
        raise FramingError(
            f"chunk at offset {offset} with {len(data)} bytes overruns its "
            f"message of {total_length} bytes"
        )
    return Chunk(message_id, total_length, offset, data)


class Reassembler:
    """Joins the CHUNK frames of one link back into messages.

    Memory is bounded: at most one message is being reassembled per link (the
    channel is ordered), and no message may exceed ``max_message_bytes``.
    A chunk that does not continue the partial message discards it and raises
    :class:`FramingError`; a new message starting early (its first chunk) only
    discards the partial one, counted in :attr:`interrupted_messages`.
    """

    def __init__(self, max_message_bytes: int) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self._message_id: int | None = None
        self._total_length = 0
        self._buffer = bytearray()
        self.interrupted_messages = 0
        """Partial messages discarded because a new message started before they ended."""

    @property
    def pending_bytes(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._buffer)

    def reset(self) -> None:
        self._message_id = None
        self._total_length = 0
        self._buffer = bytearray()

    def feed(self, chunk: Chunk) -> bytes | None:
        """Add one chunk; return the whole message once its last chunk arrived."""
        if chunk.total_length > self.max_message_bytes:
            self.reset()
            raise FramingError(
                f"chunked message of {chunk.total_length} bytes exceeds the limit of "
                f"{self.max_message_bytes} bytes"
            )
        if chunk.offset == 0:
            if self._message_id is not None:
                self.interrupted_messages += 1
            self.reset()
            self._message_id = chunk.message_id
            self._total_length = chunk.total_length
        elif (
            chunk.message_id != self._message_id
            or chunk.total_length != self._total_length
            or chunk.offset != len(self._buffer)
        ):
            self.reset()
            raise FramingError(
                f"chunk of message {chunk.message_id} at offset {chunk.offset} does not "
                "continue the message being reassembled"
            )
        self._buffer.extend(chunk.data)
        if len(self._buffer) < self._total_length:
            return None
        message = bytes(self._buffer)
        self.reset()
        return message
