"""Tests for settings: defaults, config.toml loading, overrides, errors, adaptive timeout."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import pytest

import raftchat.settings as settings_module
from raftchat.limits import passphrase_problem
from raftchat.net.ice import IceServer
from raftchat.net.signaling.config import ServerConfig
from raftchat.settings import (
    ConfigError,
    ServerSettings,
    Settings,
    adaptive_election_timeout_ms,
    default_config_path,
    election_timeout_range_ms,
    load_server_settings,
    load_settings,
    resolve_passphrase,
    server_setting_names,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path | None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides)
    return str(info.value)


# --- defaults -------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert settings.server_url == "http://127.0.0.1:8765"
    assert settings.ice_servers == ()
    assert (settings.heartbeat_ms, settings.election_timeout_min_ms) == (100, 500)
    assert settings.election_timeout_max_ms == 1000
    assert settings.max_voters == 5
    assert settings.adaptive_election_timeout is True
    assert settings.notices == "smart"
    assert settings.ms_to_ticks(settings.heartbeat_ms) == 10
    assert settings.ms_to_ticks(1) == 1
    assert settings.ms_to_ticks(105) == 11


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nowhere"))
    assert default_config_path() == tmp_path / "nowhere" / "raftchat" / "config.toml"
    assert load_settings() == Settings()


def test_default_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "raftchat").mkdir()
    (tmp_path / "raftchat" / "config.toml").write_text('nick = "grace"\n', encoding="utf-8")
    assert load_settings().nick == "grace"


def test_notices_are_read_from_the_file(tmp_path: Path) -> None:
    for mode in ("all", "smart", "none"):
        assert load_settings(write(tmp_path, f'notices = "{mode}"\n')).notices == mode


def test_passphrase_is_not_in_repr() -> None:
    assert "hunter2" not in repr(Settings(passphrase="hunter2"))


# --- loading and overrides -----------------------------------------------------


def test_example_in_docstring_parses(tmp_path: Path) -> None:
    example = settings_module.__doc__.split("Example (``config.toml``)::\n", 1)[1]
    settings = load_settings(write(tmp_path, example))
    assert settings.nick == "ada"
    assert settings.server_url == "https://signal.example.org"
    assert settings.passphrase_env == "RAFTCHAT_PASSPHRASE"
    assert settings.adaptive_factor_max == 20
    assert settings.member_timeout_s == 30
    assert settings.notices == "smart"
    assert settings.ice_servers == (
        IceServer(("stun:relay.example.org:3478",)),
        IceServer(
            ("turn:turn.example.org:3478", "turn:turn.example.org:3478?transport=tcp"),
            "ada",
            "secret",
        ),
    )


def test_file_values_and_relative_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        relay_only = true
        ice_host = "::1"
        webrtc = "aiortc"
        passphrase_file = "secret.txt"
        data_dir = "/srv/raftchat"
        [timers]
        heartbeat_ms = 50
        election_timeout_min_ms = 200
        election_timeout_max_ms = 400
        member_timeout_s = 5.5
        [[ice_servers]]
        urls = "turn:127.0.0.1:3478"
        username = "u"
        credential = "p"
        """,
    )
    settings = load_settings(path)
    assert settings.relay_only is True
    assert settings.ice_host == "::1"
    assert settings.webrtc == "aiortc" and Settings().webrtc == "auto"
    assert settings.passphrase_file == tmp_path / "secret.txt"
    assert settings.data_dir == Path("/srv/raftchat")
    assert (settings.heartbeat_ms, settings.election_timeout_min_ms) == (50, 200)
    assert settings.member_timeout_s == 5.5
    assert settings.tick_ms == Settings().tick_ms


def test_overrides_win_over_file_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, 'nick = "ada"\nserver_url = "http://10.0.0.1:8765"\n')
    settings = load_settings(path, {"nick": "grace", "server_url": None, "data_dir": "d"})
    assert settings.nick == "grace"
    assert settings.server_url == "http://10.0.0.1:8765"
    assert settings.data_dir == Path("d")


def test_override_of_timer_is_checked_against_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[timers]\nelection_timeout_min_ms = 300\n")
    message = error_of(path, {"heartbeat_ms": 200})
    assert message.startswith(f"{command_line_and(path)}: ")
    assert "timers.election_timeout_min_ms (300) must be at least twice" in message


def command_line_and(path: Path) -> str:
    return " and ".join(sorted(["command line", str(path)]))


def test_plain_passphrase_in_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, 'passphrase = "hunter2"\n')
    with caplog.at_level(logging.WARNING, logger="raftchat.settings"):
        settings = load_settings(path)
    assert settings.passphrase == "hunter2"
    assert "plain text" in caplog.text
    assert "hunter2" not in caplog.text


# --- errors ---------------------------------------------------------------------


def test_the_documented_error_form(tmp_path: Path) -> None:
    path = write(tmp_path, '[timers]\nheartbeat_ms = "fast"\n')
    assert error_of(path) == (
        f'{path}: timers.heartbeat_ms must be an integer between 10 and 10000, got "fast"'
    )


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'nick = "ada"\nrelay_only = = true\n')
    message = error_of(path)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2, column" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nik = 'ada'\n", "unknown key 'nik'; did you mean 'nick'?"),
        ("[timers]\nheartbeat = 100\n", "did you mean 'timers.heartbeat_ms'?"),
        ("heartbeat_ms = 100\n", "it belongs in [timers]: 'timers.heartbeat_ms'"),
        ("[timers]\nnick = 'x'\n", "it belongs at the top level: 'nick'"),
        ("zzzz = 1\n", "known keys: "),
        ("timers = 5\n", "timers must be a table"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nick = 'a b'", "nick must be a valid nick (nick must be printable, without spaces"),
        ("nick = 3", "nick must be a valid nick (nick must be text, got int), got 3"),
        ("server_url = 'ftp://x'", "server_url must be an http(s) URL such as"),
        ("server_url = 'http://h:99999'", "server_url must be an http(s) URL with a valid port"),
        ("relay_only = 'yes'", 'relay_only must be true or false, got "yes"'),
        ("ice_host = 'localhost'", 'ice_host must be an IP address such as "127.0.0.1"'),
        ("webrtc = 'chrome'", 'webrtc must be one of "auto", "wrtc", "aiortc", got "chrome"'),
        ("notices = 'loud'", 'notices must be one of "all", "smart", "none", got "loud"'),
        ("notices = 1", 'notices must be one of "all", "smart", "none", got 1'),
        ("passphrase_env = 'MY-VAR'", "passphrase_env must be an environment variable name"),
        ("passphrase = ''", 'passphrase must be a non-empty string, got ""'),
        ("passphrase_file = ''", "passphrase_file must be a path (a non-empty string)"),
        ("max_voters = 0", "max_voters must be an integer between 1 and 9, got 0"),
        ("max_voters = true", "max_voters must be an integer between 1 and 9, got true"),
        ("history_window = 1.5", "history_window must be an integer between 1 and 1000000"),
        ("[timers]\ntick_ms = 0", "timers.tick_ms must be an integer between 1 and 1000, got 0"),
        ("[timers]\nmember_timeout_s = nan", "timers.member_timeout_s must be a number between"),
        ("[timers]\nadaptive_factor_min = 0.5", "timers.adaptive_factor_min must be a number"),
        ("[timers]\nadaptive_election_timeout = 1", "adaptive_election_timeout must be true or"),
        ("ice_servers = 'stun:x'", "ice_servers must be a list of ICE servers"),
        ("[[ice_servers]]\nurl = 'stun:x'", "ice_servers[0] key must be one of urls, username"),
        ("[[ice_servers]]\nurls = []", "ice_servers[0].urls must be a URL or list of URLs"),
        ("[[ice_servers]]\nurls = 'http://x'", "ice_servers[0].urls must be a valid ICE server"),
        ("[[ice_servers]]\nurls = 'turn:x:3478'", "needs a username and a credential"),
        ("[[ice_servers]]\nurls = 'stun:x'\nusername = 1", "ice_servers[0].username must be a"),
    ],
)
def test_bad_values_name_file_key_and_form(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text + "\n")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("timers", "fragment"),
    [
        ("tick_ms = 200", "timers.heartbeat_ms (100) must be at least timers.tick_ms (200)"),
        ("election_timeout_max_ms = 500", "election_timeout_max_ms (500) must be greater"),
        ("adaptive_factor_max = 10", "timers.adaptive_factor_max (10) must be greater than"),
        ("adaptive_ceiling_ms = 400", "timers.adaptive_ceiling_ms (400) must be at least"),
        (
            "member_timeout_s = 1\nelection_timeout_max_ms = 2000",
            "timers.member_timeout_s (1 s) must be at least timers.election_timeout_max_ms",
        ),
    ],
)
def test_inconsistent_timers(tmp_path: Path, timers: str, fragment: str) -> None:
    path = write(tmp_path, f"[timers]\n{timers}\n")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert fragment in message


def test_more_than_one_passphrase_source(tmp_path: Path) -> None:
    path = write(tmp_path, "passphrase_env = 'A'\npassphrase_file = 'b'\n")
    assert "at most one of passphrase, passphrase_env, passphrase_file" in error_of(path)


def test_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    assert error_of(missing) == f"{missing}: no such file; create it or leave out the path"
    assert error_of(tmp_path).startswith(f"{tmp_path}: cannot read it")
    binary = tmp_path / "config.toml"
    binary.write_bytes(b'nick = "\xff"\n')
    assert error_of(binary) == f"{binary}: not UTF-8 text (byte 8)"


def test_override_errors() -> None:
    assert error_of(None, {"heartbeat": 5}) == (
        "command line: unknown setting 'heartbeat'; did you mean 'heartbeat_ms'?"
    )
    assert error_of(None, {"heartbeat_ms": 5}) == (
        "command line: timers.heartbeat_ms must be an integer between 10 and 10000, got 5"
    )


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_voters must be an integer between 1 and 9"):
        Settings(max_voters=10)
    with pytest.raises(ConfigError) as info:
        Settings(heartbeat_ms=400)
    assert info.value.keys == ("election_timeout_min_ms", "heartbeat_ms")


# --- passphrase -----------------------------------------------------------------


STRONG = "orbit lantern velvet cactus"


def private_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_resolve_passphrase(tmp_path: Path) -> None:
    assert resolve_passphrase(Settings()) is None
    assert resolve_passphrase(Settings(passphrase=STRONG + " 1")) == STRONG + " 1"
    env = {"RC_PASS": STRONG + " 2"}
    assert resolve_passphrase(Settings(passphrase_env="RC_PASS"), env) == STRONG + " 2"
    secret = private_file(tmp_path / "secret.txt", STRONG + " 3\n")
    assert resolve_passphrase(Settings(passphrase_file=secret)) == STRONG + " 3"


def test_resolve_passphrase_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable RC_PASS is not set"):
        resolve_passphrase(Settings(passphrase_env="RC_PASS"), {})
    with pytest.raises(ConfigError, match="passphrase_file: cannot read"):
        resolve_passphrase(Settings(passphrase_file=tmp_path / "absent"))
    empty = private_file(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_passphrase(Settings(passphrase_file=empty))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_passphrase_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(STRONG, encoding="utf-8")
    secret.chmod(mode)
    with pytest.raises(ConfigError) as info:
        resolve_passphrase(Settings(passphrase_file=secret))
    message = str(info.value)
    assert f"{secret} can be read by other users (mode {mode:o})" in message
    assert f"chmod 600 {secret}" in message
    assert STRONG not in message


@pytest.mark.parametrize(
    "weak", ["password123", "hunter2", "letmein!", "qwertyuiop", "team-room", "Summer2024"]
)
def test_a_weak_passphrase_is_refused_with_advice(weak: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_passphrase(Settings(passphrase_env="P"), {"P": weak}, context=("team-room",))
    message = str(info.value)
    assert message.startswith("the passphrase is too weak")
    assert "random words" in message and "allow_weak_passphrase" in message
    assert weak not in message
    allowed = Settings(passphrase_env="P", allow_weak_passphrase=True)
    assert resolve_passphrase(allowed, {"P": weak}) == weak


def test_strength_is_judged_by_zxcvbn_with_the_context() -> None:
    assert passphrase_problem("correct horse battery staple") is None
    assert passphrase_problem("kx8#Vq2!mZ7p") is None
    assert passphrase_problem("a" * 200) is not None  # long is not strong
    assert passphrase_problem("x" * 80 + "orbit lantern velvet cactus") is not None
    assert passphrase_problem("lantern-velvet-9", ()) is None
    assert passphrase_problem("lantern-velvet-9", ("lantern-velvet",)) is not None


# --- adaptive election timeout ----------------------------------------------------


def test_adaptive_timeout_follows_the_slowest_link() -> None:
    settings = Settings()  # floor 500, factor 10..20, ceiling 10000
    assert adaptive_election_timeout_ms(settings, []) == 500
    assert adaptive_election_timeout_ms(settings, [1.0, 20.0]) == 500  # below the floor
    assert adaptive_election_timeout_ms(settings, [5.0, 80.0, 12.0]) == 800
    assert adaptive_election_timeout_ms(settings, [80.01]) == 801  # rounded up
    assert adaptive_election_timeout_ms(settings, [5_000.0]) == 10_000  # ceiling
    assert adaptive_election_timeout_ms(settings, [math.nan, -3.0, math.inf, 60.0]) == 600


def test_adaptive_timeout_off_uses_configured_values() -> None:
    settings = Settings(adaptive_election_timeout=False)
    assert adaptive_election_timeout_ms(settings, [300.0]) == 500
    assert election_timeout_range_ms(settings, [300.0]) == (500, 1000)


def test_adaptive_range_keeps_the_factor_ratio() -> None:
    settings = Settings(adaptive_factor_min=10, adaptive_factor_max=15)
    assert election_timeout_range_ms(settings, []) == (500, 1000)
    assert election_timeout_range_ms(settings, [100.0]) == (1000, 1500)
    assert election_timeout_range_ms(settings, [300.0]) == (3000, 4500)


# --- raftchat serve: the [server] table -------------------------------------------


def test_server_table_sets_the_signaling_server_and_join_ignores_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        nick = "ada"

        [server]
        host = "0.0.0.0"
        port = 9000
        max_connections_per_address = 16
        idle_timeout = 90
        exempt_addresses = ["10.0.0.1", "::1"]
        """,
    )
    server = load_server_settings(path)
    assert (server.host, server.port) == ("0.0.0.0", 9000)
    assert server.limits.max_connections_per_address == 16
    assert server.limits.idle_timeout == 90.0
    assert server.limits.exempt_addresses == ("10.0.0.1", "::1")
    assert server.limits.max_channels == ServerConfig().max_channels  # the rest: defaults
    assert load_settings(path).nick == "ada"
    flags = load_server_settings(path, {"port": 9100, "max_channels": 10, "host": None})
    assert (flags.host, flags.port, flags.limits.max_channels) == ("0.0.0.0", 9100, 10)


def test_every_server_limit_has_a_key() -> None:
    from dataclasses import fields

    assert {f.name for f in fields(ServerConfig)} <= set(server_setting_names())


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("max_connections = 0", "server.max_connections must be a positive integer, got 0"),
        ("max_connections = 1.5", "server.max_connections must be a positive integer"),
        ("idle_timeout = -1", "server.idle_timeout must be a positive number, got -1"),
        ("idle_timeout = 'long'", 'server.idle_timeout must be a positive number, got "long"'),
        ("port = 70000", "server.port must be an integer between 0 and 65535"),
        ("exempt_addresses = 'x'", "server.exempt_addresses must be a list of IP addresses"),
        ("exempt_addresses = ['nope']", 'must be an IP address such as "127.0.0.1"'),
        ("max_conections = 5", "unknown key server.max_conections; did you mean"),
        ("send_queue_bytes = 1000", "send_queue_bytes must be >= 2 * max_frame_bytes"),
    ],
)
def test_server_table_errors_name_the_key(tmp_path: Path, table: str, expected: str) -> None:
    path = write(tmp_path, f"[server]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_server_settings(path)
    assert expected in str(info.value)


def test_missing_default_file_means_default_server_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nowhere"))
    assert load_server_settings() == ServerSettings()
