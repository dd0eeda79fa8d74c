"""The one grammar of typed lines: a message to send, a ``/command``, or a mistake.

Every front end reads input with it, so the rules are the same everywhere:

- a blank line means nothing;
- a line not starting with ``/`` is a message, sent as typed;
- ``//`` at the start sends the rest as a message starting with ``/``;
- otherwise the first word names a command, in any case (``/NICK`` is ``/nick``),
  and the rest, stripped, is its argument.

Each front end offers its own :class:`CommandSet` out of :data:`COMMANDS`; an
unknown command names what that front end does offer. Pure parsing, no I/O: the
front end decides what each command does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
        Command("/members", "show or hide the members pane"),
        Command("/stats", "show or hide the node stats pane"),
        Command("/leave", "leave the channel and quit"),
        Command("/quit", "same as /leave"),
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
class InputProblem:
    """The line cannot be used; ``message`` tells the user what to type instead.

    It is a clause ("unknown command /x; ..."), as headless mode prints it;
    :meth:`sentence` is the same text as a sentence, as the TUI shows it.
    """

    message: str

    def sentence(self) -> str:
        return self.message[:1].upper() + self.message[1:]


ParsedInput = SendText | RunCommand | InputProblem | None


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


TUI_COMMANDS = CommandSet(COMMANDS)
HEADLESS_COMMANDS = CommandSet(("/nick", "/me", "/quit"))
"""Headless mode has no panes to toggle and no help to show."""
