"""The command line every headless child node is started with."""

from __future__ import annotations

import sys
from pathlib import Path

from raftchat.cli import build_parser
from raftchat.frontends.node_process import headless_join_command


def test_the_command_is_a_headless_join_the_cli_accepts(tmp_path: Path) -> None:
    command = headless_join_command(
        "room",
        data_dir=tmp_path / "data",
        config_path=tmp_path / "config.toml",
        nick="ada",
        server_url="http://127.0.0.1:8765",
        extra_args=["-v"],
    )
    assert command[:3] == [sys.executable, "-m", "raftchat"]
    arguments = build_parser().parse_args(command[3:])
    assert (arguments.channels, arguments.nick, arguments.server) == (
        ["room"],
        "ada",
        "http://127.0.0.1:8765",
    )
    assert arguments.headless and arguments.verbose
    assert Path(arguments.data_dir) == tmp_path / "data"


def test_without_a_server_url_the_config_names_the_server(tmp_path: Path) -> None:
    command = headless_join_command(
        "room", data_dir=tmp_path, config_path=tmp_path / "c.toml", nick="ada"
    )
    assert "--server" not in command
