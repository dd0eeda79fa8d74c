"""``raftchat bench``: real node processes over real WebRTC DataChannels on loopback.

:mod:`~raftchat.bench.runner` runs the scenarios of :mod:`~raftchat.bench.scenarios`
against a :class:`~raftchat.bench.cluster.Cluster` of headless node processes and
prints a table (:mod:`~raftchat.bench.report`); :mod:`~raftchat.bench.stats` holds the
percentile helpers. :mod:`~raftchat.bench.channel_modes` is a standalone experiment:
Raft-shaped traffic over reliable ordered versus unordered / partially reliable
DataChannels.
"""
