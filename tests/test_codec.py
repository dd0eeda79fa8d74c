"""Wire codec: every message type round-trips, and anything malformed is one CodecError."""

from __future__ import annotations

import dataclasses
import string
import typing
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftchat.raft.codec import (
    MAX_UINT63,
    PROTOCOL_VERSION,
    Codec,
    CodecError,
    CodecLimits,
    _NodeIdHint,
    _type_hints,
    decode,
    decode_configuration,
    encode,
    encode_configuration,
)
from raftchat.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    NodeId,
    RequestVote,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_TYPE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies built from the dataclass type hints ---------------------------------------

node_id_chars = st.sampled_from([chr(c) for c in range(0x21, 0x7F)])
node_ids = st.text(node_id_chars, min_size=1, max_size=64)
integers = st.one_of(st.integers(0, 1000), st.integers(0, MAX_UINT63))


cluster_ids = st.text(st.sampled_from("0123456789abcdef"), min_size=1, max_size=32)


@st.composite
def configurations(draw: st.DrawFn) -> Configuration:
    voters = draw(st.frozensets(node_ids, max_size=6))
    learners = draw(st.frozensets(node_ids, max_size=4)) - voters
    witnesses = draw(st.frozensets(st.sampled_from(sorted(voters)), max_size=2)) if voters else ()
    cluster = draw(st.none() | st.builds(ClusterIdentity, integers, cluster_ids))
    return Configuration(voters, learners, cluster, frozenset(witnesses))


def field_strategy(name: str, hint: Any) -> st.SearchStrategy:
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return st.none() | field_strategy(name, inner)
    simple = {
        bool: st.booleans(),
        int: integers,
        bytes: st.binary(max_size=200),
        str: st.text(max_size=40),
        EntryKind: st.sampled_from(EntryKind),
        Configuration: configurations(),
    }
    if hint in simple:
        return simple[hint]
    if hint is _NodeIdHint:
        return node_ids if name == "sender" else st.just("") | node_ids
    if typing.get_origin(hint) is tuple:
        return st.just(())  # entries are drawn by messages(), which keeps them consistent
    raise AssertionError(f"no strategy for {name}: {hint}")


@st.composite
def messages(draw: st.DrawFn, cls: type) -> Any:
    hints = _type_hints(cls)
    values = {
        f.name: draw(field_strategy(f.name, hints[f.name]), label=f.name)
        for f in dataclasses.fields(cls)
    }
    if "entries" in values and "prev_log_index" in values:
        # entries must continue the log after prev_log_index, terms within [prev, leader]
        term = draw(integers)
        prev_term = draw(st.integers(0, term))
        prev_index = draw(st.integers(0, MAX_UINT63 - 100))
        count = draw(st.integers(0, 12))
        terms = sorted(draw(st.lists(st.integers(prev_term, term), min_size=count, max_size=count)))
        entries = tuple(
            Entry(
                index=prev_index + 1 + position,
                term=entry_term,
                kind=draw(st.sampled_from(EntryKind)),
                data=draw(st.binary(max_size=100)),
                client_id=draw(st.text(max_size=20)),
                serial=draw(integers),
            )
            for position, entry_term in enumerate(terms)
        )
        values.update(
            term=term, prev_log_term=prev_term, prev_log_index=prev_index, entries=entries
        )
    return cls(**values)


any_message = st.sampled_from(MESSAGE_TYPES).flatmap(messages)


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@PER_TYPE
@given(data=st.data())
def test_every_message_type_round_trips(cls: type, data: st.DataObject) -> None:
    message = data.draw(messages(cls))
    frame = encode(message)
    decoded = decode(frame)
    assert decoded == message
    assert hash(decoded) == hash(message)  # built like the dataclass __init__ builds it
    assert [hash(entry) for entry in getattr(decoded, "entries", ())] == [
        hash(entry) for entry in getattr(message, "entries", ())
    ]
    wire = msgpack.unpackb(frame)
    assert wire[:2] == [PROTOCOL_VERSION, MESSAGE_TYPES.index(cls)]
    assert len(wire) == 2 + len(dataclasses.fields(cls))


def test_append_entries_frame_layout() -> None:
    message = AppendEntries(
        "leader",
        3,
        4,
        2,
        (Entry(5, 3, EntryKind.CONFIG, b"c", "cl", 9),),
        4,
        heartbeat_seq=7,
    )
    assert msgpack.unpackb(encode(message)) == [
        PROTOCOL_VERSION,
        MESSAGE_TYPES.index(AppendEntries),
        "leader",
        3,
        4,
        2,
        [[5, 3, 2, b"c", "cl", 9]],
        4,
        7,
    ]


@given(configurations())
def test_configuration_helpers_round_trip(configuration: Configuration) -> None:
    assert decode_configuration(encode_configuration(configuration)) == configuration


def test_new_message_types_and_fields_are_handled_from_type_hints() -> None:
    @dataclass(frozen=True, slots=True)
    class Gossip:
        sender: NodeId
        term: int
        about: NodeId | None
        weight: int | None = None
        note: str = ""
        configuration: Configuration = dataclasses.field(default_factory=Configuration)

    codec = Codec(message_types=(*MESSAGE_TYPES, Gossip))
    message = Gossip("a", 1, None, 5, "hi", Configuration(frozenset({"a"})))
    assert codec.decode(codec.encode(message)) == message
    bad = msgpack.packb(
        [PROTOCOL_VERSION, len(MESSAGE_TYPES), "a", 1, "has space", None, "", [[], []]]
    )
    with pytest.raises(CodecError, match=r"Gossip\.about: expected a node id"):
        codec.decode(bad)


def test_unsupported_field_type_fails_when_the_codec_is_built() -> None:
    @dataclass(frozen=True)
    class Weird:
        sender: NodeId
        ratio: float

    with pytest.raises(TypeError, match="cannot check type"):
        Codec(message_types=(Weird,))


# --- rejections ---------------------------------------------------------------------------


def vote_wire(**changes: Any) -> list[Any]:
    wire = [PROTOCOL_VERSION, MESSAGE_TYPES.index(RequestVote), "node-a", 5, 10, 4, False, False]
    names = [f.name for f in dataclasses.fields(RequestVote)]
    for name, value in changes.items():
        wire[2 + names.index(name)] = value
    return wire


def append_wire(entries: list[list[Any]], term: int = 5, prev_index: int = 10) -> list[Any]:
    return [
        PROTOCOL_VERSION,
        MESSAGE_TYPES.index(AppendEntries),
        "l",
        term,
        prev_index,
        2,
        entries,
        0,
        0,
    ]


def entry_wire(index: int, term: int = 3, **changes: Any) -> list[Any]:
    wire = {"index": index, "term": term, "kind": 0, "data": b"x", "client_id": "c", "serial": 1}
    wire.update(changes)
    return list(wire.values())


def snapshot_wire(configuration: Any) -> list[Any]:
    tag = MESSAGE_TYPES.index(InstallSnapshot)
    return [PROTOCOL_VERSION, tag, "l", 5, 10, 4, configuration, 0, b"", True]


def packed(wire: Any) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


REJECTED = {
    "empty frame": (b"", "not a valid msgpack frame"),
    "truncated frame": (packed(vote_wire())[:-1], "not a valid msgpack frame"),
    "trailing bytes": (packed(vote_wire()) + b"\x00", "not a valid msgpack frame"),
    "reserved byte": (b"\xc1", "not a valid msgpack frame"),
    "not an array": (packed(17), "must be an array"),
    "too short": (packed([PROTOCOL_VERSION]), "must be an array"),
    "a map": (packed({"type": 0}), "not a valid msgpack frame"),
    "unknown version": (packed([PROTOCOL_VERSION + 1, *vote_wire()[1:]]), "protocol version"),
    "bool version": (packed([True, *vote_wire()[1:]]), "protocol version"),
    "unknown tag": (packed([PROTOCOL_VERSION, len(MESSAGE_TYPES), "a", 1]), "type tag"),
    "negative tag": (packed([PROTOCOL_VERSION, -1, "a", 1]), "type tag"),
    "bool tag": (packed([PROTOCOL_VERSION, False, *vote_wire()[2:]]), "type tag"),
    "too few fields": (packed(vote_wire()[:-1]), "needs 6 fields, the frame has 5"),
    "too many fields": (packed([*vote_wire(), 0]), "needs 6 fields, the frame has 7"),
    "bool for int": (packed(vote_wire(term=True)), r"RequestVote\.term: expected an integer"),
    "negative term": (packed(vote_wire(term=-1)), r"RequestVote\.term"),
    "huge index": (packed(vote_wire(last_log_index=2**63)), r"RequestVote\.last_log_index"),
    "float index": (packed(vote_wire(last_log_index=1.0)), r"RequestVote\.last_log_index"),
    "int for bool": (packed(vote_wire(pre_vote=1)), r"RequestVote\.pre_vote: expected a bool"),
    "bytes for id": (packed(vote_wire(sender=b"node")), r"RequestVote\.sender"),
    "empty sender": (packed(vote_wire(sender="")), r"RequestVote\.sender"),
    "long id": (packed(vote_wire(sender="n" * 65)), r"RequestVote\.sender"),
    "id with space": (packed(vote_wire(sender="a b")), r"RequestVote\.sender"),
    "non-ASCII id": (packed(vote_wire(sender="nödé")), r"RequestVote\.sender"),
    "control char id": (packed(vote_wire(sender="a\x00")), r"RequestVote\.sender"),
    "entries not a list": (packed(append_wire("nope")), r"entries: expected a list"),
    "entry wrong arity": (packed(append_wire([[11, 3, 0]])), r"entries: \[0\]: expected an array"),
    "entry bad kind": (packed(append_wire([entry_wire(11, kind=9)])), r"\[0\]\.kind"),
    "entry bool kind": (packed(append_wire([entry_wire(11, kind=True)])), r"\[0\]\.kind"),
    "entry str data": (packed(append_wire([entry_wire(11, data="x")])), r"\[0\]\.data"),
    "entry int client": (packed(append_wire([entry_wire(11, client_id=3)])), r"\[0\]\.client_id"),
    "entry bool serial": (
        packed(append_wire([entry_wire(11), entry_wire(12, serial=False)])),
        r"\[1\]\.serial",
    ),
    "entry gap": (packed(append_wire([entry_wire(11), entry_wire(13)])), "should be 12"),
    "entry not after prev": (packed(append_wire([entry_wire(12)])), "should be 11"),
    "entry term above leader": (packed(append_wire([entry_wire(11, term=6)])), "outside"),
    "entry term below prev": (packed(append_wire([entry_wire(11, term=1)])), "outside"),
    "entry terms decreasing": (
        packed(append_wire([entry_wire(11, term=4), entry_wire(12, term=3)])),
        "outside",
    ),
    "config not a pair": (packed(snapshot_wire([["a"]])), r"configuration: expected \[voters"),
    "config overlap": (packed(snapshot_wire([["a"], ["a"]])), "both a voter and a learner"),
    "config duplicate": (packed(snapshot_wire([["a", "a"], []])), "appears twice"),
    "config empty id": (packed(snapshot_wire([[""], []])), r"voters: expected a node id"),
    "config bad id type": (packed(snapshot_wire([[], [7]])), r"learners: expected a node id"),
    "config witness not a voter": (
        packed(snapshot_wire([2, ["a"], ["b"], ["b"]])),
        "witness 'b' is not a voter",
    ),
    "config unknown format": (packed(snapshot_wire([3, ["a"], [], []])), r"expected \[voters"),
    "config bool format": (packed(snapshot_wire([True, ["a"], [], []])), r"expected \[voters"),
    "config float format": (packed(snapshot_wire([2.0, ["a"], [], []])), "unknown configuration"),
    "config bad witness": (packed(snapshot_wire([2, ["a"], [], [""]])), r"witnesses: expected"),
    "deep nesting": (b"\x91" * 100_000 + b"\xc0", "not a valid msgpack frame"),
    "huge declared array": (b"\xdd\xff\xff\xff\xff", "not a valid msgpack frame"),
    "huge declared bytes": (b"\xc6\xff\xff\xff\xff", "not a valid msgpack frame"),
    "timestamp ext": (packed([PROTOCOL_VERSION, 0, msgpack.Timestamp(1)]), "not a valid msgpack"),
}


@pytest.mark.parametrize(("frame", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_malformed_frames_are_rejected_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        decode(frame)


def test_invalid_utf8_string_is_rejected() -> None:
    frame = packed(vote_wire(sender="ab")).replace(b"\xa2ab", b"\xa2\xff\xfe")
    with pytest.raises(CodecError, match="not a valid msgpack frame"):
        decode(frame)


@pytest.mark.parametrize("frame", ["text", None, 12, [1, 0]])
def test_non_bytes_input_is_rejected(frame: Any) -> None:
    with pytest.raises(CodecError, match="must be bytes"):
        decode(frame)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    message = AppendEntriesResponse("b", 1, True, 3)
    frame = encode(message)
    assert decode(bytearray(frame)) == message
    assert decode(memoryview(frame)) == message


SMALL = CodecLimits(
    max_frame_bytes=4096,
    max_entries=3,
    max_data_bytes=16,
    max_id_length=8,
    max_text_length=10,
    max_members=2,
)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (append_wire([entry_wire(i) for i in range(11, 15)]), "4 entries is more than"),
        (append_wire([entry_wire(11, data=b"x" * 17)]), r"17 exceeds max_bin_len\(16\)"),
        (append_wire([entry_wire(11, client_id="c" * 11)]), "11 characters is more than"),
        (vote_wire(sender="n" * 9), "at most 8"),
        (snapshot_wire([["a", "b", "c"], []]), "3 members is more than"),
    ],
)
def test_limits_are_enforced(wire: list[Any], reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        Codec(SMALL).decode(packed(wire))


def test_oversized_frames_are_refused_both_ways() -> None:
    codec = Codec(SMALL)
    with pytest.raises(CodecError, match="over the limit of 4096"):
        codec.decode(b"\x00" * 4097)
    # a string longer than any field allows is refused before it is allocated
    with pytest.raises(CodecError, match="not a valid msgpack frame"):
        codec.decode(packed(vote_wire(sender="x" * 100)))
    entries = tuple(Entry(i, 1, data=b"y" * 16) for i in range(1, 4))
    big = AppendEntries("leader", 1, 0, 0, entries * 1, 0)
    assert codec.decode(codec.encode(big)) == big
    huge = AppendEntries(
        "leader", 1, 0, 0, tuple(Entry(i, 1, data=b"y" * 2000) for i in (1, 2, 3)), 0
    )
    with pytest.raises(CodecError, match="frame limit of 4096"):
        codec.encode(huge)


def test_encode_refuses_unknown_objects() -> None:
    with pytest.raises(CodecError, match="not a known message type"):
        encode(Entry(1, 1))  # type: ignore[arg-type]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_entries must be a positive int"):
        CodecLimits(max_entries=0)


def test_a_configuration_without_witnesses_keeps_the_format_written_before_them() -> None:
    """Configurations in logs and snapshots stored before witnesses existed read as they
    were, and one without a witness is still written the old way."""
    stored = packed([["a", "b"], ["c"]])
    configuration = Configuration(frozenset({"a", "b"}), frozenset({"c"}))
    assert decode_configuration(stored) == configuration
    assert encode_configuration(configuration) == stored


def test_a_configuration_with_witnesses_is_written_in_format_2() -> None:
    voters, learners, witnesses = frozenset({"a", "b", "w"}), frozenset({"c"}), frozenset({"w"})
    configuration = Configuration(voters, learners, witnesses=witnesses)
    data = encode_configuration(configuration)
    assert msgpack.unpackb(data) == [2, ["a", "b", "w"], ["c"], ["w"]]
    assert decode_configuration(data) == configuration
    named = Configuration(voters, learners, ClusterIdentity(1700, "c0ffee"), witnesses)
    named_data = encode_configuration(named)
    assert msgpack.unpackb(named_data) == [2, ["a", "b", "w"], ["c"], ["w"], 1700, "c0ffee"]
    assert decode_configuration(named_data) == named
    snapshot = InstallSnapshot("a", 3, 10, 2, configuration, 0, b"", True)
    assert decode(encode(snapshot)) == snapshot


def test_a_witness_must_be_a_voter() -> None:
    with pytest.raises(ValueError, match="witnesses must be voters"):
        Configuration(frozenset({"a"}), witnesses=frozenset({"w"}))


def test_configuration_helpers_reject_garbage() -> None:
    for data in (b"", b"\xc1", packed([["a"], ["a"]]), packed(["a", []]), packed([[], [], []])):
        with pytest.raises(CodecError):
            decode_configuration(data)


# --- fuzzing ------------------------------------------------------------------------------


def assert_decodes_or_rejects(frame: bytes) -> None:
    """Either a message that re-encodes to the same message, or CodecError; nothing else."""
    try:
        message = decode(frame)
    except CodecError:
        return
    assert type(message) in MESSAGE_TYPES
    assert decode(encode(message)) == message


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=80)
    | st.binary(max_size=80)
    | st.text(string.printable, max_size=8),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=40,
)


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(frame: bytes) -> None:
    assert_decodes_or_rejects(frame)


@FUZZ
@given(
    st.integers(0, 2), st.integers(-1, len(MESSAGE_TYPES)), st.lists(msgpack_values, max_size=12)
)
def test_fuzz_arbitrary_structures(version: int, tag: int, fields: list[Any]) -> None:
    assert_decodes_or_rejects(packed([version, tag, *fields]))
    assert_decodes_or_rejects(packed(fields))


@FUZZ
@given(any_message, st.data())
def test_fuzz_mutated_valid_frames(message: Any, data: st.DataObject) -> None:
    frame = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(frame) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            frame[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "delete":
            del frame[position]
        elif action == "insert":
            frame.insert(position, data.draw(st.integers(0, 255)))
        else:
            del frame[position:]
        if not frame:
            break
    assert_decodes_or_rejects(bytes(frame))


@FUZZ
@given(any_message, st.data())
def test_fuzz_structurally_mutated_frames(message: Any, data: st.DataObject) -> None:
    """Replace one value anywhere in a valid frame's structure with an arbitrary one."""
    wire = msgpack.unpackb(encode(message))
    containers = [wire]
    stack = [wire]
    while stack:
        for item in stack.pop():
            if isinstance(item, list) and item:
                containers.append(item)
                stack.append(item)
    target = data.draw(st.sampled_from(containers))
    target[data.draw(st.integers(0, len(target) - 1))] = data.draw(msgpack_values)
    assert_decodes_or_rejects(packed(wire))
