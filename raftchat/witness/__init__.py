"""A witness vote for the channels, hosted by the signaling server.

A channel of two members cannot survive losing one; the signaling server can hold a
third, tie-breaking vote for it (the raft.js paper's suggestion): a
:class:`~raftchat.raft.witness.WitnessCore` per cluster, which keeps only term, vote and
the (index, term) of entries, never a message. :mod:`.store` keeps that durably,
:mod:`.host` runs the cores behind the server's ``witness`` frames.
"""

from raftchat.witness.host import WitnessHost, WitnessHostSettings
from raftchat.witness.store import WitnessKey, WitnessStore, WitnessStoreError

__all__ = ["WitnessHost", "WitnessHostSettings", "WitnessKey", "WitnessStore", "WitnessStoreError"]
