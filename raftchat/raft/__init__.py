"""The consensus core: pure, deterministic Raft (sans-I/O)."""
