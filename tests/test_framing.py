"""Frame format: batches, chunks, ping/pong, reassembly bounds, garbage input."""

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftchat.net import framing
from raftchat.net.framing import (
    Batch,
    Chunk,
    FramingError,
    Ping,
    Pong,
    Reassembler,
    decode_frame,
    encode_batch,
    encode_chunks,
    encode_ping,
    encode_pong,
    fits_in_batch,
    pop_batch,
)

messages_strategy = st.lists(st.binary(max_size=300), min_size=1, max_size=40)


def frames_for(messages: list[bytes], max_frame: int, max_messages: int = 4096) -> list[bytes]:
    """What a link sends for ``messages``: batches, and chunks for the big ones."""
    queue = deque(messages)
    frames = []
    message_id = 0
    while queue:
        if fits_in_batch(queue[0], max_frame):
            frames.append(encode_batch(pop_batch(queue, max_frame, max_messages)))
        else:
            frames.extend(encode_chunks(message_id, queue.popleft(), max_frame))
            message_id += 1
    return frames


def receive(frames: list[bytes], max_message_bytes: int = 1 << 20) -> list[bytes]:
    reassembler = Reassembler(max_message_bytes)
    out = []
    for raw in frames:
        frame = decode_frame(raw)
        if isinstance(frame, Batch):
            out.extend(frame.messages)
        else:
            assert isinstance(frame, Chunk)
            message = reassembler.feed(frame)
            if message is not None:
                out.append(message)
    return out


@given(
    messages=messages_strategy,
    max_frame=st.integers(framing.MIN_FRAME_BYTES, 400),
    max_messages=st.integers(1, 50),
)
@settings(max_examples=300)
def test_round_trip_preserves_messages_and_order(messages, max_frame, max_messages):
    frames = frames_for(messages, max_frame, max_messages)
    assert all(len(frame) <= max_frame for frame in frames)
    assert receive(frames) == messages


def test_small_messages_share_one_frame():
    messages = [bytes([i]) * 100 for i in range(50)]
    frames = frames_for(messages, 64 * 1024)
    assert len(frames) == 1
    assert decode_frame(frames[0]) == Batch(messages)


def test_large_message_is_chunked_and_reassembled():
    message = bytes(range(256)) * 4096  # 1 MiB
    frames = encode_chunks(7, message, 64 * 1024)
    assert len(frames) == 17
    assert all(len(frame) <= 64 * 1024 for frame in frames)
    assert receive(frames) == [message]


def test_ping_and_pong_round_trip():
    assert decode_frame(encode_ping(12345)) == Ping(12345)
    assert decode_frame(encode_pong(2**64 - 1)) == Pong(2**64 - 1)


@given(garbage=st.binary(max_size=200))
@settings(max_examples=500)
def test_garbage_raises_only_framing_error(garbage):
    reassembler = Reassembler(1000)
    try:
        frame = decode_frame(garbage)
        if isinstance(frame, Chunk):
            reassembler.feed(frame)
    except FramingError:
        pass


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "shorter than its header"),
        (b"\x02\x01", "unsupported frame version"),
        (b"\x01\x09", "unknown frame kind"),
        (b"\x01\x01", "carries no message"),
        (b"\x01\x01\x00\x00\x00\x05abc", "overruns the frame"),
        (b"\x01\x01\x00\x00", "inside a record length"),
        (b"\x01\x03\x00", "ping/pong frame"),
        (b"\x01\x02" + b"\x00" * 12, "carries no data"),
        (b"\x01\x02" + b"\x00" * 4 + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01abc", "overruns"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(frame, reason):
    with pytest.raises(FramingError, match=reason):
        decode_frame(frame)


def test_text_frame_is_rejected():
    with pytest.raises(FramingError):
        decode_frame("text")  # type: ignore[arg-type]


def test_reassembly_refuses_messages_above_the_limit():
    frames = encode_chunks(1, b"x" * 5000, 1000)
    reassembler = Reassembler(max_message_bytes=4000)
    with pytest.raises(FramingError, match="exceeds the limit"):
        reassembler.feed(decode_frame(frames[0]))
    assert reassembler.pending_bytes == 0


def test_reassembly_rejects_a_gap_and_recovers():
    first = encode_chunks(1, b"a" * 3000, 1000)
    second = encode_chunks(2, b"b" * 1500, 1000)
    reassembler = Reassembler(10_000)
    assert reassembler.feed(decode_frame(first[0])) is None
    with pytest.raises(FramingError, match="does not continue"):
        reassembler.feed(decode_frame(first[2]))
    assert reassembler.pending_bytes == 0
    assert reassembler.feed(decode_frame(second[0])) is None
    assert reassembler.feed(decode_frame(second[1])) == b"b" * 1500


def test_new_message_interrupting_a_partial_one_is_counted():
    first = encode_chunks(1, b"a" * 3000, 1000)
    second = encode_chunks(2, b"b" * 1500, 1000)
    reassembler = Reassembler(10_000)
    reassembler.feed(decode_frame(first[0]))
    assert reassembler.feed(decode_frame(second[0])) is None
    assert reassembler.feed(decode_frame(second[1])) == b"b" * 1500
    assert reassembler.interrupted_messages == 1


def test_pop_batch_respects_frame_size_and_order():
    queue = deque([b"x" * 40, b"y" * 40, b"z" * 40])
    batch = pop_batch(queue, framing.HEADER_BYTES + 2 * (framing.RECORD_OVERHEAD + 40), 10)
    assert batch == [b"x" * 40, b"y" * 40]
    assert list(queue) == [b"z" * 40]


def test_pop_batch_respects_message_count():
    queue = deque([b"a", b"b", b"c"])
    assert pop_batch(queue, 1000, max_messages=2) == [b"a", b"b"]
    assert pop_batch(queue, 1000, max_messages=1) == [b"c"]


def test_encoders_reject_invalid_arguments():
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_chunks(1, b"", 1000)
    with pytest.raises(ValueError):
        encode_chunks(1, b"abc", framing.MIN_FRAME_BYTES - 1)


def test_auth_frame_round_trip_and_bounds():
    payload = b"\x01\x01\x00"
    assert decode_frame(framing.encode_auth(payload)) == framing.Auth(payload)
    with pytest.raises(ValueError):
        framing.encode_auth(b"")
    with pytest.raises(ValueError):
        framing.encode_auth(b"x" * (framing.MAX_AUTH_PAYLOAD_BYTES + 1))
    header = bytes([framing.FRAME_VERSION, framing.FrameKind.AUTH])
    with pytest.raises(FramingError, match="auth frame"):
        decode_frame(header)
    with pytest.raises(FramingError, match="auth frame"):
        decode_frame(header + b"x" * (framing.MAX_AUTH_PAYLOAD_BYTES + 1))
