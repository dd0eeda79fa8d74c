"""``raftchat serve``: the signaling server, with the witness it hosts."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from raftchat.net.signaling.server import run_server
from raftchat.settings import ConfigError, load_server_settings
from raftchat.storage import default_data_root
from raftchat.witness import WitnessHost, WitnessStoreError

WITNESS_DIR_NAME = "witness"


@dataclass(frozen=True)
class ServeOptions:
    config_path: Path | None = None
    overrides: Mapping[str, object] = field(default_factory=dict)
    """``[server]`` keys from the command line (None values ignored)."""
    data_dir: Path | None = None
    """Where the witness keeps its votes; None: the user data dir's ``witness``."""
    witness: bool = True


def witness_dir(data_dir: Path | None) -> Path:
    return data_dir if data_dir is not None else default_data_root() / WITNESS_DIR_NAME


def serve(options: ServeOptions) -> int:
    """Run until interrupted; the exit status (2: bad settings, 1: cannot run)."""
    try:
        settings = load_server_settings(options.config_path, options.overrides)
    except ConfigError as error:
        print(f"raftchat serve: {error}", file=sys.stderr)
        return 2
    directory = witness_dir(options.data_dir)
    try:
        run_server(
            settings.host,
            settings.port,
            settings.limits,
            witness=(lambda: WitnessHost.open(directory)) if options.witness else None,
        )
    except (OSError, WitnessStoreError) as exc:
        print(f"raftchat serve: {exc}", file=sys.stderr)
        return 1
    return 0
