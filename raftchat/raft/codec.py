"""Wire codec: Raft messages to bytes and back (pure; ``net/`` only ever sees bytes).

A frame is one msgpack array ``[PROTOCOL_VERSION, type_tag, field values...]``; the tag is
the message type's position in ``MESSAGE_TYPES`` and the fields follow the dataclass order.
Nested values: an Entry is an array of its fields, an EntryKind is its integer value, and a
Configuration is, in the oldest format that can hold it (both are read, so configurations
stored in logs and snapshots stay readable):

- format 1, without witnesses: ``[sorted voters, sorted learners]``, followed by
  ``founded_ms, cluster_id`` when it names its cluster (logs written before clusters had
  an identity hold the pair alone);
- format 2, with witnesses: ``[2, sorted voters, sorted learners, sorted witnesses]``,
  followed by ``founded_ms, cluster_id`` in the same way.

Decoding trusts nothing: every field of every message is checked against its type hint
(integers in ``[0, 2**63)`` and never bools, node ids short printable ASCII, bounded text
and bytes, bounded entry and member counts, known entry kinds) and any failure, whatever
the input, is one :class:`CodecError` saying why. The checks are built once per message
type from the dataclass type hints, so fields or message types added to ``messages.py``
are covered without touching this file (a type hint the codec cannot check fails at
import). Changing the fields of an existing message changes the wire format: bump
``PROTOCOL_VERSION``.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import re
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from raftchat.raft.messages import (
    MESSAGE_TYPES,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    Message,
)

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 3
MAX_UINT63 = 2**63 - 1
"""Largest integer any field may hold (SQLite and other peers use signed 64-bit integers)."""


class CodecError(ValueError):
    """A frame or value that is not a valid message; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class CodecLimits:
    """Upper bounds on what a peer may send, so a bad frame cannot exhaust memory."""

    max_frame_bytes: int = 16 * 1024 * 1024
    """Largest frame accepted (the mesh reassembles DataChannel chunks up to this)."""
    max_entries: int = 16_384
    """Most log entries in one AppendEntries."""
    max_data_bytes: int = 8 * 1024 * 1024
    """Largest single bytes field (entry payload, snapshot chunk, proposal)."""
    max_id_length: int = 64
    """Longest node id (printable ASCII without spaces)."""
    max_text_length: int = 4096
    """Longest other string (client ids, error texts), in characters."""
    max_members: int = 1024
    """Most voters, and most learners, in one configuration."""

    def __post_init__(self) -> None:
        for limit in dataclasses.fields(self):
            value = getattr(self, limit.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"CodecLimits.{limit.name} must be a positive int, got {value!r}")


_per_thread = threading.local()


def packer() -> msgpack.Packer:
    """This thread's msgpack packer (``use_bin_type=True``), for frames and other data.

    ``msgpack.packb`` would build a new Packer for every call; ``pack()`` on this one
    returns the bytes and leaves it ready for the next value.
    """
    try:
        return _per_thread.packer
    except AttributeError:
        _per_thread.packer = msgpack.Packer(use_bin_type=True)
        return _per_thread.packer


class _Invalid(Exception):
    """Raised by field checkers; decode adds the field path and turns it into CodecError."""


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


class _NodeIdHint:
    """Stands in for the ``NodeId`` alias while reading type hints (it is plain ``str``)."""


Checker = Callable[[Any], Any]
"""Takes a decoded msgpack value, returns the Python value for the field or raises _Invalid."""


# --- field checkers ------------------------------------------------------------------------


def _int_checker() -> Checker:
    def check(value: Any) -> int:
        if type(value) is not int or not 0 <= value <= MAX_UINT63:
            raise _Invalid(f"expected an integer in [0, 2**63), got {_describe(value)}")
        return value

    return check


def _bool_checker() -> Checker:
    def check(value: Any) -> bool:
        if type(value) is not bool:
            raise _Invalid(f"expected a bool, got {_describe(value)}")
        return value

    return check


def _bytes_checker(limits: CodecLimits) -> Checker:
    max_bytes = limits.max_data_bytes

    def check(value: Any) -> bytes:
        if type(value) is not bytes:
            raise _Invalid(f"expected bytes, got {_describe(value)}")
        if len(value) > max_bytes:
            raise _Invalid(f"{len(value)} bytes is more than the limit of {max_bytes}")
        return value

    return check


def _text_checker(limits: CodecLimits) -> Checker:
    max_length = limits.max_text_length

    def check(value: Any) -> str:
        if type(value) is not str:
            raise _Invalid(f"expected a string, got {_describe(value)}")
        if len(value) > max_length:
            raise _Invalid(f"{len(value)} characters is more than the limit of {max_length}")
        return value

    return check


def _node_id_checker(limits: CodecLimits, *, allow_empty: bool = True) -> Checker:
    shortest = 0 if allow_empty else 1
    pattern = re.compile(f"[!-~]{{{shortest},{limits.max_id_length}}}")

    def check(value: Any) -> str:
        if type(value) is not str or not pattern.fullmatch(value):
            raise _Invalid(
                f"expected a node id ({'' if allow_empty else 'non-empty, '}at most"
                f" {limits.max_id_length} printable ASCII characters), got {_describe(value)}"
            )
        return value

    return check


def _entry_kind_checker() -> Checker:
    kinds = {kind.value: kind for kind in EntryKind}

    def check(value: Any) -> EntryKind:
        if type(value) is not int or value not in kinds:
            raise _Invalid(f"expected an entry kind {sorted(kinds)}, got {_describe(value)}")
        return kinds[value]

    return check


def _optional_checker(inner: Checker) -> Checker:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _members_checker(limits: CodecLimits) -> Checker:
    node_id = _node_id_checker(limits, allow_empty=False)
    max_members = limits.max_members

    def check(value: Any) -> frozenset[str]:
        if type(value) is not list:
            raise _Invalid(f"expected a list of node ids, got {_describe(value)}")
        if len(value) > max_members:
            raise _Invalid(f"{len(value)} members is more than the limit of {max_members}")
        members = frozenset(node_id(member) for member in value)
        if len(members) != len(value):
            raise _Invalid("a node id appears twice")
        return members

    return check


CONFIGURATION_FORMAT = 2
"""The configuration encoding written when there are witnesses (see the module docstring)."""
_CONFIGURATION_FORMS = (
    "[voters, learners(, founded_ms, cluster_id)] or"
    f" [{CONFIGURATION_FORMAT}, voters, learners, witnesses(, founded_ms, cluster_id)]"
)


def _configuration_checker(limits: CodecLimits) -> Checker:
    members = _members_checker(limits)
    cluster_id = _node_id_checker(limits, allow_empty=False)
    founded_ms = _int_checker()

    def member_set(value: Any, what: str) -> frozenset[str]:
        try:
            return members(value)
        except _Invalid as exc:
            raise _Invalid(f"{what}: {exc}") from None

    def check(value: Any) -> Configuration:
        if type(value) is not list or not value:
            raise _Invalid(f"expected {_CONFIGURATION_FORMS}, got {_describe(value)}")
        if type(value[0]) is list:  # format 1
            if len(value) not in (2, 4):
                raise _Invalid(f"expected {_CONFIGURATION_FORMS}, got {_describe(value)}")
            witnesses: frozenset[str] = frozenset()
            sets, identity = value[:2], value[2:]
        elif type(value[0]) is int and value[0] == CONFIGURATION_FORMAT:
            if len(value) not in (4, 6):
                raise _Invalid(f"expected {_CONFIGURATION_FORMS}, got {_describe(value)}")
            witnesses = member_set(value[3], "witnesses")
            sets, identity = value[1:3], value[4:]
        else:
            raise _Invalid(
                f"unknown configuration format {_describe(value[0])}:"
                f" expected {_CONFIGURATION_FORMS}"
            )
        cluster = None
        if identity:
            try:
                cluster = ClusterIdentity(founded_ms(identity[0]), cluster_id(identity[1]))
            except _Invalid as exc:
                raise _Invalid(f"cluster: {exc}") from None
        voters = member_set(sets[0], "voters")
        learners = member_set(sets[1], "learners")
        if voters & learners:
            raise _Invalid(f"{sorted(voters & learners)[0]!r} is both a voter and a learner")
        if not witnesses <= voters:
            raise _Invalid(f"witness {sorted(witnesses - voters)[0]!r} is not a voter")
        return Configuration(voters, learners, cluster, witnesses)

    return check


def _encode_configuration_value(configuration: Configuration) -> list[Any]:
    voters, learners = sorted(configuration.voters), sorted(configuration.learners)
    value: list[Any]
    if configuration.witnesses:
        value = [CONFIGURATION_FORMAT, voters, learners, sorted(configuration.witnesses)]
    else:
        value = [voters, learners]
    cluster = configuration.cluster
    if cluster is not None:
        value += [cluster.founded_ms, cluster.cluster_id]
    return value


# --- per-type specs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    check: Checker
    """Full check with a precise error; used as is for complex fields, and to explain failures."""
    to_wire: Callable[[Any], Any] | None = None
    """Converts the Python value for msgpack (None: msgpack packs it as it is)."""
    fast_test: str | None = None
    """Inline Python condition for simple fields, ``{v}`` the value, ``{c}`` the constant."""
    fast_value: str = "{v}"
    """Inline Python expression giving the field's value once ``fast_test`` passed."""
    constant: Any = None


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, localns={"NodeId": _NodeIdHint})


def _field_spec(
    name: str, hint: Any, limits: CodecLimits, entry_codec: _EntryCodec | None
) -> _FieldSpec:
    """Build the checker and wire conversion for one field from its type hint."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        arguments = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(arguments) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"field {name!r}: only 'X | None' unions are supported, got {hint}")
        inner = _field_spec(name, arguments[0], limits, entry_codec)
        to_wire = inner.to_wire
        optional_to_wire = None
        if to_wire is not None:

            def optional_to_wire(value: Any) -> Any:
                return None if value is None else to_wire(value)

        optional_check = _optional_checker(inner.check)
        return _FieldSpec(name, optional_check, optional_to_wire, None, "{c}({v})", optional_check)
    if hint is bool:
        return _FieldSpec(name, _bool_checker(), fast_test="type({v}) is bool")
    if hint is int:
        return _FieldSpec(
            name, _int_checker(), fast_test="type({v}) is int and 0 <= {v} <= MAX_UINT63"
        )
    if hint is bytes:
        return _FieldSpec(
            name,
            _bytes_checker(limits),
            fast_test="type({v}) is bytes and len({v}) <= {c}",
            constant=limits.max_data_bytes,
        )
    if hint is _NodeIdHint:
        check = _node_id_checker(limits, allow_empty=name != "sender")
        return _FieldSpec(name, check, fast_test="{c}({v})", constant=_succeeds(check))
    if hint is str:
        return _FieldSpec(
            name,
            _text_checker(limits),
            fast_test="type({v}) is str and len({v}) <= {c}",
            constant=limits.max_text_length,
        )
    if hint is EntryKind:
        # msgpack packs an IntEnum as a plain int, so no wire conversion is needed.
        return _FieldSpec(
            name,
            _entry_kind_checker(),
            fast_test="type({v}) is int and {v} in {c}",
            fast_value="{c}[{v}]",
            constant={kind.value: kind for kind in EntryKind},
        )
    if hint is Configuration:
        check = _configuration_checker(limits)
        return _FieldSpec(name, check, _encode_configuration_value, None, "{c}({v})", check)
    if origin is tuple and typing.get_args(hint) == (Entry, ...) and entry_codec is not None:
        return _FieldSpec(
            name,
            entry_codec.check_list,
            entry_codec.to_wire_list,
            None,
            "{c}({v})",
            entry_codec.check_list,
        )
    raise TypeError(f"field {name!r}: the codec cannot check type {hint!r}")


def _succeeds(check: Checker) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        try:
            check(value)
        except _Invalid:
            return False
        return True

    return test


def _explain(specs: tuple[_FieldSpec, ...], values: Any, where: str = "") -> typing.NoReturn:
    """Raise _Invalid naming the first field of ``values`` that fails its full check."""
    if type(values) is not list or len(values) != len(specs):
        prefix = f"{where.rstrip('.')}: " if where else ""
        raise _Invalid(f"{prefix}expected an array of {len(specs)} fields, got {_describe(values)}")
    for spec, value in zip(specs, values):  # noqa: B905 (lengths checked)
        try:
            spec.check(value)
        except _Invalid as exc:
            raise _Invalid(f"{where}{spec.name}: {exc}") from None
    raise _Invalid(f"{where}invalid fields")  # unreachable while fast and full checks agree


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable, ...] | None:
    """The slot setters of ``cls``'s fields, if setting them all is what its ``__init__`` does.

    That holds for a slots dataclass whose fields are all ``__init__`` parameters and that
    has no ``__post_init__``. Setting the slots directly skips the frozen dataclass's
    ``object.__setattr__`` per field, about half the cost of building an Entry.
    """
    fields = dataclasses.fields(cls)
    if "__post_init__" in vars(cls) or any(not f.init for f in fields):
        return None
    if tuple(f.name for f in fields) != names:
        return None
    setters = []
    for name in names:
        slot = vars(cls).get(name)
        if not isinstance(slot, types.MemberDescriptorType):
            return None
        setters.append(slot.__set__)
    return tuple(setters)


def _compile_builder(cls: type, specs: tuple[_FieldSpec, ...], *, many: bool) -> Callable:
    """Generate a checking constructor for ``cls`` from its field specs.

    The checks for simple fields are inlined into one condition, which is what makes
    decoding hundreds of entries per message cheap; the precise error comes from the full
    checkers only when that condition fails. With ``many`` the function takes a list of
    records and returns a tuple of ``cls``; otherwise one record and returns one ``cls``.
    """
    namespace: dict[str, Any] = {
        "CLS": cls,
        "MAX_UINT63": MAX_UINT63,
        "_Invalid": _Invalid,
        "explain": _explain,
        "SPECS": specs,
    }
    variables, tests, arguments = [], [], []
    for position, spec in enumerate(specs):
        variable, constant = f"f{position}", f"c{position}"
        namespace[constant] = spec.constant
        variables.append(variable)
        if spec.fast_test is not None:
            tests.append("(" + spec.fast_test.format(v=variable, c=constant) + ")")
        arguments.append(spec.fast_value.format(v=variable, c=constant))
    unpack = ", ".join(variables) + ("," if len(variables) == 1 else "")
    condition = " and ".join(tests) or "True"
    setters = _slot_setters(cls, tuple(spec.name for spec in specs))
    if setters is None:
        build = f"obj = CLS({', '.join(arguments)})"
    else:
        namespace["NEW"] = object.__new__
        namespace.update((f"s{position}", setter) for position, setter in enumerate(setters))
        build = "; ".join(
            ["obj = NEW(CLS)"] + [f"s{i}(obj, {argument})" for i, argument in enumerate(arguments)]
        )
    if many:
        source = f"""
def build_many(records):
    result = []
    append = result.append
    for position, record in enumerate(records):
        if type(record) is list and len(record) == {len(specs)}:
            {unpack} = record
            if {condition}:
                try:
                    {build}
                    append(obj)
                    continue
                except _Invalid:
                    pass
        explain(SPECS, record, f"[{{position}}].")
    return tuple(result)
"""
    else:
        source = f"""
def build_one(record):
    {unpack} = record
    if {condition}:
        try:
            {build}
            return obj
        except _Invalid:
            pass
    explain(SPECS, record)
"""
    exec(compile(source, f"<codec builder for {cls.__name__}>", "exec"), namespace)
    return namespace["build_many" if many else "build_one"]


class _EntryCodec:
    """Entries go as arrays of their fields, checked by one generated loop."""

    def __init__(self, limits: CodecLimits) -> None:
        hints = _type_hints(Entry)
        self.names = tuple(f.name for f in dataclasses.fields(Entry))
        self.specs = tuple(_field_spec(name, hints[name], limits, None) for name in self.names)
        self.max_entries = limits.max_entries
        self._build_many = _compile_builder(Entry, self.specs, many=True)
        self._get_values = operator.attrgetter(*self.names)
        self._converters = tuple(
            (position, spec.to_wire)
            for position, spec in enumerate(self.specs)
            if spec.to_wire is not None
        )

    def to_wire_list(self, entries: tuple[Entry, ...]) -> list[Any]:
        get_values = self._get_values
        if not self._converters:
            return [get_values(entry) for entry in entries]
        wire = []
        for entry in entries:
            values = list(get_values(entry))
            for position, to_wire in self._converters:
                values[position] = to_wire(values[position])
            wire.append(values)
        return wire

    def check_list(self, value: Any) -> tuple[Entry, ...]:
        if type(value) is not list:
            raise _Invalid(f"expected a list of entries, got {_describe(value)}")
        if len(value) > self.max_entries:
            raise _Invalid(f"{len(value)} entries is more than the limit of {self.max_entries}")
        return self._build_many(value)


class _MessageSpec:
    def __init__(self, tag: int, cls: type, limits: CodecLimits, entries: _EntryCodec) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} in MESSAGE_TYPES is not a dataclass")
        hints = _type_hints(cls)
        self.tag = tag
        self.cls = cls
        self.fields = tuple(
            _field_spec(f.name, hints[f.name], limits, entries) for f in dataclasses.fields(cls)
        )
        self.names = tuple(spec.name for spec in self.fields)
        self.wire_converters = tuple(
            (position, spec.to_wire)
            for position, spec in enumerate(self.fields)
            if spec.to_wire is not None
        )
        self.has_entries = "entries" in self.names and "prev_log_index" in self.names
        self.build = _compile_builder(cls, self.fields, many=False)


def _check_append_entries(message: Any) -> None:
    """Entries must continue the log right after prev_log_index, in term order."""
    expected_index = message.prev_log_index + 1
    previous_term = message.prev_log_term
    for entry in message.entries:
        if entry.index != expected_index:
            raise CodecError(
                f"{type(message).__name__}: entry index {entry.index} should be {expected_index}"
                " (entries must follow prev_log_index contiguously)"
            )
        if not previous_term <= entry.term <= message.term:
            raise CodecError(
                f"{type(message).__name__}: entry {entry.index} has term {entry.term}, outside"
                f" [{previous_term}, {message.term}] (the previous entry's and the leader's term)"
            )
        expected_index += 1
        previous_term = entry.term


# --- the codec ----------------------------------------------------------------------------


class Codec:
    """Encodes and decodes messages under one set of limits; build once, reuse."""

    def __init__(
        self,
        limits: CodecLimits | None = None,
        message_types: tuple[type, ...] = MESSAGE_TYPES,
    ) -> None:
        self.limits = limits or CodecLimits()
        entries = _EntryCodec(self.limits)
        self._specs = tuple(
            _MessageSpec(tag, cls, self.limits, entries) for tag, cls in enumerate(message_types)
        )
        self._spec_by_type = {spec.cls: spec for spec in self._specs}
        self.message_types = tuple(message_types)
        """The message types, each at the position that is its wire tag."""
        self._configuration = _configuration_checker(self.limits)
        longest_string = max(self.limits.max_text_length * 4, self.limits.max_id_length)
        self._unpack_options = {
            "raw": False,
            "strict_map_key": True,
            "use_list": True,
            "max_str_len": longest_string,
            "max_bin_len": self.limits.max_data_bytes,
            "max_array_len": max(
                self.limits.max_entries,
                self.limits.max_members,
                2 + max(len(spec.fields) for spec in self._specs),
            ),
            "max_map_len": 0,
            "max_ext_len": 0,
        }

    def encode(self, message: Message) -> bytes:
        """The frame for ``message``; raises CodecError if a peer would have to reject it."""
        spec = self._spec_by_type.get(type(message))
        if spec is None:
            raise CodecError(f"cannot encode {type(message).__name__}: not a known message type")
        values = [getattr(message, name) for name in spec.names]
        for position, to_wire in spec.wire_converters:
            values[position] = to_wire(values[position])
        frame = packer().pack([PROTOCOL_VERSION, spec.tag, *values])
        if len(frame) > self.limits.max_frame_bytes:
            raise CodecError(
                f"{type(message).__name__} encodes to {len(frame)} bytes, more than the frame"
                f" limit of {self.limits.max_frame_bytes}; send fewer entries per message"
            )
        return frame

    def decode(self, frame: bytes | bytearray | memoryview) -> Message:
        """The message in ``frame``, fully validated; CodecError for anything else."""
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise CodecError(f"a frame must be bytes, got {type(frame).__name__}")
        if len(frame) > self.limits.max_frame_bytes:
            raise CodecError(
                f"frame of {len(frame)} bytes is over the limit of {self.limits.max_frame_bytes}"
            )
        try:
            wire = msgpack.unpackb(frame, **self._unpack_options)
        except Exception as exc:  # msgpack raises several types for malformed input
            raise CodecError(f"not a valid msgpack frame: {type(exc).__name__}: {exc}") from None
        return self._from_wire(wire)

    def _from_wire(self, wire: Any) -> Message:
        if type(wire) is not list or len(wire) < 2:
            raise CodecError("a frame must be an array [version, type tag, fields...]")
        version, tag = wire[0], wire[1]
        if version != PROTOCOL_VERSION or type(version) is not int:
            raise CodecError(
                f"unsupported protocol version {_describe(version)} (this node speaks"
                f" {PROTOCOL_VERSION}); every member must run a compatible raftchat"
            )
        if type(tag) is not int or not 0 <= tag < len(self._specs):
            raise CodecError(f"unknown message type tag {_describe(tag)}")
        spec = self._specs[tag]
        cls_name = spec.cls.__name__
        if len(wire) - 2 != len(spec.fields):
            raise CodecError(
                f"{cls_name} needs {len(spec.fields)} fields, the frame has {len(wire) - 2}"
            )
        try:
            message = spec.build(wire[2:])
        except _Invalid as exc:
            raise CodecError(f"{cls_name}.{exc}") from None
        if spec.has_entries:
            _check_append_entries(message)
        return message

    def encode_configuration(self, configuration: Configuration) -> bytes:
        return packer().pack(_encode_configuration_value(configuration))

    def decode_configuration(self, data: bytes) -> Configuration:
        try:
            wire = msgpack.unpackb(data, **self._unpack_options)
        except Exception as exc:
            raise CodecError(f"not a valid configuration: {type(exc).__name__}: {exc}") from None
        try:
            return self._configuration(wire)
        except _Invalid as exc:
            raise CodecError(f"configuration: {exc}") from None


DEFAULT_CODEC = Codec()


def encode(message: Message) -> bytes:
    """Encode with the default limits."""
    return DEFAULT_CODEC.encode(message)


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """Decode with the default limits; raises CodecError for any malformed frame."""
    return DEFAULT_CODEC.decode(frame)


def encode_configuration(configuration: Configuration) -> bytes:
    """Bytes for a configuration (CONFIG entries' data, snapshot metadata on disk)."""
    return DEFAULT_CODEC.encode_configuration(configuration)


def decode_configuration(data: bytes) -> Configuration:
    """The configuration in ``data``, validated like any wire field; CodecError otherwise."""
    return DEFAULT_CODEC.decode_configuration(data)
