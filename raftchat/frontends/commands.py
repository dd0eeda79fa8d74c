"""The one grammar of typed lines: a message to send, a ``/command``, or a mistake.

Every front end reads input with it, so the rules are the same everywhere:

- a blank line means nothing;
- a line not starting with ``/`` is a message, sent as typed;
- ``//`` at the start sends the rest as a message starting with ``/``;
- otherwise the first word names a command, in any case (``/NICK`` is ``/nick``),
  and the rest, stripped, is its argument;
- ``/forget`` takes names (as the status shows them) and ``--yes``, in any order:
  without ``--yes`` the front end shows the warning, with it the node acts.

Each front end offers its own :class:`CommandSet` out of :data:`COMMANDS`; an
unknown command names what that front end does offer. Pure parsing, no I/O: the
front end decides what each command does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from raftchat.limits import MAX_NICK_CHARS, NICK_DISAMBIGUATOR
from raftchat.node.api import FORGET_CONFIRM as CONFIRM

MAX_NAME_CHARS = MAX_NICK_CHARS + len(NICK_DISAMBIGUATOR) + 16
"""Longest name a member is shown by: a nick, ``#`` and the start of a node id."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    """As typed, with the slash, lowercase: ``/nick``."""
    help: str
    """Its line in /help."""
    argument: str = ""
    """Placeholder of the argument it needs (``NAME``); "" if it takes none."""

    @property
    def usage(self) -> str:
        return f"{self.name} {self.argument}".rstrip()


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command("/help", "show this help"),
        Command("/nick", "/nick NAME — change your nick", "NAME"),
        Command("/me", "/me ACTION — say what you do, e.g. /me waves", "ACTION"),
        Command("/join", "/join CHANNEL — open another channel in this window", "CHANNEL"),
        Command("/part", "leave this channel (the others stay open)"),
        Command("/search", "/search TEXT — find earlier messages in this channel", "TEXT"),
        Command("/set", "/set notices all|smart|none — how membership notices show", "SETTING"),
        Command("/members", "show or hide the members pane"),
        Command("/stats", "show or hide the node stats pane"),
        Command("/leave", "leave this channel; quit if it is the only one open"),
        Command("/quit", "leave every open channel and quit"),
        Command(
            "/forget",
            "/forget NICK… — carry on without members whose machines are gone for good"
            f" (warns first; {CONFIRM} confirms)",
            "NICK",
        ),
    )
}
"""Every command any front end offers, in the order /help lists them."""

ESCAPE_HINT = "start a message with // to send a leading /"


@dataclass(frozen=True, slots=True)
class SendText:
    """Send ``text`` as a chat message (``action`` for /me)."""

    text: str
    action: bool = False


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run ``name`` (e.g. "/nick") with ``argument`` ("" if none)."""

    name: str
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Forget:
    """Carry on without the members ``names``; ``confirm``: the warning was read."""

    names: tuple[str, ...]
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class InputProblem:
    """The line cannot be used; ``message`` tells the user what to type instead.

    It is a clause ("unknown command /x; ..."), as headless mode prints it;
    :meth:`sentence` is the same text as a sentence, as the TUI shows it.
    """

    message: str

    def sentence(self) -> str:
        return self.message[:1].upper() + self.message[1:]


ParsedInput = SendText | RunCommand | Forget | InputProblem | None


class CommandSet:
    """The commands one front end offers (names from :data:`COMMANDS`)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.commands = {name: COMMANDS[name] for name in names}

    def parse(self, line: str) -> ParsedInput:
        """What a typed line means; None for a blank line (nothing to do)."""
        if not line.strip():
            return None
        if not line.startswith("/"):
            return SendText(line)
        if line.startswith("//"):
            return SendText(line[1:])
        name, _, argument = line.partition(" ")
        name = name.lower()
        argument = argument.strip()
        command = self.commands.get(name)
        if command is None:
            return InputProblem(f"unknown command {name}; {self._what_to_use()} ({ESCAPE_HINT})")
        if command.argument and not argument:
            return InputProblem(f"empty {name}: type {command.usage}")
        if name == "/me":
            return SendText(argument, action=True)
        if name == "/forget":
            return _forget(argument)
        return RunCommand(name, argument)

    def complete(self, prefix: str) -> list[str]:
        """Commands that start with ``prefix`` (which starts with "/"), in any case."""
        prefix = prefix.lower()
        return [name for name in self.commands if name.startswith(prefix)]

    def help_lines(self) -> list[str]:
        return [f"{command.name:<9} {command.help}" for command in self.commands.values()]

    def _what_to_use(self) -> str:
        if "/help" in self.commands:
            return "type /help for the list"
        *others, last = [command.usage for command in self.commands.values()]
        return f"use {', '.join(others)} or {last}" if others else f"use {last}"


def _forget(argument: str) -> Forget | InputProblem:
    words = argument.split()
    options = [word for word in words if word.startswith("--")]
    names = tuple(dict.fromkeys(word for word in words if not word.startswith("--")))
    unknown = [option for option in options if option.lower() != CONFIRM]
    if unknown:
        return InputProblem(f"unknown option {unknown[0]} of /forget; type /forget NICK {CONFIRM}")
    if not names:
        return InputProblem(
            f"/forget needs a name: type /forget NICK (then /forget NICK {CONFIRM})"
        )
    for name in names:
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            return InputProblem(f"/forget: {name[:MAX_NAME_CHARS]!r} is no member's name")
    return Forget(names, confirm=bool(options))


TUI_COMMANDS = CommandSet(COMMANDS)
HEADLESS_COMMANDS = CommandSet(("/nick", "/me", "/forget", "/quit"))
"""Headless mode has no panes to toggle and no help to show."""
