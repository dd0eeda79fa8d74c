"""The signaling server under load and abuse at once, on loopback (a small run of
``python -m raftchat.bench.signaling_load``; see docs/performance.md for a full one).

Honest clients join, relay signals, leave and come back while squatters, slowloris
sockets, stuck readers, flooders, channel hoarders and a join spammer attack: every
honest client is served, every honest signal arrives, and the server's memory stays
bounded. The run's random seed is printed (replay with RAFTCHAT_TEST_SEED).
"""

from __future__ import annotations

import os
import sys

import pytest

from raftchat.bench.signaling_load import LoadOptions, format_report, run_load

pytestmark = [
    pytest.mark.load,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.N and /proc"),
]


async def test_honest_clients_are_served_through_every_attack_at_once() -> None:
    seed = int(os.environ.get("RAFTCHAT_TEST_SEED", "0"))
    options = LoadOptions(
        honest=48,
        channels=6,
        squatters=40,
        slowloris=150,
        stuck=3,
        flooders=2,
        hoarders=1,
        hoard_attempts=30,
        join_spam=80,
        duration=3.0,
        idle_timeout=1.5,
        keepalive_interval=0.3,
        seed=seed,
    )
    report = await run_load(options)
    print(f"random seed {report.seed} (replay with RAFTCHAT_TEST_SEED={report.seed})")
    print(format_report(report))
    # Honest clients: all joined (and rejoined), never refused, every signal delivered.
    assert report.honest_joined == 48 and report.honest_rejoined == 24
    assert report.honest_errors == []
    assert report.signals_sent > 0 and report.signals_delivered == report.signals_sent
    # Every attack met its limit.
    errors = report.errors
    assert errors.get("idle_timeout", 0) >= 1  # squatters
    assert errors.get("too_many_peers_from_address", 0) >= 1  # squatters from one address
    assert errors.get("slow_consumer", 0) == 3  # stuck readers
    assert errors.get("flooding", 0) == 2
    assert errors.get("too_many_channels_from_address", 0) >= 1  # the hoarder
    assert errors.get("join_rate_limited", 0) >= 1  # the spammer
    assert errors.get("too_many_connections", 0) >= 1  # slowloris beyond its share
    assert report.http_timeouts.get("header", 0) >= 1  # slowloris within it
    # Memory stays bounded: queues by send_queue_bytes per stuck reader, sockets by the
    # per-address limit (the defaults).
    assert report.peak_queued_bytes <= 3 * 1024 * 1024
    assert report.peak_connections <= 64 * 8 + 200
    if report.rss_peak_mib is not None and report.rss_start_mib is not None:
        assert report.rss_peak_mib - report.rss_start_mib < 64
