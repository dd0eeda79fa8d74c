"""Where every ``raftchat`` command sends its logs: stderr, or a rotated file while
a full-screen UI owns the terminal.

Imports nothing heavy, so ``raftchat --help`` can name the log file.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

import platformdirs

from raftchat import APP_NAME

LOG_FILE_NAME = "raftchat.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MAX_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 2


def log_file_path() -> Path:
    """Where the chat UI logs (on Linux ``~/.local/state/raftchat/log/raftchat.log``)."""
    return Path(platformdirs.user_log_dir(APP_NAME)) / LOG_FILE_NAME


def configure_logging(level: int, *, to_file: bool = False) -> None:
    """Send records of ``level`` and above to stderr, or with ``to_file`` to
    :func:`log_file_path`, rotated (nothing at all if that file cannot be opened: a log
    line must never be written over the UI). Replaces any earlier set-up."""
    handler: logging.Handler
    if not to_file:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path = log_file_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
            )
        except OSError:
            handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
