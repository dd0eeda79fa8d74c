"""``raftchat join``: clear errors with a non-zero exit, an embedded signaling server when
none runs, and logs that stay off the UI's terminal."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from support.nodes import NodeProcess, write_config
from support.ports import free_port

from raftchat import cli
from raftchat.frontends import logs
from raftchat.frontends.launch import JoinOptions, resolve_settings, tui_config
from raftchat.net.signaling.server import RunningServer
from raftchat.storage import Storage

pytestmark = pytest.mark.timeout(60)


async def join(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat",
        "join",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 45)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_invalid_channel_name_is_an_error(tmp_path: Path) -> None:
    code, out, err = await join("no spaces!", "--headless", "--data-dir", str(tmp_path))
    assert code != 0 and out == ""
    assert "raftchat join:" in err and "channel" in err


async def test_unreachable_explicit_server_is_an_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await join("lobby", "--server", url, "--headless", "--data-dir", str(tmp_path))
    assert code != 0 and out == ""
    assert f"no signaling server answers at {url}" in err


async def test_invalid_config_file_names_file_key_and_expected_form(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[timers]\nheartbeat_ms = "fast"\n')
    code, _, err = await join("lobby", "--config", str(config), "--headless")
    assert code != 0
    assert str(config) in err and "timers.heartbeat_ms" in err and "an integer between" in err


async def test_second_node_on_a_locked_data_dir_is_refused(
    tmp_path: Path, server: RunningServer
) -> None:
    config = write_config(tmp_path / "config.toml")
    first = NodeProcess("first", "lobby", server.url, tmp_path / "data", config)
    await first.start()
    try:
        await first.wait_for(NodeProcess.is_leader, what="the first node leading")
        code, out, err = await join(
            "lobby", "--server", server.url, "--headless", "--data-dir", str(tmp_path / "data")
        )
        assert code != 0 and out == ""
        assert "raftchat join:" in err and "lock" in err.lower()
        assert first.running, "the node holding the data dir is untouched"
    finally:
        await first.stop()


async def test_a_damaged_data_dir_is_set_aside_and_the_node_starts_over(
    tmp_path: Path, server: RunningServer
) -> None:
    data = tmp_path / "data"
    with Storage.open_channel("lobby", data) as storage:
        storage._conn.execute("INSERT INTO meta (key, value) VALUES ('incarnation', 'x')")
    code, out, err = await join(
        "lobby", "--server", server.url, "--headless", "--data-dir", str(data)
    )
    assert code == 0 and "Traceback" not in err
    errors = [json.loads(line) for line in out.splitlines() if '"error"' in line]
    assert errors and "incarnation is malformed" in errors[0]["message"]
    assert "starts over as a new member" in errors[0]["message"]
    assert list((data / "lobby").glob("raftchat.sqlite3.damaged-*"))


async def test_join_starts_an_embedded_server_when_none_runs_locally(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config)
    config.write_text(f'server_url = "http://127.0.0.1:{port}"\n' + config.read_text())
    # No --server: the config's URL is local, so join may start a server there.
    node = NodeProcess("solo", "lobby", "", tmp_path / "data", config)
    await node.start()
    try:
        await node.wait_for(NodeProcess.is_leader, what="a one-node cluster")
        node.send("hello")
        await node.wait_for(lambda n: n.acks(), what="the message acknowledged")
        node.quit()
        assert await node.wait_exit() == 0
    finally:
        await node.stop()


def test_help_names_the_log_file_the_ui_writes_to() -> None:
    assert cli._log_file_hint() == str(logs.log_file_path())
    join_parser = cli.build_parser()._subparsers._group_actions[0].choices["join"]  # type: ignore[union-attr]
    assert str(logs.log_file_path()) in "".join(join_parser.format_help().split())


def test_ui_logging_goes_to_the_file_not_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "log" / "raftchat.log"
    monkeypatch.setattr(logs, "log_file_path", lambda: log_file)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure_logging(logging.INFO, to_file=True)
        logging.getLogger("raftchat.test").warning("written to the file")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    captured = capfd.readouterr()
    assert "written to the file" not in captured.err + captured.out
    assert "written to the file" in log_file.read_text()


def test_ice_flags_replace_the_config_files_servers(tmp_path: Path) -> None:
    from raftchat.frontends.launch import JoinOptions, resolve_settings

    config = tmp_path / "config.toml"
    config.write_text('[[ice_servers]]\nurls = "stun:127.0.0.1:9"\n')
    settings = resolve_settings(
        JoinOptions(
            ("room",),
            config_path=config,
            ice_servers=("turn:127.0.0.1:3478", "stun:127.0.0.1:3479"),
            ice_username="u",
            ice_credential="p",
            relay_only=True,
            ice_host="127.0.0.1",
        )
    )
    turn, stun = settings.ice_servers
    assert (turn.urls, turn.username, turn.credential) == (("turn:127.0.0.1:3478",), "u", "p")
    assert (stun.urls, stun.username) == (("stun:127.0.0.1:3479",), None)
    assert settings.relay_only and settings.ice_host == "127.0.0.1"
    assert "p" not in repr(turn)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ice_servers": ("turn:127.0.0.1:3478",)}, "needs a username and a credential"),
        ({"ice_servers": ("http://example",)}, "use 'stun:HOST:PORT'"),
        ({"relay_only": True}, "relay_only needs at least one TURN server"),
        ({"ice_host": "not-an-address"}, "ice_host"),
    ],
)
def test_bad_ice_flags_are_clear_errors(tmp_path: Path, options: dict, expected: str) -> None:
    from raftchat.frontends.launch import JoinOptions, LaunchError, resolve_settings

    config = tmp_path / "config.toml"
    config.write_text("")
    with pytest.raises(LaunchError, match=expected):
        resolve_settings(JoinOptions(("room",), config_path=config, **options))


def test_a_weak_passphrase_from_the_environment_is_refused_with_advice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raftchat.frontends.launch import JoinOptions, LaunchError, resolve_channel_passphrase
    from raftchat.settings import Settings

    options = JoinOptions(channels=("team",), ask_passphrase=True)
    monkeypatch.setenv("RAFTCHAT_PASSPHRASE", "team2024")
    with pytest.raises(LaunchError, match="the passphrase is too weak") as info:
        resolve_channel_passphrase(options, Settings(), "team")
    assert "random words" in str(info.value)
    monkeypatch.setenv("RAFTCHAT_PASSPHRASE", "orbit lantern velvet cactus")
    assert resolve_channel_passphrase(options, Settings(), "team") == "orbit lantern velvet cactus"


async def test_join_refuses_a_passphrase_file_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("orbit lantern velvet cactus\n")
    secret.chmod(0o644)
    code, out, err = await join(
        "room",
        "--headless",
        "--server",
        f"http://127.0.0.1:{free_port()}",
        "--data-dir",
        str(tmp_path / "data"),
        "--passphrase-file",
        str(secret),
    )
    assert code == 1 and out == ""
    assert f"{secret} can be read by other users (mode 644)" in err
    assert f"chmod 600 {secret}" in err


async def test_headless_takes_exactly_one_channel(tmp_path: Path) -> None:
    code, out, err = await join("red", "blue", "--headless", "--data-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "--headless runs one channel per process" in err and "got 2" in err
    assert not (tmp_path / "red").exists(), "nothing is opened before the usage error"


def test_webrtc_flag_overrides_the_config_file_and_wrtc_where_it_cannot_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftchat.frontends import launch
    from raftchat.frontends.launch import JoinOptions, LaunchError, resolve_settings
    from raftchat.net import engines

    config = tmp_path / "config.toml"
    config.write_text('webrtc = "wrtc"\n')
    settings = resolve_settings(JoinOptions(("room",), config_path=config, webrtc="aiortc"))
    assert settings.webrtc == "aiortc"
    monkeypatch.setattr(engines, "wrtc_problem", lambda: "wrtc is not installed")
    monkeypatch.setattr(launch, "resolve_engine", engines.resolve_engine)
    with pytest.raises(LaunchError, match="webrtc = wrtc: wrtc is not installed"):
        resolve_settings(JoinOptions(("room",), config_path=config))
    assert engines.resolve_engine("auto") == "aiortc"  # auto falls back


def test_the_ui_gets_the_notices_setting_and_the_file_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('notices = "none"\n', encoding="utf-8")
    options = JoinOptions(channels=("lobby",), config_path=config)
    tui = tui_config(options, resolve_settings(options))
    assert (tui.notices, tui.config_file) == ("none", config)
