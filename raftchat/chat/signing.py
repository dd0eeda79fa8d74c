"""Signed chat: a command's author signs what it says, and every node checks on apply.

A node's id is derived from its Ed25519 public key (:mod:`raftchat.net.identity`), so a
command can carry its author's key and signature and any node can check both without
knowing anyone in advance: the key must give the entry's client id, and the signature
must cover what the command says. The leader relays commands but cannot forge one, and
a member can only speak as itself. A message merged from another cluster of the channel
keeps its author's signature, which is what lets another member carry it.

What is signed, for ``ChatMessage``, ``NickChange`` and ``Leave``: the domain
:data:`COMMAND_DOMAIN`, the channel, the author's id, the serial, and the msgpack of the
command's tag and content fields (everything but the signature), each length-prefixed.
``prev_serial`` is left out: it only orders one author's commands, and a leader could
reorder or drop them anyway.

Ids that are not derived from a key (32 hex digits) belong to data written before nodes
had keys: their commands carry no signature and apply as they always did. An id of the
derived form must sign; its unsigned or badly signed commands apply as no-ops.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Protocol

from raftchat.net.identity import (
    NODE_ID_HEX_DIGITS,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    is_id_of,
    length_prefixed,
    verify,
)
from raftchat.raft.codec import packer

COMMAND_DOMAIN = b"raftchat-chat-command-v1"
_DERIVED_ID = re.compile(f"[0-9a-f]{{{NODE_ID_HEX_DIGITS}}}")


class Signature(NamedTuple):
    """An author's public key and its signature over a command."""

    public_key: bytes
    signature: bytes


class Signer(Protocol):
    """What signs a node's own commands (:class:`raftchat.net.identity.NodeIdentity`)."""

    node_id: str
    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


KNOWN_AUTHORS = 1024
"""(channel, author) and (author, key) pairs whose derived parts are kept: a channel has
a few authors, each checked on every entry they wrote."""

_SERIAL_PART = (8).to_bytes(4, "big")
"""The length prefix of the serial (8 bytes)."""


def signs(client_id: str) -> bool:
    """Whether commands of ``client_id`` must be signed: its id is derived from a key."""
    return _DERIVED_ID.fullmatch(client_id) is not None


def signed_bytes(channel: str, author: str, serial: int, tag: int, fields: list) -> bytes:
    """The bytes an author signs for a command (see the module docstring):
    ``length_prefixed(COMMAND_DOMAIN, channel, author, serial (8 bytes), msgpack of [tag,
    *fields])``, with the parts that stay the same for an author made once."""
    content = packer().pack([tag, *fields])
    return b"".join(
        (
            _signed_prefix(channel, author),
            _SERIAL_PART,
            serial.to_bytes(8, "big"),
            len(content).to_bytes(4, "big"),
            content,
        )
    )


@functools.lru_cache(maxsize=KNOWN_AUTHORS)
def _signed_prefix(channel: str, author: str) -> bytes:
    return length_prefixed(COMMAND_DOMAIN, channel.encode(), author.encode())


@functools.lru_cache(maxsize=KNOWN_AUTHORS)
def _is_key_of(author: str, public_key: bytes) -> bool:
    """:func:`~raftchat.net.identity.is_id_of`, remembered (a SHA-256 per entry saved)."""
    return is_id_of(author, public_key)


def sign(signer: Signer, channel: str, serial: int, tag: int, fields: list) -> Signature:
    message = signed_bytes(channel, signer.node_id, serial, tag, fields)
    return Signature(signer.public_key, signer.sign(message))


def signature_problem(
    channel: str,
    author: str,
    serial: int,
    tag: int,
    fields: list,
    signature: Signature | None,
) -> str | None:
    """Why the command is not ``author``'s to apply, or None if it is."""
    if signature is None:
        return f"unsigned, but {author} signs its commands" if signs(author) else None
    if not signs(author):
        return f"signed, but {author} is no id derived from a key"
    if not _is_key_of(author, signature.public_key):
        return f"signed with a key that is not {author}'s"
    if not verify(
        signature.public_key,
        signed_bytes(channel, author, serial, tag, fields),
        signature.signature,
    ):
        return f"the signature does not match what {author} is said to have written"
    return None


def signature_field_problem(value: object) -> str | None:
    """Why ``value`` (from the wire) is no ``[public_key, signature]`` pair, or None."""
    if value is None:
        return None
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not bytes
        or type(value[1]) is not bytes
        or len(value[0]) != PUBLIC_KEY_BYTES
        or len(value[1]) != SIGNATURE_BYTES
    ):
        return (
            f"a signature is [public key ({PUBLIC_KEY_BYTES} bytes),"
            f" signature ({SIGNATURE_BYTES} bytes)] or nil"
        )
    return None
