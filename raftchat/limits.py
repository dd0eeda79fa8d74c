"""Every naming and size rule of raftchat, defined once: nicks, chat text, channel names, node ids,
incarnations, and how strong a channel passphrase must be.

Each rule is a constant (or a few) and a ``*_problem(value)`` function that returns why a
value breaks the rule, or None if it is fine. The chat state machine applies these rules to
committed entries, and the node checks input against the *same* functions before proposing,
so anything a node accepts from its user is also applied by every member (a command accepted
as input but refused at apply time would stall its sender). Callers that talk to a person
(the node API, the settings file) wrap the reason in friendlier text; the decision is made here.

Rules that decide which committed entries are applied are part of the protocol: a limit may
grow in a new release, never shrink below what committed logs already contain.

This module imports nothing of raftchat, so every layer above the Raft core can use it.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MAX_NICK_CHARS = 32
"""Longest nick, in characters (code points)."""

NICK_DISAMBIGUATOR = "#"
"""Never part of a nick: it joins a nick to a node id prefix when two clients share a nick
(``ada`` and ``ada#3f2a``)."""

MAX_MESSAGE_CHARS = 4_000
"""Longest chat message text, in characters (code points)."""

MAX_CHANNEL_NAME_CHARS = 64

MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024
"""Largest snapshot a node takes in (and makes: it keeps its log instead of a bigger
one). The default history window of 10,000 messages of the longest kind is ~160 MiB."""
"""Longest channel name."""

CHANNEL_NAME_PATTERN = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_CHANNEL_NAME_CHARS - 1}}}")
"""A channel name in canonical (lower-case) form. It is a URL path segment on the signaling
server and a directory name in the data dir, so it has no dots, slashes or upper case."""

CHANNEL_NAME_RULE = (
    f"use 1-{MAX_CHANNEL_NAME_CHARS} characters a-z, 0-9, '_' or '-',"
    " starting with a letter or digit"
)
""":data:`CHANNEL_NAME_PATTERN` in words, for error messages."""

MAX_NODE_ID_CHARS = 64
"""Longest node id."""

_NODE_ID_CHARS = "A-Za-z0-9_-"
"""Node ids are url-safe: they travel in signaling frames, log entries and log lines."""

NODE_ID_PATTERN = re.compile(f"[{_NODE_ID_CHARS}]{{1,{MAX_NODE_ID_CHARS}}}")
"""A node id (also the client id of the chat entries that node proposes)."""

MIN_PEER_ID_CHARS = 16
"""Shortest node id the signaling server admits. Real node ids are random (a new data dir
gets 16 hex digits); short ones such as ``n1`` only appear in tests of the layers below."""

PEER_ID_PATTERN = re.compile(f"[{_NODE_ID_CHARS}]{{{MIN_PEER_ID_CHARS},{MAX_NODE_ID_CHARS}}}")
"""A node id as the signaling server accepts it: :data:`NODE_ID_PATTERN`, at least
:data:`MIN_PEER_ID_CHARS` long."""

_FORBIDDEN_TEXT_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (Unicode Cc) except tab and newline, and lone surrogates."""


def nick_problem(nick: object, max_chars: int = MAX_NICK_CHARS) -> str | None:
    """Why ``nick`` is not acceptable, or None if it is.

    A nick is printable text of 1 to ``max_chars`` characters without spaces and without
    :data:`NICK_DISAMBIGUATOR`.
    """
    if type(nick) is not str:
        return f"nick must be text, got {type(nick).__name__}"
    if not nick:
        return "nick must not be empty"
    if len(nick) > max_chars:
        return f"nick is {len(nick)} characters long; at most {max_chars} allowed"
    if NICK_DISAMBIGUATOR in nick:
        return f"nick must not contain {NICK_DISAMBIGUATOR!r}"
    if not nick.isprintable() or " " in nick:  # the only printable whitespace is " "
        return "nick must be printable, without spaces or control characters"
    return None


def text_problem(text: object, max_chars: int = MAX_MESSAGE_CHARS) -> str | None:
    """Why ``text`` is not acceptable as a chat message, or None if it is.

    Newlines and tabs are allowed; other control characters (which could drive a terminal)
    are not, nor is text that is empty or only whitespace.
    """
    if type(text) is not str:
        return f"text must be text, got {type(text).__name__}"
    if not text or text.isspace():  # what ``not text.strip()`` says, without a copy
        return "text must not be empty"
    if len(text) > max_chars:
        return f"text is {len(text)} characters long; at most {max_chars} allowed"
    bad = _FORBIDDEN_TEXT_CHARS.search(text)
    if bad:
        return f"text contains the control character U+{ord(bad.group()):04X}"
    return None


def channel_name_problem(name: object) -> str | None:
    """Why ``name`` is not a channel name in canonical form, or None if it is."""
    if isinstance(name, str) and CHANNEL_NAME_PATTERN.fullmatch(name):
        return None
    return f"invalid channel name {name!r}: {CHANNEL_NAME_RULE}"


def node_id_problem(node_id: object, what: str = "node id") -> str | None:
    """Why ``node_id`` is not a node id, or None if it is. ``what`` names it in the reason
    (the chat state machine checks node ids as "client id")."""
    if type(node_id) is not str or not node_id:
        return f"missing {what}"
    if len(node_id) > MAX_NODE_ID_CHARS:
        return f"{what} longer than {MAX_NODE_ID_CHARS} characters"
    if not NODE_ID_PATTERN.fullmatch(node_id):
        return f"{what} must use only the characters A-Z, a-z, 0-9, '_' and '-'"
    return None


MAX_INCARNATION = 2**63 - 1
"""Largest incarnation (a signed 64-bit integer, like every integer on the wire)."""


def incarnation_problem(incarnation: object) -> str | None:
    """Why ``incarnation`` is not a node's incarnation (which run of a member on its data
    dir a frame or a leave request comes from; :mod:`raftchat.node.incarnation`), or None.

    An incarnation is a positive integer of at most :data:`MAX_INCARNATION`."""
    if type(incarnation) is not int or not 1 <= incarnation <= MAX_INCARNATION:
        return f"incarnation must be a positive 64-bit integer, got {incarnation!r}"
    return None


MIN_PASSPHRASE_SCORE = 3
"""Weakest channel passphrase accepted, on zxcvbn's scale of 0 to 4: 3 means about 10^8
guesses or more. An attacker gets one online guess per handshake a member takes part in,
and members throttle those per peer and per address, so this is far out of reach; a
dictionary word, a name or a keyboard pattern is not."""

ZXCVBN_MAX_CHARS = 72
"""zxcvbn estimates at most this many characters; a longer passphrase is judged by its start."""

PASSPHRASE_ADVICE = (
    "use four or five random words (e.g. 'orbit lantern velvet cactus'), or a long sentence "
    "only you would write"
)


def passphrase_problem(passphrase: str, context: tuple[str, ...] = ()) -> str | None:
    """Why ``passphrase`` is too weak for a private channel, with advice, or None.

    The strength is zxcvbn's estimate (dictionary words, names, dates, keyboard patterns,
    l33t substitutions and repeats are cheap to guess); ``context`` holds words an attacker
    knows anyway (the channel name, the nick), which count as guessed.
    """
    from zxcvbn import zxcvbn

    result = zxcvbn(passphrase[:ZXCVBN_MAX_CHARS], user_inputs=list(context))
    if result["score"] >= MIN_PASSPHRASE_SCORE:
        return None
    feedback = result.get("feedback") or {}
    hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
    detail = " ".join(hint.rstrip(".") + "." for hint in hints if hint)
    guesses = result.get("guesses_log10", 0.0)
    return (
        f"the passphrase is too weak (guessed in about 10^{guesses:.0f} tries; at least "
        f"10^8 are needed). {detail + ' ' if detail else ''}To fix it, {PASSPHRASE_ADVICE}"
    )
