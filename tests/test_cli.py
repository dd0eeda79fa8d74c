"""The command line: every subcommand exists and has its own help."""

import subprocess
import sys

import pytest

from raftchat.cli import build_parser
from raftchat.frontends.launch import event_loop_factory

SUBCOMMANDS = ["serve", "join", "demo", "bench"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftchat", *args], capture_output=True, text=True, timeout=60
    )


def test_top_level_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.returncode == 0
    assert f"raftchat {name}" in result.stdout


def test_missing_subcommand_is_an_error() -> None:
    result = run_cli()
    assert result.returncode != 0
    assert "COMMAND" in result.stderr


def test_parser_knows_join_options() -> None:
    args = build_parser().parse_args(["join", "lobby", "--nick", "ada", "--headless"])
    assert (args.channels, args.nick, args.headless) == (["lobby"], "ada", True)


def test_headless_nodes_run_on_uvloop_and_the_tui_on_asyncio() -> None:
    import uvloop

    factory = event_loop_factory(headless=True)
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert event_loop_factory(headless=False) is None


def test_headless_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop_factory(headless=True) is None
