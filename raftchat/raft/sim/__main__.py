"""``python -m raftchat.raft.sim``: see :mod:`raftchat.raft.sim`."""

import sys

from .runner import main

sys.exit(main())
