"""``raftchat bench``: real node processes over real WebRTC DataChannels on loopback.

:mod:`~raftchat.bench.runner` runs the scenarios of :mod:`~raftchat.bench.scenarios`
against a :class:`~raftchat.bench.cluster.Cluster` of headless node processes and
prints a table (:mod:`~raftchat.bench.report`); :mod:`~raftchat.bench.stats` holds the
percentile helpers. :mod:`~raftchat.bench.channel_modes` is a standalone experiment:
Raft-shaped traffic over reliable ordered versus unordered / partially reliable
DataChannels. :mod:`~raftchat.bench.pysyncobj_peer` runs the throughput and latency
scenarios on PySyncObj (:mod:`~raftchat.bench.pysyncobj_node`, one process per node),
the reference that ``--compare`` sets beside both engines.

The harness that starts, drives and reads node processes (:mod:`~raftchat.bench.process`,
what they print in :mod:`~raftchat.bench.node_output`, waits on it in
:mod:`~raftchat.bench.waiting`, and :mod:`~raftchat.bench.cluster`) is also what the
end-to-end tests run their node processes with.
"""
