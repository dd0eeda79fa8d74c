"""What a line typed into the input means: a message to send, a command, or a mistake.

Pure parsing, no UI: the app decides what each command does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

COMMANDS: dict[str, str] = {
    "/help": "show this help",
    "/nick": "/nick NAME — change your nick",
    "/me": "/me ACTION — say what you do, e.g. /me waves",
    "/members": "show or hide the members pane",
    "/stats": "show or hide the node stats pane",
    "/leave": "leave the channel and quit",
    "/quit": "same as /leave",
}
"""Every command with its one-line help, in the order /help lists them."""

COMMAND_NEEDS_ARGUMENT = {"/nick": "NAME", "/me": "ACTION"}


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
    """The line cannot be used; ``message`` tells the user what to do instead."""

    message: str


ParsedInput = SendText | RunCommand | InputProblem | None


def parse_input(line: str) -> ParsedInput:
    """Classify a submitted input line; None for a blank line (nothing to do).

    A line starting with ``//`` sends the rest literally starting with ``/``.
    """
    if not line.strip():
        return None
    if not line.startswith("/"):
        return SendText(line)
    if line.startswith("//"):
        return SendText(line[1:])
    name, _, argument = line.partition(" ")
    name = name.lower()
    argument = argument.strip()
    if name not in COMMANDS:
        return InputProblem(
            f"Unknown command {name}. Type /help for the list "
            "(start a message with // to send a leading /)."
        )
    if name in COMMAND_NEEDS_ARGUMENT and not argument:
        return InputProblem(f"Usage: {name} {COMMAND_NEEDS_ARGUMENT[name]}")
    if name == "/me":
        return SendText(argument, action=True)
    return RunCommand(name, argument)


def complete_command(prefix: str) -> list[str]:
    """Commands that start with ``prefix`` (which starts with "/")."""
    prefix = prefix.lower()
    return [name for name in COMMANDS if name.startswith(prefix)]


def help_lines() -> list[str]:
    return [f"{name:<9} {text}" for name, text in COMMANDS.items()]
