"""``raftchat join --headless`` as a child process: how the demo, the benchmark and the
tests run nodes (JSON lines on stdout, chat lines and commands on stdin)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def headless_join_command(
    channel: str,
    *,
    data_dir: Path,
    config_path: Path,
    nick: str,
    server_url: str = "",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of one headless node; without ``server_url`` the config file
    (or the default) names the signaling server."""
    return [
        sys.executable,
        "-m",
        "raftchat",
        "join",
        channel,
        "--headless",
        *(("--server", server_url) if server_url else ()),
        "--data-dir",
        str(data_dir),
        "--config",
        str(config_path),
        "--nick",
        nick,
        *extra_args,
    ]


async def spawn_headless_node(
    command: Sequence[str],
    *,
    stderr: IO[Any] | int | None = asyncio.subprocess.DEVNULL,
    extra_env: Mapping[str, str] | None = None,
    own_session: bool = False,
    line_limit: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``command`` (see :func:`headless_join_command`) with piped stdin and stdout.

    ``own_session`` keeps a Ctrl-C meant for the parent away from it (the parent then
    decides how it ends); ``line_limit`` bounds one stdout line for ``readline``.
    """
    options: dict[str, Any] = {}
    if line_limit is not None:
        options["limit"] = line_limit
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, **extra_env} if extra_env else None,
        start_new_session=own_session,
        **options,
    )
