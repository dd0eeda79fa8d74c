"""raftchat: a terminal chat where every participant runs a Raft node."""

__version__ = "0.1.0"
