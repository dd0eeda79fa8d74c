"""``raftchat join``: settings, storage, a signaling server, stop signals, then the nodes
of the channels asked for, run under a front end (the TUI, or headless mode for one
channel) until the user quits. The channels of one process share what they can
(:mod:`raftchat.frontends.channels`): an embedded signaling server, and one WebSocket to it.

``raftchat demo`` joins through here too, and so does every node process of the
benchmark and the tests (a headless ``raftchat join``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from raftchat.chat import ChatSnapshotError
from raftchat.limits import MAX_NICK_CHARS
from raftchat.net.engines import resolve_engine
from raftchat.net.ice import loopback_address_of
from raftchat.net.signaling.client import SignalingConnection, server_is_up
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.protocol import ProtocolError, normalize_channel
from raftchat.net.signaling.server import RunningServer, start_server
from raftchat.node import Node
from raftchat.settings import (
    ConfigError,
    Settings,
    check_passphrase_strength,
    load_settings,
    resolve_passphrase,
)
from raftchat.storage import (
    Storage,
    StorageCorruptError,
    StorageError,
    channel_data_dir,
    set_aside_damaged,
)

if TYPE_CHECKING:
    from raftchat.tui.app import TuiConfig

logger = logging.getLogger(__name__)


class LaunchError(Exception):
    """Something the user must fix before the node can start; the text says what."""


@dataclass(frozen=True)
class JoinOptions:
    """What ``raftchat join`` was asked for (None: from the config file or defaults)."""

    channels: tuple[str, ...]
    """The channel names as typed (headless: exactly one)."""
    server_url: str | None = None
    nick: str | None = None
    data_dir: Path | None = None
    config_path: Path | None = None
    headless: bool = False
    ask_passphrase: bool = False
    """Private channel: take the passphrase from $RAFTCHAT_PASSPHRASE or ask for it."""
    passphrase_file: Path | None = None
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs from the command line; they replace the config file's list."""
    ice_username: str | None = None
    """Username for the TURN servers among ``ice_servers``."""
    ice_credential: str | None = None
    relay_only: bool = False
    ice_host: str | None = None
    webrtc: str | None = None
    """The WebRTC engine (``auto``, ``wrtc``, ``aiortc``); None: the config file's."""
    trust_server: bool = False
    """Private channel: let the signaling server's witness vote (see Settings)."""
    commit_timeout_s: float | None = None
    """Headless: how long the end of input waits for messages to commit (None: the
    default, :data:`raftchat.frontends.headless.END_OF_INPUT_TIMEOUT_S`)."""


EXIT_NOT_COMMITTED = 3
"""Exit status of a headless node that left before every message it was given committed."""
EXIT_USAGE = 2
"""Exit status of a command line that asks for something ``join`` cannot do."""


PASSPHRASE_ENV = "RAFTCHAT_PASSPHRASE"


def resolve_channel_passphrase(
    options: JoinOptions, settings: Settings, channel: str, *, can_ask: bool = True
) -> str | None:
    """The passphrase of ``channel``: flags first, then the config file's source, else None.

    A weak one is refused with advice (unless ``allow_weak_passphrase``), and so is a
    passphrase file that other users can read. Without ``can_ask`` (a channel opened from
    inside the chat UI, which owns the terminal) ``--passphrase`` needs the environment."""
    context = (channel, settings.nick)
    if options.ask_passphrase:
        from_env = os.environ.get(PASSPHRASE_ENV)
        if from_env:
            return _strong_enough(settings, from_env, context)
        if not can_ask:
            raise LaunchError(
                f"cannot ask for the passphrase of channel {channel} here: set "
                f"{PASSPHRASE_ENV}, or passphrase_file in the config file, before starting "
                f"raftchat, or join it from the command line (raftchat join {channel} "
                "--passphrase)"
            )
        try:
            entered = getpass.getpass(f"passphrase for channel {channel}: ")
        except (EOFError, OSError) as error:
            raise LaunchError(
                f"cannot ask for the passphrase ({error}); set {PASSPHRASE_ENV} "
                "or use --passphrase-file"
            ) from None
        if not entered:
            raise LaunchError("the passphrase must not be empty")
        return _strong_enough(settings, entered, context)
    try:
        return resolve_passphrase(settings, context=context)
    except ConfigError as error:
        raise LaunchError(str(error)) from None


def _strong_enough(settings: Settings, passphrase: str, context: tuple[str, ...]) -> str:
    try:
        check_passphrase_strength(settings, passphrase, context)
    except ConfigError as error:
        raise LaunchError(str(error)) from None
    return passphrase


def resolve_settings(options: JoinOptions) -> Settings:
    overrides = {
        "server_url": options.server_url,
        "nick": options.nick,
        "data_dir": options.data_dir,
        "passphrase_file": options.passphrase_file,
        "ice_servers": [_ice_server_table(url, options) for url in options.ice_servers] or None,
        "relay_only": options.relay_only or None,
        "ice_host": options.ice_host,
        "webrtc": options.webrtc,
        "trust_server": options.trust_server or None,
    }
    try:
        settings = load_settings(options.config_path, overrides)
    except ConfigError as error:
        raise LaunchError(str(error)) from None
    try:
        resolve_engine(settings.webrtc)  # wrtc asked for where it cannot run: say so now
    except ValueError as error:
        raise LaunchError(str(error)) from None
    return settings


def _ice_server_table(url: str, options: JoinOptions) -> dict[str, str]:
    table = {"urls": url}
    if url.startswith(("turn:", "turns:")):
        for key, value in (
            ("username", options.ice_username),
            ("credential", options.ice_credential),
        ):
            if value is not None:
                table[key] = value
    return table


def channel_name(raw: str) -> str:
    """The canonical name of the channel typed as ``raw`` (names are case-insensitive)."""
    try:
        return normalize_channel(raw)
    except ProtocolError as error:
        raise LaunchError(str(error)) from None


def renamed_notice(raw: str, channel: str) -> str | None:
    """What to tell a user who typed ``raw`` for ``channel``, if it is not the same."""
    if raw == channel:
        return None
    return (
        f"channel names are case-insensitive and shown in lower case: {raw!r} is channel "
        f"{channel!r}"
    )


def default_nick() -> str:
    """The login name, trimmed to what a nick may contain."""
    with contextlib.suppress(Exception):
        name = re.sub(r"[^A-Za-z0-9_.-]", "", getpass.getuser())[:MAX_NICK_CHARS]
        if name:
            return name
    return ""


def start_over(storage_dir: Path, problem: str) -> str:
    """Set a damaged database aside; the sentence that tells the user what happened."""
    moved = set_aside_damaged(storage_dir)
    message = (
        f"the stored state of this channel was damaged ({problem}); it was moved to {moved}"
        " and this node starts over as a new member: the channel's history comes back"
        " from the other members"
    )
    logger.error("%s", message)
    return message


def open_node(
    channel: str,
    settings: Settings,
    passphrase: str | None,
    signaling: SignalingConnection | None = None,
) -> Node:
    """The node of ``channel``, starting over (and saying so) if its stored state is
    damaged, rather than refusing to start until someone deletes the data dir.
    ``signaling``: the WebSocket it shares with the process's other channels."""
    problems: list[str] = []
    for _ in range(2):
        try:
            storage = Storage.open_channel(channel, settings.data_dir)
        except StorageCorruptError as error:
            problems.append(start_over(channel_data_dir(channel, settings.data_dir), str(error)))
            continue
        except StorageError as error:
            raise LaunchError(str(error)) from None
        try:
            return Node(
                storage,
                settings,
                nick=settings.nick or default_nick() or None,
                passphrase=passphrase,
                startup_problems=problems,
                signaling=signaling,
            )
        except (ChatSnapshotError, StorageCorruptError) as error:  # found while loading
            directory = storage.directory
            storage.close()
            problems.append(start_over(directory, str(error)))
        except StorageError as error:
            storage.close()
            raise LaunchError(str(error)) from None
    raise LaunchError(f"cannot start a node for {channel}: {'; '.join(problems)}")


async def ensure_server(settings: Settings, explicit: bool) -> RunningServer | None:
    """Make sure a signaling server answers at ``settings.server_url``.

    If none answers and the URL is the local default (not given explicitly), start
    one in this process, so a single machine needs no separate ``raftchat serve``.
    """
    url = settings.server_url
    if await server_is_up(url, timeout=2.0):
        return None
    host = loopback_address_of(url)
    if explicit or host is None:
        raise LaunchError(
            f"no signaling server answers at {url}; start one with `raftchat serve` "
            "or pass --server URL"
        )
    port = urlsplit(url).port or 80
    try:
        server = await start_server(host, port, ServerConfig.one_machine())
    except OSError as error:
        raise LaunchError(f"cannot start an embedded signaling server: {error}") from None
    logger.info("started an embedded signaling server at %s", server.url)
    return server


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT (Ctrl-C) ask the node to leave cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


def join(options: JoinOptions) -> int:
    """``raftchat join`` from start to exit status, on the event loop its front end suits."""
    with asyncio.Runner(loop_factory=event_loop_factory(options.headless)) as runner:
        return runner.run(run_join(options))


def event_loop_factory(headless: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for headless nodes when it is installed (10-20 % more throughput measured:
    aiortc does all its work in Python callbacks on the loop); None (asyncio's own loop)
    otherwise, and always for the TUI, whose loop Textual manages."""
    if not headless:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def tui_config(options: JoinOptions, settings: Settings) -> TuiConfig:
    """The chat UI's settings: those of ``settings`` it uses, and the file they came from."""
    from raftchat.tui.app import TuiConfig

    return TuiConfig(notices=settings.notices, config_file=options.config_path)


async def run_join(options: JoinOptions) -> int:
    """``raftchat join``: run until the user quits; the exit status."""
    from raftchat.frontends.channels import ChannelOpenError, ProcessChannels

    if options.headless and len(options.channels) != 1:
        print(
            "raftchat join: --headless runs one channel per process: give exactly one "
            f"CHANNEL (got {len(options.channels)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    host = ProcessChannels(options)
    not_committed = 0
    try:
        try:
            nodes = [await host.open(name) for name in options.channels]
        except ChannelOpenError as error:
            print(f"raftchat join: {error}", file=sys.stderr)
            return 1
        if options.headless:
            from raftchat.frontends.headless import END_OF_INPUT_TIMEOUT_S, run_headless

            timeout = options.commit_timeout_s
            not_committed = await run_headless(
                nodes[0],
                install_signals=install_stop_signals,
                end_of_input_timeout_s=END_OF_INPUT_TIMEOUT_S if timeout is None else timeout,
            )
        else:
            from raftchat.tui.app import run_app

            await run_app(nodes, tui_config(options, resolve_settings(options)), host=host)
            for channel in host.channels:
                await host.close(channel)
    finally:
        await host.shutdown()
    return EXIT_NOT_COMMITTED if not_committed else 0
