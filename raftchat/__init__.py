"""raftchat: a terminal chat where every participant runs a Raft node."""

__version__ = "0.1.0"

APP_NAME = "raftchat"
"""The name of the folders raftchat keeps its settings, data and logs in (via platformdirs)."""
