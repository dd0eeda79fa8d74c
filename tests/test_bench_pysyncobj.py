"""The PySyncObj peer of raftchat bench: its place in the comparison, its durability hook,
and one tiny real run (structure only; speed is never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftchat.bench.compare import build_comparison, format_comparison, format_peer, run_comparison
from raftchat.bench.options import BenchOptions, quick_options
from raftchat.bench.pysyncobj_peer import PeerNode, free_loopback_ports, pysyncobj_problem
from raftchat.bench.report import build_result, machine_info
from raftchat.bench.waiting import Waiters

PEER_RUN_TIMEOUT_S = 90
needs_pysyncobj = pytest.mark.skipif(
    pysyncobj_problem() is not None, reason=f"PySyncObj peer: {pysyncobj_problem()}"
)


def _latency(p50: float) -> dict:
    return {"p50": p50, "p99": p50 * 2, "n": 3}


def _engine(engine: str, rate: float, p50: float) -> dict:
    return build_result(
        {
            "webrtc": engine,
            "commit_latency_ms": _latency(p50),
            "delivery_latency_ms": _latency(p50),
            "throughput": {
                "one_sender": {"msgs_per_s": rate},
                "all_senders": {"msgs_per_s": rate},
                "cpu_percent": {"leader": 30.0},
            },
        },
        quick_options(webrtc=engine).as_params(),
        {},
        1.0,
    )


def _peer_run(journal: str, rate: float, p50: float, errors: dict | None = None) -> dict:
    return {
        "peer": "pysyncobj",
        "journal": journal,
        "throughput": {"one_sender": {"msgs_per_s": rate}, "all_senders": {"msgs_per_s": rate}},
        "commit_latency_ms": _latency(p50),
        "delivery_latency_ms": _latency(p50),
        "errors": errors or {},
    }


def _peer(errors: dict | None = None) -> dict:
    runs = {
        "fsync": _peer_run("fsync", 1000.0, 4.0, errors),
        "memory": _peer_run("memory", 4000.0, 1.0),
    }
    return {
        "peer": "pysyncobj",
        "version": "0.3.17",
        "runs": runs,
        "params": quick_options().as_params(),
        "machine": machine_info(),
        "errors": {f"fsync: {what}": error for what, error in (errors or {}).items()},
        "duration_s": 2.0,
    }


def test_comparison_gives_each_engine_over_the_synced_peer() -> None:
    runs = {"aiortc": _engine("aiortc", 2000.0, 8.0), "wrtc": _engine("wrtc", 5000.0, 2.0)}
    comparison = build_comparison(runs, quick_options(), 3.0, _peer({"latency": "no ack"}))
    assert comparison["peer"] == "pysyncobj" and comparison["peer_base_journal"] == "fsync"
    assert comparison["peer_figures"]["memory"]["throughput_leader_msgs_per_s"] == 4000.0
    assert comparison["peer_figures"]["fsync"]["failover_p50_s"] is None  # not a peer scenario
    aiortc, wrtc = comparison["peer_ratios"]["aiortc"], comparison["peer_ratios"]["wrtc"]
    assert aiortc["throughput_leader_msgs_per_s"] == 2.0  # 2000 / the fsync run's 1000
    assert wrtc["throughput_all_msgs_per_s"] == 5.0
    assert aiortc["commit_latency_p50_ms"] == 2.0 and wrtc["commit_latency_p50_ms"] == 0.5
    assert wrtc["failover_p50_s"] is None
    assert comparison["ratios"]["commit_latency_p50_ms"] == 0.25  # wrtc / aiortc unchanged
    assert comparison["errors"] == {"pysyncobj: fsync: latency": "no ack"}
    table = format_comparison(comparison)
    header = table.splitlines()[0]
    for column in ("pysyncobj (fsync)", "aiortc / pysyncobj", "wrtc / pysyncobj"):
        assert column in header
    assert header.rstrip().endswith("pysyncobj (memory)")
    commit = next(line for line in table.splitlines() if line.startswith("commit latency p50"))
    assert commit.split()[-7:] == ["0.25", "4.00", "ms", "2.00", "0.50", "1.00", "ms"]
    assert "pysyncobj 0.3.17 (TCP)" in table
    assert "FAILED pysyncobj: fsync: latency: no ack" in table


def test_comparison_without_the_peer_says_why() -> None:
    runs = {"aiortc": _engine("aiortc", 2000.0, 8.0), "wrtc": _engine("wrtc", 5000.0, 2.0)}
    comparison = build_comparison(
        runs, quick_options(), 3.0, peer_missing="pysyncobj is not installed"
    )
    assert "peer_figures" not in comparison
    assert comparison["peer_missing"] == "pysyncobj is not installed"
    table = format_comparison(comparison)
    assert "pysyncobj" not in table.splitlines()[0]
    assert "no PySyncObj column: pysyncobj is not installed" in table


async def test_comparison_runs_the_peer_last_with_the_same_sizes() -> None:
    order: list[str] = []
    given: list[BenchOptions] = []

    async def fake_run_bench(options: BenchOptions, _progress) -> dict:
        order.append(options.webrtc)
        return _engine(options.webrtc, 100.0, 5.0)

    async def fake_run_peer(options: BenchOptions, _progress) -> dict:
        order.append("pysyncobj")
        given.append(options)
        return _peer()

    options = quick_options(messages=70)
    comparison = await run_comparison(options, lambda _t: None, fake_run_bench, fake_run_peer)
    assert order == ["aiortc", "wrtc", "pysyncobj"]
    assert given == [options]
    assert comparison["peer_ratios"]["aiortc"]["throughput_leader_msgs_per_s"] == 0.1


def test_peer_table_has_a_column_per_journal() -> None:
    table = format_peer(_peer())
    header, _rule, *rows = table.splitlines()
    assert header.split()[1:] == ["pysyncobj", "(fsync)", "pysyncobj", "(memory)"]
    leader = next(row for row in rows if row.startswith("throughput, leader sending"))
    assert leader.split()[-4:] == ["1,000", "msg/s", "4,000", "msg/s"]
    assert not any(row.startswith("failover") for row in rows)


def test_node_output_lines_are_read_and_anything_else_is_counted(tmp_path: Path) -> None:
    node = PeerNode("pso1", 1, [2], tmp_path, Waiters())
    for line in (b"state leader", b"ready", b"applied bm1-1", b"ack bm1-1", b"fail bm1-2 2"):
        node.read_line(line, 5.0)
    assert (node.state, node.ready) == ("leader", True)
    assert node.applied == {"bm1-1": 5.0} and node.acked == {"bm1-1": 5.0}
    assert node.failed == {"bm1-2": "2"}
    for junk in (b"state king", b"ack", b"\xff\xfe", b"hello world"):
        node.read_line(junk, 6.0)
    assert node.unreadable == 4 and node.state == "leader" and len(node.acked) == 1


def test_free_loopback_ports_are_distinct() -> None:
    ports = free_loopback_ports(3)
    assert len(set(ports)) == 3 and all(0 < port < 65536 for port in ports)


@needs_pysyncobj
def test_synced_journal_is_flushed_before_entries_are_sent_or_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pysyncobj.transport import TCPTransport

    from raftchat.bench import pysyncobj_node

    monkeypatch.setattr(pysyncobj_node, "DURABLE_JOURNALS", [])
    journal = pysyncobj_node._create_durable_journal(str(tmp_path / "journal"))
    assert isinstance(journal, pysyncobj_node.DurableFileJournal)
    synced: list[str] = []
    monkeypatch.setattr(journal, "flush", lambda: synced.append("flush"))
    monkeypatch.setattr(TCPTransport, "send", lambda _self, _node, _message: True)
    transport = pysyncobj_node.SyncingTransport.__new__(pysyncobj_node.SyncingTransport)
    journal.add(b"command", 1, 1)
    transport.send(None, {"type": "apply_command_response", "log_idx": 1})
    assert synced == []  # telling a follower its index needs nothing on disk
    transport.send(None, {"type": "append_entries", "entries": []})
    assert synced == ["flush"]
    transport.send(None, {"type": "append_entries", "entries": []})
    assert synced == ["flush"]  # nothing new since
    journal.add(b"command", 2, 1)
    transport.send(None, {"type": "next_node_idx", "next_node_idx": 3})
    assert synced == ["flush", "flush"]


@needs_pysyncobj
@pytest.mark.timeout(PEER_RUN_TIMEOUT_S + 30)
def test_peer_run_prints_both_journals_figures(tmp_path: Path) -> None:
    """``raftchat bench --peer pysyncobj --quick --json``: three PySyncObj processes per
    scenario and journal; every figure is there and self-consistent (speed not checked)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "raftchat", "bench", "--peer", "pysyncobj", "--json"]
    completed = subprocess.run(
        [*command, "--quick", "--messages", "60", "--samples", "4"],
        capture_output=True,
        text=True,
        timeout=PEER_RUN_TIMEOUT_S,
        env=env,
    )
    print(completed.stderr[-4000:])
    assert completed.returncode == 0, completed.stderr[-2000:]
    *table, last = completed.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["peer"] == "pysyncobj" and result["errors"] == {}
    assert list(result["runs"]) == ["fsync", "memory"]
    for journal, run in result["runs"].items():
        assert run["journal"] == journal and run["errors"] == {}
        for sender in ("one_sender", "all_senders"):
            burst = run["throughput"][sender]
            assert burst["messages"] == (60 if sender == "one_sender" else 60 // 3 * 3)
            assert 0 < burst["commit_s"] <= burst["delivered_s"]
            assert burst["msgs_per_s"] > 0
        for key in ("commit_latency_ms", "delivery_latency_ms"):
            assert run[key]["n"] == 4 and 0 < run[key]["p50"] <= run[key]["p99"]
        assert run["commit_latency_ms"]["p50"] <= run["delivery_latency_ms"]["p50"]
    assert "msync" in result["runs"]["fsync"]["settings"]["journal"]
    assert table[0].split()[1:] == ["pysyncobj", "(fsync)", "pysyncobj", "(memory)"]
    assert not list(tmp_path.glob("raftchat-bench-*"))


def test_peer_refuses_compare_and_an_engine() -> None:
    for extra in (["--compare"], ["--webrtc", "wrtc"]):
        completed = subprocess.run(
            [sys.executable, "-m", "raftchat", "bench", "--peer", "pysyncobj", *extra],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert completed.returncode == 2
        assert "--peer runs PySyncObj alone" in completed.stderr


@pytest.mark.parametrize(("only", "with_peer"), [(("cpu",), False), (("cpu", "latency"), True)])
async def test_compare_takes_the_peer_only_for_what_it_measures(
    monkeypatch: pytest.MonkeyPatch, only: tuple[str, ...], with_peer: bool
) -> None:
    from raftchat.bench import runner

    async def fake_run_bench(options: BenchOptions, _progress) -> dict:
        return _engine(options.webrtc, 100.0, 5.0)

    async def fake_run_peer(_options: BenchOptions, _progress) -> dict:
        return _peer()

    monkeypatch.setattr(runner, "run_bench", fake_run_bench)
    monkeypatch.setattr(runner, "run_peer", fake_run_peer)
    monkeypatch.setattr(runner, "pysyncobj_problem", lambda: None)
    options = quick_options(only=only)
    comparison = await runner._run_cancellable(options, lambda _t: None, True, False)
    assert ("peer_figures" in comparison) is with_peer
    if not with_peer:
        assert comparison["peer_missing"] == "it measures throughput, latency only"
