"""Every naming and size rule of raftchat, defined once: nicks, chat text, message times,
channel names, node ids, incarnations, and how strong a channel passphrase must be.

Each rule is a constant (or a few) and a ``*_problem(value)`` function that returns why a
value breaks the rule, or None if it is fine. The chat state machine applies these rules to
committed entries, and the node checks input against the *same* functions before proposing,
so anything a node accepts from its user is also applied by every member (a command accepted
as input but refused at apply time would stall its sender). Callers that talk to a person
(the node API, the settings file) wrap the reason in friendlier text; the decision is made here.

Rules that decide which committed entries are applied are part of the protocol: a limit may
grow in a new release, never shrink below what committed logs already contain. The two
exceptions, a message time outside :data:`MIN_MESSAGE_MS`..:data:`MAX_MESSAGE_MS` and an
invisible character in a nick, were refused once they were found to let one member crash or
fool everyone's display; a snapshot written before still loads (the ``stored_*`` rules of
:mod:`raftchat.chat.rules`), and every front end shows what it holds without harm.

This module imports nothing of raftchat, so every layer above the Raft core can use it.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata

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

MIN_MESSAGE_MS = 946_684_800_000
"""Earliest message time: 2000-01-01 00:00 UTC, in Unix milliseconds. raftchat did not exist
before; a sender whose clock says otherwise sends this instead (:func:`clamp_message_ms`)."""

MAX_MESSAGE_MS = 7_258_118_400_000
"""Latest message time: 2200-01-01 00:00 UTC, in Unix milliseconds. Far beyond any sender's
true clock, and well inside what every platform's date functions convert (year 9999, and
the 64-bit ``time_t`` of every system raftchat runs on): a message time is shown as a date,
and one beyond what a date can hold once crashed every member's chat view."""

_FORBIDDEN_TEXT_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (Unicode Cc) except tab and newline, and lone surrogates."""


_DEFAULT_IGNORABLE = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
"""Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties.txt, stable since
Unicode 6.3), as a regex class: a renderer that has no glyph for one shows nothing at all.
Among them the fillers (U+115F, U+1160, U+3164, U+FFA0), zero-width space, joiners and
non-joiner (U+200B..U+200D), word joiner (U+2060), BOM (U+FEFF), Mongolian vowel separator
(U+180E), combining grapheme joiner (U+034F), soft hyphen, the bidi controls, tags and the
variation selectors."""

_VARIATION_SELECTORS = frozenset(
    [*range(0x180B, 0x180E), 0x180F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)
"""Unicode's Variation_Selector characters: they choose a glyph for the character before them
(VS16 turns ``\u2764`` into a red heart emoji), so a nick may hold one right after a
character that is not itself invisible."""

_BLANK_LOOKALIKES = "\u2800\U0001d159"
"""Characters that draw as nothing although Unicode does not call them ignorable: BRAILLE
PATTERN BLANK and MUSICAL SYMBOL NULL NOTEHEAD. (The spaces, U+2000..U+200A, U+3000 and
the like, are not printable and so refused anyway.)"""

_INVISIBLE_NICK_CHARS = re.compile(f"[{_DEFAULT_IGNORABLE}{_BLANK_LOOKALIKES}]")


def _invisible_positions(nick: str) -> list[int]:
    """Where ``nick`` has a character the nick rule refuses as invisible: anything in
    :data:`_INVISIBLE_NICK_CHARS` except a variation selector right after a character that
    is not invisible."""
    if nick.isascii():
        return []
    positions = []
    for match in _INVISIBLE_NICK_CHARS.finditer(nick):
        at = match.start()
        if (
            ord(nick[at]) in _VARIATION_SELECTORS
            and at > 0
            and not _INVISIBLE_NICK_CHARS.match(nick[at - 1])
        ):
            continue
        positions.append(at)
    return positions


def char_name(char: str) -> str:
    """``U+3164 (HANGUL FILLER)``: a character named for a person who cannot see it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def replace_invisible(nick: str, replacement: str) -> str:
    """``nick`` with every character :func:`nick_problem` refuses as invisible replaced by
    ``replacement`` (``""`` drops them). For nicks committed before that rule."""
    positions = _invisible_positions(nick)
    if not positions:
        return nick
    chars = list(nick)
    for at in positions:
        chars[at] = replacement
    return "".join(chars)


def stored_nick_problem(nick: object, max_chars: int = MAX_NICK_CHARS) -> str | None:
    """Why ``nick`` could not have been committed by any release, or None: the nick rule
    without its refusal of invisible characters, which came later. What a snapshot (and
    so a history shown to people) may still hold; :func:`nick_problem` is the rule for
    new entries."""
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


def nick_problem(nick: object, max_chars: int = MAX_NICK_CHARS) -> str | None:
    """Why ``nick`` is not acceptable, or None if it is.

    A nick is printable text of 1 to ``max_chars`` characters without spaces, without
    :data:`NICK_DISAMBIGUATOR` and without invisible characters: fillers, zero-width and
    other default-ignorable characters (a variation selector only right after a visible
    character) and blank-looking symbols. Invisible characters would let a nick look like
    another one, or like nothing at all.
    """
    if type(nick) is str and len(nick) <= max_chars and (positions := _invisible_positions(nick)):
        return f"nick must not contain the invisible character {char_name(nick[positions[0]])}"
    return stored_nick_problem(nick, max_chars)


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


def message_time_problem(ts: object) -> str | None:
    """Why ``ts`` (a message's time, Unix milliseconds) is not acceptable, or None: it must
    be an integer from :data:`MIN_MESSAGE_MS` to :data:`MAX_MESSAGE_MS`."""
    if type(ts) is not int:
        return f"timestamp must be an integer (Unix ms), got {ts!r}"
    if not MIN_MESSAGE_MS <= ts <= MAX_MESSAGE_MS:
        return (
            f"timestamp {ts} is out of range: Unix ms from {MIN_MESSAGE_MS} (2000-01-01) "
            f"to {MAX_MESSAGE_MS} (2200-01-01)"
        )
    return None


def clamp_message_ms(ms: int) -> int:
    """``ms`` moved into the accepted range: what a sender whose clock is far off sends."""
    return min(max(ms, MIN_MESSAGE_MS), MAX_MESSAGE_MS)


def clamp_message_seconds(ts: object) -> float:
    """A time to show (epoch seconds, any value: a float, huge, NaN, not a number at all) in
    the accepted range, so turning it into a date can never fail."""
    low, high = MIN_MESSAGE_MS / 1000, MAX_MESSAGE_MS / 1000
    if type(ts) is bool or not isinstance(ts, int | float):
        return low
    if isinstance(ts, float) and math.isnan(ts):
        return low
    return float(min(max(ts, low), high))


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
