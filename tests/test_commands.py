"""The one grammar of typed lines, as the TUI and headless mode both read it."""

from __future__ import annotations

import pytest

from raftchat.frontends.commands import (
    HEADLESS_COMMANDS,
    TUI_COMMANDS,
    CommandSet,
    Forget,
    InputProblem,
    RunCommand,
    SendText,
)


@pytest.mark.parametrize("commands", [TUI_COMMANDS, HEADLESS_COMMANDS])
@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("", None),
        ("   ", None),
        ("hello there ", SendText("hello there ")),
        ("//etc/hosts", SendText("/etc/hosts")),
        ("/me  waves ", SendText("waves", action=True)),
        ("/ME waves", SendText("waves", action=True)),
        ("/nick  bob ", RunCommand("/nick", "bob")),
        ("/Nick bob", RunCommand("/nick", "bob")),
        ("/QUIT", RunCommand("/quit")),
        ("/me", InputProblem("empty /me: type /me ACTION")),
        ("/nick   ", InputProblem("empty /nick: type /nick NAME")),
        ("/forget bob", Forget(("bob",))),
        ("/FORGET  bob  carol bob ", Forget(("bob", "carol"))),
        ("/forget bob --yes", Forget(("bob",), confirm=True)),
        ("/forget --YES ada#3f2a", Forget(("ada#3f2a",), confirm=True)),
        ("/forget user-3f2a", Forget(("user-3f2a",))),
        ("/forget", InputProblem("empty /forget: type /forget NICK")),
        (
            "/forget --yes",
            InputProblem("/forget needs a name: type /forget NICK (then /forget NICK --yes)"),
        ),
        (
            "/forget bob --force",
            InputProblem("unknown option --force of /forget; type /forget NICK --yes"),
        ),
        ("/forget " + "x" * 60, InputProblem(f"/forget: {'x' * 49!r} is no member's name")),
    ],
)
def test_every_front_end_reads_lines_the_same_way(
    commands: CommandSet, line: str, parsed: object
) -> None:
    assert commands.parse(line) == parsed


def test_an_unknown_command_names_what_the_front_end_offers() -> None:
    tui = TUI_COMMANDS.parse("/Dance now")
    headless = HEADLESS_COMMANDS.parse("/dance")
    assert tui == InputProblem(
        "unknown command /dance; type /help for the list "
        "(start a message with // to send a leading /)"
    )
    assert headless == InputProblem(
        "unknown command /dance; use /nick NAME, /me ACTION, /forget NICK or /quit "
        "(start a message with // to send a leading /)"
    )
    assert tui.sentence().startswith("Unknown command /dance;")


def test_headless_offers_no_pane_or_help_commands() -> None:
    for line in ("/help", "/members", "/stats"):
        assert isinstance(HEADLESS_COMMANDS.parse(line), InputProblem)
        assert isinstance(TUI_COMMANDS.parse(line), RunCommand)


def test_completion_and_help_cover_only_the_offered_commands() -> None:
    assert TUI_COMMANDS.complete("/M") == ["/me", "/members"]
    assert HEADLESS_COMMANDS.complete("/m") == ["/me"]
    assert [line.split()[0] for line in TUI_COMMANDS.help_lines()] == [
        "/help",
        "/nick",
        "/me",
        "/join",
        "/part",
        "/search",
        "/set",
        "/members",
        "/stats",
        "/leave",
        "/quit",
        "/forget",
    ]


def test_join_search_and_set_need_their_argument_and_part_takes_none() -> None:
    assert TUI_COMMANDS.parse("/JOIN MyRoom") == RunCommand("/join", "MyRoom")
    assert TUI_COMMANDS.parse("/search  two words ") == RunCommand("/search", "two words")
    assert TUI_COMMANDS.parse("/set notices all") == RunCommand("/set", "notices all")
    assert TUI_COMMANDS.parse("/part") == RunCommand("/part")
    for line, usage in (
        ("/join", "/join CHANNEL"),
        ("/search  ", "/search TEXT"),
        ("/set", "/set SETTING"),
    ):
        problem = TUI_COMMANDS.parse(line)
        assert isinstance(problem, InputProblem) and usage in problem.message
    assert isinstance(HEADLESS_COMMANDS.parse("/join x"), InputProblem), "headless: one channel"
