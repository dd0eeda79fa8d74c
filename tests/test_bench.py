"""raftchat bench: the statistics helpers, option checks, the report, and one tiny real run.

Speed is never asserted: the real run only checks that every figure is there, positive
and self-consistent (p50 <= p99).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest

from raftchat.bench import channel_modes, node_output, process
from raftchat.bench.compare import build_comparison, format_comparison, run_comparison
from raftchat.bench.node_output import token_of
from raftchat.bench.options import BenchOptions, OptionsError, parse_only, quick_options
from raftchat.bench.process import NodeProcess
from raftchat.bench.pysyncobj_peer import pysyncobj_problem
from raftchat.bench.report import HEADLINE_KEYS, build_result, format_table
from raftchat.bench.stats import percentile, rate, summarize
from raftchat.frontends.headless import _ack_json, _message_json
from raftchat.net.engines import wrtc_problem
from raftchat.node.api import AckEvent, ChatMessageEvent

QUICK_RUN_TIMEOUT_S = 90


# --- stats -----------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert percentile(samples, 50) == 2.5
    # rank (4 - 1) * 0.99 = 2.97: 3 + 0.97 * (4 - 3)
    assert percentile(samples, 99) == pytest.approx(3.97)


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.5], 50) == 7.5
    assert percentile([7.5], 99) == 7.5


def test_percentile_rejects_no_samples_and_bad_rank() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_summarize_reports_order_statistics_and_count() -> None:
    summary = summarize([float(value) for value in range(1, 101)])
    assert summary == {"p50": 50.5, "p99": 99.01, "mean": 50.5, "min": 1.0, "max": 100.0, "n": 100}


def test_summarize_of_nothing_says_so() -> None:
    assert summarize([]) == {"n": 0}


def test_rate_is_zero_when_nothing_was_timed() -> None:
    assert rate(100, 0.5) == 200.0
    assert rate(100, 0.0) == 0.0


def test_token_of_finds_benchmark_messages_only() -> None:
    assert token_of("bmab12-7 xxxx") == "bmab12-7"
    assert token_of("hello bm1") is None


@pytest.mark.parametrize(
    "text",
    ["bmab12-7 xxxx", "hello bm1", 'bm1-2 "quoted" \\ tab\t', "bm1-3 ünïcode ✓", "bm9-9"],
)
def test_message_lines_read_without_json_give_what_the_json_parser_gives(text: str) -> None:
    event = ChatMessageEvent(42, 'ab"c:7' if "quoted" in text else "abc:7", "abc", "n", text, 1.5)
    ack = AckEvent(event.id, 42)
    message_line = _message_json(event).encode()
    ack_line = _ack_json(ack).encode()
    parsed = json.loads(message_line)
    expected = (parsed["index"], parsed["id"], token_of(parsed["text"]))
    assert node_output._message_fields(message_line) in (expected, None)
    assert node_output._ack_id(ack_line) in (json.loads(ack_line)["id"], None)
    if "quoted" not in text and text != "bm9-9":
        assert node_output._message_fields(message_line) == expected  # the fast path was taken
        assert node_output._ack_id(ack_line) == event.id


# --- options and report ----------------------------------------------------------------


async def test_node_output_is_parsed_across_read_boundaries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(process, "STDOUT_READ_BYTES", 16)  # every line spans several reads
    stdout = asyncio.StreamReader()
    fake = types.SimpleNamespace(stdout=stdout, stdin=None, returncode=None, pid=0)

    async def spawn_fake(*_args: object, **_options: object) -> types.SimpleNamespace:
        return fake

    monkeypatch.setattr(process, "spawn_headless_node", spawn_fake)
    node = NodeProcess("n1", "room", "", tmp_path / "n1", tmp_path / "config.toml")
    await node.start()
    status = {"event": "status", "node_id": "abc", "state": "leader", "term": 3}
    message = {"event": "message", "index": 7, "id": "abc:1", "nick": "n", "text": "bm1-1 x"}
    ack = {"event": "ack", "id": "abc:1", "index": 7}
    text = "".join(json.dumps(event) + "\n" for event in (status, message, ack)) + "not json\n"
    stdout.feed_data(text.encode())
    stdout.feed_data(json.dumps({**message, "index": 8, "id": "abc:2", "text": "bm1-2"}).encode())
    stdout.feed_eof()  # the last line has no newline
    await asyncio.wait_for(node._reader, 5)
    events = node.events
    assert (node.state, node.term) == ("leader", 3)
    assert set(events.shown) == {"bm1-1", "bm1-2"}
    assert events.own_shown == 2
    assert set(events.acked) == {"bm1-1"}
    assert events.last_message_index == 8
    assert len(events.errors) == 1 and "not JSON" in events.errors[0]
    assert node.exited_at is not None


def test_options_reject_out_of_range_sizes_with_the_flag_name() -> None:
    with pytest.raises(OptionsError, match="--nodes must be between 1 and"):
        BenchOptions(nodes=0)
    with pytest.raises(OptionsError, match="unknown scenario warp"):
        BenchOptions(only=("latency", "warp"))
    with pytest.raises(OptionsError, match="needs --nodes 2"):
        BenchOptions(nodes=1, only=("failover",))


def test_only_keeps_run_order_whatever_the_order_given() -> None:
    options = quick_options(only=parse_only("scale, throughput"))
    assert options.only == ("throughput", "scale")
    assert parse_only(None) == BenchOptions().only


def test_report_has_headline_keys_even_when_a_scenario_did_not_run() -> None:
    latency = {"p50": 1.0, "p99": 2.0, "mean": 1.2, "min": 0.5, "max": 2.1, "n": 10}
    result = build_result(
        {"commit_latency_ms": latency, "delivery_latency_ms": latency},
        quick_options().as_params(),
        {"failover": "no leader"},
        3.0,
    )
    assert all(key in result for key in HEADLINE_KEYS)
    assert result["throughput_msgs_per_s"] is None
    table = format_table(result)
    assert "commit latency (send -> ack)" in table
    assert "1.00 ms" in table and "2.00 ms" in table
    assert "FAILED failover: no leader" in table
    assert result["machine"]["cpu_count"] == os.cpu_count()


def _engine_result(**figures: object) -> dict:
    latency = {"p50": figures["p50"], "p99": figures["p99"], "n": 3}
    return build_result(
        {
            "webrtc": figures["engine"],
            "commit_latency_ms": latency,
            "delivery_latency_ms": latency,
            "throughput": {
                "one_sender": {"msgs_per_s": figures["rate"]},
                "all_senders": {"msgs_per_s": figures["rate"]},
                "cpu_percent": {"leader": 30.0},
            },
        },
        quick_options(webrtc=str(figures["engine"])).as_params(),
        dict(figures.get("errors", {})),  # type: ignore[call-overload]
        1.0,
    )


def test_comparison_puts_the_engines_side_by_side_with_wrtc_over_aiortc() -> None:
    runs = {
        "aiortc": _engine_result(engine="aiortc", p50=10.0, p99=20.0, rate=2000.0),
        "wrtc": _engine_result(
            engine="wrtc", p50=4.0, p99=10.0, rate=5000.0, errors={"failover": "no leader"}
        ),
    }
    comparison = build_comparison(runs, quick_options(), 2.0)
    assert comparison["compare"] == ["aiortc", "wrtc"]
    assert comparison["figures"]["aiortc"]["commit_latency_p50_ms"] == 10.0
    assert comparison["figures"]["wrtc"]["throughput_leader_msgs_per_s"] == 5000.0
    assert comparison["ratios"]["commit_latency_p50_ms"] == 0.4
    assert comparison["ratios"]["throughput_all_msgs_per_s"] == 2.5
    assert comparison["ratios"]["failover_p50_s"] is None  # did not run on either
    assert comparison["runs"] == runs and "webrtc" not in comparison["params"]
    assert comparison["errors"] == {"wrtc: failover": "no leader"}
    table = format_comparison(comparison)
    header = table.splitlines()[0].split()
    assert header[-5:] == ["aiortc", "wrtc", "wrtc", "/", "aiortc"]
    commit = next(line for line in table.splitlines() if line.startswith("commit latency p50"))
    assert commit.split()[-5:] == ["10.00", "ms", "4.00", "ms", "0.40"]
    assert "failover" not in table.split("FAILED")[0]  # no row for what ran nowhere
    assert "FAILED wrtc: failover: no leader" in table


async def test_comparison_runs_each_engine_with_the_same_sizes(tmp_path: Path) -> None:
    ran: list[BenchOptions] = []

    async def fake_run_bench(options: BenchOptions, progress) -> dict:
        ran.append(options)
        return _engine_result(engine=options.webrtc, p50=5.0, p99=9.0, rate=100.0)

    options = quick_options(messages=50, profile_dir=tmp_path)
    comparison = await run_comparison(options, lambda _text: None, fake_run_bench)
    assert [run.webrtc for run in ran] == ["aiortc", "wrtc"]
    assert [run.profile_dir for run in ran] == [tmp_path / "aiortc", tmp_path / "wrtc"]
    assert {replace(run, webrtc="auto", profile_dir=None) for run in ran} == {
        replace(options, profile_dir=None)
    }
    assert comparison["ratios"]["commit_latency_p50_ms"] == 1.0
    assert comparison["params"]["messages"] == 50


def test_compare_refuses_a_chosen_engine() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "raftchat", "bench", "--compare", "--webrtc", "wrtc"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    assert "--compare runs both engines" in completed.stderr


@pytest.mark.skipif(wrtc_problem() is not None, reason=f"wrtc: {wrtc_problem()}")
@pytest.mark.timeout(QUICK_RUN_TIMEOUT_S + 30)
def test_compare_runs_both_engines_and_prints_them_side_by_side(tmp_path: Path) -> None:
    """``raftchat bench --compare --json`` with tiny sizes: one run per engine, each on the
    engine it names, figures and ratios for what ran (speed is not checked)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "raftchat", "bench", "--compare", "--json", "--quick"]
    completed = subprocess.run(
        [*command, "--only", "latency", "--nodes", "2", "--samples", "3"],
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT_S,
        env=env,
    )
    print(completed.stderr[-4000:])
    assert completed.returncode == 0, completed.stderr[-2000:]
    *table, last = completed.stdout.strip().splitlines()
    comparison = json.loads(last)
    assert comparison["compare"] == ["aiortc", "wrtc"] and comparison["errors"] == {}
    for engine in ("aiortc", "wrtc"):
        run = comparison["runs"][engine]
        assert run["webrtc"] == engine, "every node of the run was on that engine"
        assert run["params"]["webrtc"] == engine and run["params"]["latency_samples"] == 3
        assert comparison["engines_seen"][engine] == engine
        figures = comparison["figures"][engine]
        assert figures["commit_latency_p50_ms"] == run["commit_latency_ms"]["p50"] > 0
        assert figures["throughput_leader_msgs_per_s"] is None  # not among --only
    wrtc, aiortc = (comparison["figures"][e]["delivery_latency_p50_ms"] for e in ("wrtc", "aiortc"))
    assert comparison["ratios"]["delivery_latency_p50_ms"] == round(wrtc / aiortc, 3)
    assert table[0].split()[3:6] == ["wrtc", "/", "aiortc"]
    assert any(line.startswith("commit latency p50") for line in table)
    if pysyncobj_problem() is None:  # the peer joins the comparison when it is installed
        peer = comparison["peer_figures"]["fsync"]
        assert peer["commit_latency_p50_ms"] > 0 and peer["throughput_leader_msgs_per_s"] is None
        assert comparison["peer_run"]["runs"]["fsync"]["commit_latency_ms"]["n"] == 3
        assert comparison["peer_ratios"]["wrtc"]["commit_latency_p50_ms"] == round(
            comparison["figures"]["wrtc"]["commit_latency_p50_ms"] / peer["commit_latency_p50_ms"],
            3,
        )
        assert "wrtc / pysyncobj" in table[0]
    else:
        assert comparison["peer_missing"] == pysyncobj_problem()
    assert not list(tmp_path.glob("raftchat-bench-*"))


# --- a real run -----------------------------------------------------------------------


def _summary_ok(summary: dict) -> None:
    assert summary["n"] >= 1
    assert 0 < summary["min"] <= summary["p50"] <= summary["p99"] <= summary["max"]


@pytest.mark.slow
@pytest.mark.timeout(QUICK_RUN_TIMEOUT_S + 30)
def test_quick_run_prints_a_complete_json_result(tmp_path: Path) -> None:
    """``raftchat bench --quick --json``: real node processes, every scenario; the last
    stdout line is the JSON object with every figure present and plausible."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "raftchat", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT_S,
        env=env,
    )
    print(completed.stderr[-4000:])
    print(f"took {time.monotonic() - started:.1f} s")
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["errors"] == {}
    assert result["params"]["messages"] == quick_options().messages
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["python"]
    assert result["throughput_msgs_per_s"] > 0
    for key in ("one_sender", "all_senders"):
        burst = result["throughput"][key]
        assert burst["msgs_per_s"] > 0 and burst["commit_s"] <= burst["delivered_s"]
    assert result["throughput"]["cpu_percent"]["leader"] > 0
    for key in ("commit_latency_ms", "delivery_latency_ms", "failover_s"):
        _summary_ok(result[key])
    _summary_ok(result["graceful_quit"]["leader_change_s"])
    _summary_ok(result["restart_s"])
    for path in ("entries", "snapshot"):
        join = result["join"][path]
        assert 0 < join["added_s"] <= join["caught_up_s"]
    assert result["join"]["snapshot"]["compaction_threshold"] < result["join"]["entries"]["history"]
    scale = result["scale"]
    assert scale["members"] == quick_options().members and scale["formation_s"] > 0
    assert scale["idle_cpu"]["per_node_percent"]["n"] == scale["members"]
    # The table came before the JSON line, and the temp dirs are gone.
    assert "commit latency" in completed.stdout
    assert not list(tmp_path.glob("raftchat-bench-*"))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_interrupted_run_stops_every_node(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) mid-run: exit status 130, no node process left, temp dir removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    bench = subprocess.Popen(
        [sys.executable, "-m", "raftchat", "bench", "--quick", "--only", "latency"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert bench.stderr is not None
        for line in bench.stderr:  # wait for the event itself: the channel has formed
            if "channel formed" in line:
                break
        else:
            pytest.fail("the benchmark ended before its channel formed")
        nodes = _child_pids(bench.pid)
        assert nodes, "the benchmark should have node processes running"
        bench.send_signal(signal.SIGINT)
        assert bench.wait(timeout=30) == 130
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    for pid in nodes:
        assert not _running(pid), f"node process {pid} outlived the benchmark"
    assert not list(tmp_path.glob("raftchat-bench-*"))


def _child_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return [int(pid) for pid in children.read_text().split()]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- ordered vs unordered DataChannel experiment ------------------------------------------


class _FakeChannel:
    """Records what the follower side sends; ``deliver`` plays a received frame."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int]] = []
        self._handler = None

    def on(self, event: str, handler) -> None:
        assert event == "message"
        self._handler = handler

    def send(self, frame: bytes) -> None:
        self.sent.append(channel_modes._HEADER.unpack_from(frame))

    def deliver(self, kind: int, seq: int, generation: int = 0) -> None:
        assert self._handler is not None
        self._handler(channel_modes._HEADER.pack(kind, seq, generation) + b"payload")


def test_experiment_follower_appends_in_order_and_rejects_gaps_like_raft() -> None:
    channel = _FakeChannel()
    channel_modes._attach_follower(channel)  # type: ignore[arg-type]
    channel.deliver(channel_modes.BATCH, 1)
    channel.deliver(channel_modes.BATCH, 3, generation=0)  # batch 2 was lost
    channel.deliver(channel_modes.BATCH, 2, generation=1)  # the leader rewound
    channel.deliver(channel_modes.BATCH, 2, generation=1)  # a duplicate
    channel.deliver(channel_modes.PING, 77)
    assert channel.sent == [
        (channel_modes.ACK, 1, 0),
        (channel_modes.REJECT, 1, 0),
        (channel_modes.ACK, 2, 1),
        (channel_modes.ACK, 2, 1),
        (channel_modes.PONG, 77, 0),
    ]


@pytest.mark.timeout(60)
async def test_experiment_moves_entries_over_a_real_unordered_channel() -> None:
    mode = next(mode for mode in channel_modes.MODES if not mode.ordered)
    shape = channel_modes.TrafficShape(duration_s=0.5)
    result = await channel_modes.run_mode(mode, 0.0, shape, seed=1)
    assert result.batches_acked > 0 and result.entries_per_s > 0
    assert result.heartbeats_sent > 0 and result.heartbeat_rtts
    table = channel_modes.format_results([channel_modes._merge(mode, 0.0, "load", [result])])
    assert mode.name in table


@pytest.mark.timeout(60)
async def test_experiment_leads_several_followers_and_counts_the_slowest() -> None:
    mode = channel_modes.MODES[0]
    shape = channel_modes.TrafficShape(duration_s=0.5)
    result = await channel_modes.run_mode(mode, 0.0, shape, seed=1, followers=2)
    assert result.followers == 2
    assert len(result.entries_per_s_by_follower) == 2
    assert all(rate > 0 for rate in result.entries_per_s_by_follower)
    assert result.entries_per_s == min(result.entries_per_s_by_follower)
    # Both followers answered heartbeats: more than one follower's worth were sent.
    per_follower = shape.duration_s / shape.ping_interval_s
    assert result.heartbeats_sent > per_follower and len(result.heartbeat_rtts) > per_follower


async def test_a_channel_does_not_count_as_formed_when_a_member_was_refused(
    tmp_path: Path,
) -> None:
    """A node the signaling server turns away exits; formation must fail naming it, not
    succeed with the nodes that are left (a 100-member run once reported 100 members
    formed with 36 of them refused by the server's 64-peer limit)."""
    from raftchat.bench.cluster import Cluster, ClusterSettings
    from raftchat.bench.errors import BenchError
    from raftchat.net.signaling.config import ServerConfig
    from raftchat.net.signaling.server import start_server

    server = await start_server("127.0.0.1", 0, ServerConfig.one_machine(max_peers_per_channel=2))
    cluster = Cluster(tmp_path, server.url, "full", ClusterSettings())
    try:
        with pytest.raises(BenchError, match=r"node n[12] exited"):  # whichever came third
            await cluster.start(3, timeout=60)
    finally:
        await cluster.close()
        await server.close()
