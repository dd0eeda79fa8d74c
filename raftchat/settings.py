"""User settings: one :class:`Settings` dataclass, read from ``config.toml`` and flags.

:func:`load_settings` reads ``platformdirs.user_config_dir("raftchat")/config.toml``
(on Linux ``~/.config/raftchat/config.toml``) when it exists; a missing file means
defaults. Command-line flags override the file. Every problem raises
:class:`ConfigError` naming the file, the key and the expected form, e.g.
``config.toml: timers.heartbeat_ms must be an integer between 10 and 10000, got "fast"``.

Layout: identity, network and cluster keys at the top level; every timer in a
``[timers]`` table; one ``[[ice_servers]]`` table per STUN/TURN server. Keys
have the names of the :class:`Settings` fields (the ``[timers]`` ones without
the table prefix). Relative paths in the file are relative to the file's folder.
The ``[server]`` table is for ``raftchat serve`` (:func:`load_server_settings`): its
address and the signaling server's limits, keys named as the
:class:`~raftchat.net.signaling.config.ServerConfig` fields; ``join`` ignores it.

The channel passphrase should not be in this file: name an environment
variable (``passphrase_env``) or a file holding it (``passphrase_file``).
``passphrase = "..."`` works too but logs a warning, as the file is then a secret.

Example (``config.toml``)::

    nick = "ada"
    server_url = "https://signal.example.org"
    relay_only = false
    trust_server = false
    webrtc = "auto"
    # ice_host = "192.168.1.20"
    passphrase_env = "RAFTCHAT_PASSPHRASE"
    # passphrase_file = "passphrase.txt"
    max_voters = 5
    compaction_threshold = 5000
    catchup_entries = 10000
    history_window = 10000
    # data_dir = "~/raftchat-data"
    notices = "smart"

    [timers]
    tick_ms = 10
    heartbeat_ms = 100
    election_timeout_min_ms = 500
    election_timeout_max_ms = 1000
    adaptive_election_timeout = true
    adaptive_factor_min = 10
    adaptive_factor_max = 20
    adaptive_ceiling_ms = 10000
    member_timeout_s = 30

    [[ice_servers]]
    urls = "stun:relay.example.org:3478"

    [[ice_servers]]
    urls = ["turn:turn.example.org:3478", "turn:turn.example.org:3478?transport=tcp"]
    username = "ada"
    credential = "secret"
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import platformdirs

from raftchat import APP_NAME
from raftchat.limits import nick_problem, passphrase_problem
from raftchat.net.engines import ENGINE_CHOICES
from raftchat.net.ice import IceServer
from raftchat.net.signaling.config import ServerConfig

logger = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.toml"
TIMERS_TABLE = "timers"
SERVER_TABLE = "server"
ICE_SERVER_KEYS = ("urls", "username", "credential")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMAND_LINE = "command line"

NoticeMode = Literal["all", "smart", "none"]
"""How the chat UI shows membership notices (:mod:`raftchat.tui.notices`)."""
NOTICE_MODES: tuple[str, ...] = get_args(NoticeMode)
DEFAULT_NOTICE_MODE: NoticeMode = "smart"


class ConfigError(ValueError):
    """A setting is wrong; the message names where (file or command line), the key and
    the expected form. ``keys`` are the field names involved."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys


@dataclass(frozen=True)
class Settings:
    """Everything the node and the CLI can be told. Defaults suit both a fast local demo
    and WebRTC over the internet (the adaptive election timeout stretches the timers on
    slow links)."""

    # --- identity, network, secrets (top level of config.toml) ---
    nick: str = ""
    """Nick shown to others; empty means the node picks one (e.g. the login name)."""
    server_url: str = "http://127.0.0.1:8765"
    """Signaling server (``http://`` or ``https://``)."""
    ice_servers: tuple[IceServer, ...] = ()
    """STUN/TURN servers; the only ones ever contacted (none by default, which works on
    one machine and a LAN)."""
    relay_only: bool = False
    """Use only TURN relay candidates (hides your address from peers; needs a TURN server)."""
    ice_host: str | None = None
    """Gather host candidates only on this IP address (e.g. ``127.0.0.1``); None: all."""
    webrtc: str = "auto"
    """The WebRTC engine: ``"wrtc"`` (Chrome's libwebrtc, the optional ``wrtc`` package),
    ``"aiortc"`` (pure Python), or ``"auto"``: the best one installed that works (see
    :func:`raftchat.net.engines.resolve_engine`). Peers on either engine talk to each other."""
    trust_server: bool = False
    """Let the signaling server's witness vote in a private channel too. In a public
    channel it always may; in a private one the server is outside the trust boundary (a
    witness that voted twice could fork the channel), so only if you run or trust it."""
    passphrase_env: str | None = None
    """Name of the environment variable holding the channel passphrase."""
    passphrase_file: Path | None = None
    """File whose content (trailing newline stripped) is the channel passphrase."""
    passphrase: str | None = field(default=None, repr=False)
    """The channel passphrase itself; prefer ``passphrase_env`` or ``passphrase_file``."""
    allow_weak_passphrase: bool = False
    """Accept a passphrase weaker than :data:`~raftchat.limits.MIN_PASSPHRASE_SCORE` (for a
    channel whose members already use one); refused with advice otherwise."""
    max_voters: int = 5
    """Members beyond this many stay learners (they get every message but do not vote):
    more voters make each commit wait for more peers."""
    compaction_threshold: int = 5_000
    """Log entries past the last snapshot that trigger a new snapshot."""
    catchup_entries: int = 10_000
    """Entries the log keeps before a new snapshot's index: a member lagging by fewer
    entries than this catches up from the log (seeing every message), not a snapshot."""
    history_window: int = 10_000
    """Messages kept in snapshots, so a joining node sees recent history."""
    data_dir: Path | None = None
    """Where logs are kept; None: ``platformdirs.user_data_dir("raftchat")``."""
    notices: NoticeMode = DEFAULT_NOTICE_MODE
    """How the chat UI shows joins, leaves and leader changes: ``all`` (a line each),
    ``smart`` (a burst folded into one line) or ``none``; ``/set notices`` changes it
    while the UI runs."""

    # --- [timers] ---
    tick_ms: int = 10
    """Length of one logical clock step of the Raft core; the other timers are rounded up
    to whole ticks."""
    heartbeat_ms: int = 100
    """How often a leader sends heartbeats; well below the election timeout so one lost
    heartbeat never starts an election."""
    election_timeout_min_ms: int = 500
    """Lower end of the randomized election timeout, and the floor of the adaptive one:
    several heartbeats plus a WebRTC round trip across a continent."""
    election_timeout_max_ms: int = 1_000
    """Upper end of the randomized election timeout (before adaptation)."""
    adaptive_election_timeout: bool = True
    """Stretch the election timeout to the observed link latency (see
    :func:`adaptive_election_timeout_ms`), never below the configured one."""
    adaptive_factor_min: float = 10.0
    """Adaptive lower end = this * observed one-way latency."""
    adaptive_factor_max: float = 20.0
    """Adaptive upper end = this * observed one-way latency."""
    adaptive_ceiling_ms: int = 10_000
    """The adaptive lower end never exceeds this, however slow a link looks."""
    member_timeout_s: float = 30.0
    """A member unreachable this long is removed from the cluster even if the signaling
    server still lists it; long enough to ride out an ICE reconnect."""

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            object.__setattr__(self, spec_field.name, _parse(spec_field.name, value, None))
        problem = _consistency_problem(self)
        if problem:
            raise ConfigError(*problem)

    def ms_to_ticks(self, milliseconds: float) -> int:
        """Whole ticks covering ``milliseconds`` (at least one)."""
        return max(1, math.ceil(milliseconds / self.tick_ms))


# --- value parsers ------------------------------------------------------------------


class _BadValue(Exception):
    """A value does not have the expected form; ``suffix`` refines the key
    (``[1].urls`` for an ICE server field)."""

    def __init__(self, expected: str, value: object, suffix: str = "") -> None:
        super().__init__(expected)
        self.expected, self.value, self.suffix = expected, value, suffix


@dataclass(frozen=True)
class _Spec:
    table: str | None
    parse: Callable[[object], object]
    """Returns the normalized value or raises :class:`_BadValue`."""
    is_path: bool = False


def _integer(low: int, high: int) -> Callable[[object], object]:
    def parse(value: object) -> object:
        if type(value) is not int or not low <= value <= high:
            raise _BadValue(f"an integer between {low} and {high}", value)
        return value

    return parse


def _number(low: float, high: float) -> Callable[[object], object]:
    def parse(value: object) -> object:
        ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high  # type: ignore[arg-type]
        if not ok:
            raise _BadValue(f"a number between {low:g} and {high:g}", value)
        return float(value)  # type: ignore[arg-type]

    return parse


def _boolean(value: object) -> object:
    if type(value) is not bool:
        raise _BadValue("true or false", value)
    return value


def _nick(value: object) -> object:
    if value == "":
        return value
    problem = nick_problem(value)
    if problem:
        raise _BadValue(f"a valid nick ({problem})", value)
    return value


def _url(value: object) -> object:
    parts = urlsplit(value) if type(value) is str else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _BadValue('an http(s) URL such as "http://127.0.0.1:8765"', value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _BadValue("an http(s) URL with a valid port", value) from None
    return value


def _optional(parse: Callable[[object], object]) -> Callable[[object], object]:
    def parse_optional(value: object) -> object:
        return None if value is None else parse(value)

    return parse_optional


def _ip_address(value: object) -> object:
    try:
        return str(ipaddress.ip_address(value))  # type: ignore[arg-type]
    except ValueError:
        raise _BadValue('an IP address such as "127.0.0.1"', value) from None


def _webrtc(value: object) -> object:
    if value not in ENGINE_CHOICES:
        choices = ", ".join(f'"{choice}"' for choice in ENGINE_CHOICES)
        raise _BadValue(f"one of {choices}", value)
    return value


def _notices(value: object) -> object:
    if value not in NOTICE_MODES:
        raise _BadValue("one of " + ", ".join(f'"{mode}"' for mode in NOTICE_MODES), value)
    return value


def _env_name(value: object) -> object:
    if type(value) is not str or not _ENV_NAME.fullmatch(value):
        raise _BadValue('an environment variable name such as "RAFTCHAT_PASSPHRASE"', value)
    return value


def _secret(value: object) -> object:
    """A passphrase; only an empty or non-string one is ever echoed in an error."""
    if type(value) is not str or not value:
        raise _BadValue("a non-empty string", value)
    return value


def _path(value: object) -> object:
    if isinstance(value, Path):
        return value.expanduser()
    if type(value) is not str or not value.strip():
        raise _BadValue("a path (a non-empty string)", value)
    return Path(value).expanduser()


def _ice_servers(value: object) -> object:
    if type(value) not in (list, tuple):
        raise _BadValue("a list of ICE servers ([[ice_servers]] tables)", value)
    servers = []
    for position, item in enumerate(value):  # type: ignore[arg-type]
        if isinstance(item, IceServer):
            servers.append(item)
            continue
        servers.append(_ice_server(position, item))
    return tuple(servers)


def _ice_server(position: int, item: object) -> IceServer:
    where = f"[{position}]"
    if not isinstance(item, Mapping):
        raise _BadValue("a table with urls, username, credential", item, where)
    for key in item:
        if key not in ICE_SERVER_KEYS:
            hint = _did_you_mean(str(key), ICE_SERVER_KEYS)
            raise _BadValue(f"one of urls, username, credential{hint}", key, f"{where} key")
    urls = item.get("urls")
    if type(urls) is str:
        urls = [urls]
    if type(urls) is not list or not urls or any(type(url) is not str for url in urls):
        raise _BadValue('a URL or list of URLs such as "stun:HOST:PORT"', urls, f"{where}.urls")
    for key in ("username", "credential"):
        if item.get(key) is not None and type(item.get(key)) is not str:
            raise _BadValue("a string", item.get(key), f"{where}.{key}")
    try:
        return IceServer(tuple(urls), item.get("username"), item.get("credential"))
    except ValueError as exc:
        raise _BadValue(f"a valid ICE server ({exc})", urls, f"{where}.urls") from None


_SPECS: dict[str, _Spec] = {
    "nick": _Spec(None, _nick),
    "server_url": _Spec(None, _url),
    "ice_servers": _Spec(None, _ice_servers),
    "relay_only": _Spec(None, _boolean),
    "trust_server": _Spec(None, _boolean),
    "ice_host": _Spec(None, _optional(_ip_address)),
    "webrtc": _Spec(None, _webrtc),
    "passphrase_env": _Spec(None, _optional(_env_name)),
    "passphrase_file": _Spec(None, _optional(_path), is_path=True),
    "passphrase": _Spec(None, _optional(_secret)),
    "allow_weak_passphrase": _Spec(None, _boolean),
    "max_voters": _Spec(None, _integer(1, 9)),
    "compaction_threshold": _Spec(None, _integer(1, 100_000_000)),
    "catchup_entries": _Spec(None, _integer(0, 100_000_000)),
    "history_window": _Spec(None, _integer(1, 1_000_000)),
    "data_dir": _Spec(None, _optional(_path), is_path=True),
    "notices": _Spec(None, _notices),
    "tick_ms": _Spec(TIMERS_TABLE, _integer(1, 1_000)),
    "heartbeat_ms": _Spec(TIMERS_TABLE, _integer(10, 10_000)),
    "election_timeout_min_ms": _Spec(TIMERS_TABLE, _integer(20, 60_000)),
    "election_timeout_max_ms": _Spec(TIMERS_TABLE, _integer(20, 120_000)),
    "adaptive_election_timeout": _Spec(TIMERS_TABLE, _boolean),
    "adaptive_factor_min": _Spec(TIMERS_TABLE, _number(1, 100)),
    "adaptive_factor_max": _Spec(TIMERS_TABLE, _number(1, 100)),
    "adaptive_ceiling_ms": _Spec(TIMERS_TABLE, _integer(20, 600_000)),
    "member_timeout_s": _Spec(TIMERS_TABLE, _number(1, 86_400)),
}


def _key(name: str) -> str:
    """The key as written in config.toml (``timers.heartbeat_ms``)."""
    table = _SPECS[name].table
    return f"{table}.{name}" if table else name


def _show(value: object) -> str:
    """A value as the user wrote it (TOML-like: strings in double quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | list | dict) and not isinstance(value, Path):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:
            pass
    return repr(value)


def _parse(name: str, value: object, source: str | None) -> Any:
    try:
        return _SPECS[name].parse(value)
    except _BadValue as bad:
        prefix = f"{source}: " if source else ""
        raise ConfigError(
            f"{prefix}{_key(name)}{bad.suffix} must be {bad.expected}, got {_show(bad.value)}"
        ) from None


def _consistency_problem(settings: Settings) -> tuple[str, tuple[str, ...]] | None:
    """A rule linking several settings that is broken: (message, the field names)."""
    s = settings
    rules: list[tuple[bool, str, tuple[str, ...]]] = [
        (
            s.heartbeat_ms >= s.tick_ms,
            f"{_key('heartbeat_ms')} ({s.heartbeat_ms}) must be at least "
            f"{_key('tick_ms')} ({s.tick_ms})",
            ("heartbeat_ms", "tick_ms"),
        ),
        (
            s.election_timeout_min_ms >= 2 * s.heartbeat_ms,
            f"{_key('election_timeout_min_ms')} ({s.election_timeout_min_ms}) must be at least "
            f"twice {_key('heartbeat_ms')} ({s.heartbeat_ms})",
            ("election_timeout_min_ms", "heartbeat_ms"),
        ),
        (
            s.election_timeout_max_ms > s.election_timeout_min_ms,
            f"{_key('election_timeout_max_ms')} ({s.election_timeout_max_ms}) must be greater "
            f"than {_key('election_timeout_min_ms')} ({s.election_timeout_min_ms})",
            ("election_timeout_max_ms", "election_timeout_min_ms"),
        ),
        (
            s.adaptive_factor_max > s.adaptive_factor_min,
            f"{_key('adaptive_factor_max')} ({s.adaptive_factor_max:g}) must be greater than "
            f"{_key('adaptive_factor_min')} ({s.adaptive_factor_min:g})",
            ("adaptive_factor_max", "adaptive_factor_min"),
        ),
        (
            s.adaptive_ceiling_ms >= s.election_timeout_min_ms,
            f"{_key('adaptive_ceiling_ms')} ({s.adaptive_ceiling_ms}) must be at least "
            f"{_key('election_timeout_min_ms')} ({s.election_timeout_min_ms})",
            ("adaptive_ceiling_ms", "election_timeout_min_ms"),
        ),
        (
            s.member_timeout_s * 1000 >= s.election_timeout_max_ms,
            f"{_key('member_timeout_s')} ({s.member_timeout_s:g} s) must be at least "
            f"{_key('election_timeout_max_ms')} ({s.election_timeout_max_ms} ms)",
            ("member_timeout_s", "election_timeout_max_ms"),
        ),
        (
            not s.relay_only or any(server.is_turn for server in s.ice_servers),
            "relay_only needs at least one TURN server (turn:HOST:PORT) in ice_servers",
            ("relay_only", "ice_servers"),
        ),
        (
            sum(x is not None for x in (s.passphrase, s.passphrase_env, s.passphrase_file)) <= 1,
            "give at most one of passphrase, passphrase_env, passphrase_file",
            ("passphrase", "passphrase_env", "passphrase_file"),
        ),
    ]
    for holds, message, names in rules:
        if not holds:
            return message, names
    return None


# --- loading ------------------------------------------------------------------------


def default_config_path() -> Path:
    """``platformdirs.user_config_dir("raftchat")/config.toml``."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILE_NAME


def load_settings(
    path: Path | None = None, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings from the config file (``path``, else :func:`default_config_path`) with
    ``overrides`` (field name → value, e.g. from flags; None values are ignored) on top.

    A missing default file means defaults; a missing explicit ``path`` is an error.
    """
    explicit = path is not None
    path = path if path is not None else default_config_path()
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    if explicit or path.exists():
        for name, value in _read_file(path).items():
            values[name] = value
            origins[name] = str(path)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in _SPECS:
            hint = _did_you_mean(name, list(_SPECS))
            raise ConfigError(f"{_COMMAND_LINE}: unknown setting {name!r}{hint}")
        values[name] = _parse(name, value, _COMMAND_LINE)
        origins[name] = _COMMAND_LINE
    if origins.get("passphrase") == str(path):
        logger.warning(
            "%s: the channel passphrase is stored in plain text; prefer passphrase_env or "
            "passphrase_file (readable only by you)",
            path,
        )
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ConfigError as exc:
        sources = sorted({origins[name] for name in exc.keys if name in origins})
        prefix = " and ".join(sources) or "defaults"
        raise ConfigError(f"{prefix}: {exc}", exc.keys) from None


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create it or leave out the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _read_file(path: Path) -> dict[str, object]:
    """The file's settings, parsed and validated, keyed by field name."""
    document = _read_document(path)
    flat: dict[str, object] = {}
    for key, value in document.items():
        if key == SERVER_TABLE:
            continue  # raftchat serve's (load_server_settings)
        if key == TIMERS_TABLE:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {TIMERS_TABLE} must be a table ([{TIMERS_TABLE}])")
            for timer_key, timer_value in value.items():
                name = _field_for(path, timer_key, TIMERS_TABLE)
                flat[name] = timer_value
        else:
            flat[_field_for(path, key, None)] = value
    parsed = {name: _parse(name, value, str(path)) for name, value in flat.items()}
    for name, value in parsed.items():
        if _SPECS[name].is_path and isinstance(value, Path) and not value.is_absolute():
            parsed[name] = path.parent / value
    return parsed


def _field_for(path: Path, key: str, table: str | None) -> str:
    """The field a file key names, or a ConfigError suggesting the closest known key."""
    if key in _SPECS and _SPECS[key].table == table:
        return key
    written = f"{table}.{key}" if table else key
    if key in _SPECS:  # right name, wrong table
        table_of_key = _SPECS[key].table
        place = f"in [{table_of_key}]" if table_of_key else "at the top level"
        hint = f"; it belongs {place}: {_key(key)!r}"
    else:
        known = [_key(name) for name in _SPECS] + [TIMERS_TABLE]
        hint = _did_you_mean(written, known)
    raise ConfigError(f"{path}: unknown key {written!r}{hint}")


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    known = list(known)
    matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if matches:
        return f"; did you mean {matches[0]!r}?"
    return f"; known keys: {', '.join(sorted(known))}"


# --- raftchat serve ---------------------------------------------------------------------

DEFAULT_SERVER_HOST = "127.0.0.1"
DEFAULT_SERVER_PORT = 8765


@dataclass(frozen=True)
class ServerSettings:
    """What ``raftchat serve`` runs: where it listens and the server's limits."""

    host: str = DEFAULT_SERVER_HOST
    port: int = DEFAULT_SERVER_PORT
    limits: ServerConfig = field(default_factory=ServerConfig)


def _server_value(name: str, value: object) -> object:
    """A ``[server]`` value in the form the field needs, or raise :class:`_BadValue`."""
    if name == "host":
        if type(value) is not str or not value.strip():
            raise _BadValue('a host name or address such as "0.0.0.0"', value)
        return value
    if name == "port":
        return _integer(0, 65_535)(value)  # 0: any free port (the log line names it)
    if name == "exempt_addresses":
        if type(value) is not list:
            raise _BadValue('a list of IP addresses such as ["127.0.0.1"]', value)
        return tuple(_ip_address(item) for item in value)
    kind = ServerConfig.numeric_fields()[name]
    if kind is int:
        if type(value) is not int or value < 1:
            raise _BadValue("a positive integer", value)
        return value
    ok = type(value) in (int, float) and math.isfinite(value) and value > 0  # type: ignore[arg-type]
    if not ok:
        raise _BadValue("a positive number", value)
    return float(value)  # type: ignore[arg-type]


def server_setting_names() -> list[str]:
    """The keys of the ``[server]`` table (also the names ``raftchat serve --set`` takes)."""
    return ["host", "port", *ServerConfig.numeric_fields(), "exempt_addresses"]


def load_server_settings(
    path: Path | None = None, overrides: Mapping[str, object] | None = None
) -> ServerSettings:
    """``raftchat serve``'s settings: the ``[server]`` table of the config file (``path``,
    else :func:`default_config_path` if it exists) with ``overrides`` (key → value, e.g.
    from flags; None values ignored) on top. Raises :class:`ConfigError`."""
    explicit = path is not None
    path = path if path is not None else default_config_path()
    known = server_setting_names()
    values: dict[str, object] = {}

    def take(name: str, value: object, source: str) -> None:
        if name not in known:
            hint = _did_you_mean(name, known)
            raise ConfigError(f"{source}: unknown key {SERVER_TABLE}.{name}{hint}")
        try:
            values[name] = _server_value(name, value)
        except _BadValue as bad:
            raise ConfigError(
                f"{source}: {SERVER_TABLE}.{name} must be {bad.expected}, got {_show(bad.value)}"
            ) from None

    if explicit or path.exists():
        table = _read_document(path).get(SERVER_TABLE, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {SERVER_TABLE} must be a table ([{SERVER_TABLE}])")
        for name, value in table.items():
            take(name, value, str(path))
    for name, value in (overrides or {}).items():
        if value is not None:
            take(name, value, _COMMAND_LINE)
    host = values.pop("host", DEFAULT_SERVER_HOST)
    port = values.pop("port", DEFAULT_SERVER_PORT)
    try:
        limits = ServerConfig(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"{SERVER_TABLE}: {exc}".replace("ServerConfig.", "")) from None
    return ServerSettings(str(host), int(port), limits)  # type: ignore[arg-type]


# --- helpers the node uses -----------------------------------------------------------


PRIVATE_MODE_BITS = 0o077
"""Permission bits for the group and others: a secret file must have none of them."""


def check_private_file(path: Path) -> str | None:
    """Why the file at ``path`` is not private to its owner (readable or writable by the
    group or others), or None; as ssh treats a private key."""
    if os.name != "posix":
        return None
    mode = path.stat().st_mode
    if mode & PRIVATE_MODE_BITS:
        return (
            f"{path} can be read by other users (mode {mode & 0o777:o}); make it private "
            f"with: chmod 600 {path}"
        )
    return None


def resolve_passphrase(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    context: Iterable[str] = (),
) -> str | None:
    """The channel passphrase from wherever the settings say, or None if there is none.

    A passphrase file readable by other users is refused, and so is a weak passphrase
    (:func:`~raftchat.limits.passphrase_problem`, with ``context`` such as the channel name
    and nick counting as known to an attacker) unless ``allow_weak_passphrase`` is set.
    """
    value = _read_passphrase(settings, environ)
    if value is not None:
        check_passphrase_strength(settings, value, context)
    return value


def check_passphrase_strength(settings: Settings, passphrase: str, context: Iterable[str]) -> None:
    """Raise :class:`ConfigError` with advice if ``passphrase`` is too weak (and weak ones
    are not allowed)."""
    if settings.allow_weak_passphrase:
        return
    problem = passphrase_problem(passphrase, tuple(context))
    if problem:
        raise ConfigError(
            f"{problem}. (A channel whose members already share a weak passphrase: set "
            "allow_weak_passphrase = true in the config file.)",
            ("passphrase",),
        )


def _read_passphrase(settings: Settings, environ: Mapping[str, str] | None) -> str | None:
    if settings.passphrase is not None:
        return settings.passphrase
    if settings.passphrase_env is not None:
        env = os.environ if environ is None else environ
        value = env.get(settings.passphrase_env, "")
        if not value:
            raise ConfigError(
                f"passphrase_env: the environment variable {settings.passphrase_env} is not "
                "set or empty; set it or remove passphrase_env"
            )
        return value
    if settings.passphrase_file is not None:
        try:
            problem = check_private_file(settings.passphrase_file)
            value = settings.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"passphrase_file: cannot read {settings.passphrase_file}: {exc}"
            ) from None
        if problem:
            raise ConfigError(f"passphrase_file: {problem}")
        if not value:
            raise ConfigError(f"passphrase_file: {settings.passphrase_file} is empty")
        return value
    return None


def adaptive_election_timeout_ms(settings: Settings, one_way_latencies_ms: Iterable[float]) -> int:
    """The election timeout's lower end to use now, for the node's status line.

    effective = clamp(adaptive_factor_min * L, floor=election_timeout_min_ms,
    ceiling=adaptive_ceiling_ms), where L is the largest observed one-way latency
    (each link's smoothed RTT / 2). The largest rather than a percentile: with at
    most a handful of links the high percentile *is* the maximum, and the slowest
    link is the one whose heartbeats arrive late. Values that are not finite and
    non-negative are ignored; with none left (or adaptation off) it is the floor.
    """
    floor = settings.election_timeout_min_ms
    if not settings.adaptive_election_timeout:
        return floor
    observed = [x for x in one_way_latencies_ms if math.isfinite(x) and x >= 0]
    if not observed:
        return floor
    wanted = math.ceil(settings.adaptive_factor_min * max(observed))
    return min(max(wanted, floor), settings.adaptive_ceiling_ms)


def election_timeout_range_ms(
    settings: Settings, one_way_latencies_ms: Iterable[float]
) -> tuple[int, int]:
    """(low, high) of the randomized election timeout: low from
    :func:`adaptive_election_timeout_ms`, high keeping the factor ratio
    (``low * factor_max / factor_min``) and never below ``election_timeout_max_ms``."""
    if not settings.adaptive_election_timeout:
        return settings.election_timeout_min_ms, settings.election_timeout_max_ms
    low = adaptive_election_timeout_ms(settings, one_way_latencies_ms)
    ratio = settings.adaptive_factor_max / settings.adaptive_factor_min
    return low, max(settings.election_timeout_max_ms, math.ceil(low * ratio))
