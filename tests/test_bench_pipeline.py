"""python -m raftchat.bench.pipeline: a tiny real run of each channel size.

Speed is never asserted: the run only checks that every message was acknowledged by the
sender and shown on every node, and that every figure is there and positive.
"""

from __future__ import annotations

import pytest

from raftchat.bench import pipeline
from raftchat.bench.pipeline import PipelineOptions, burst_lines, run_trials


def test_burst_lines_are_distinct_lines_of_the_given_length() -> None:
    lines = burst_lines(12, 40, start=5).decode().splitlines()
    assert len(lines) == 12 and len(set(lines)) == 12
    assert all(len(line) == 40 for line in lines)
    assert lines[0].startswith("m5 ")


@pytest.mark.parametrize("nodes", [1, 3])
def test_a_tiny_run_delivers_every_message_on_every_node(nodes: int) -> None:
    options = PipelineOptions(nodes=nodes, messages=60, trials=1, warmup=10, samples=3, idle_s=0.2)
    summary = run_trials(options).summary()
    assert summary["idle_cpu_percent_per_node"] >= 0
    assert summary["nodes"] == nodes and summary["messages"] == 60
    assert summary["msgs_per_s"] > 0 and summary["commits_per_s"] > 0
    assert summary["cpu_us_per_msg"] > 0
    for key in ("commit_latency_ms", "delivery_latency_ms"):
        assert summary[key]["n"] == 3
        assert 0 < summary[key]["p50"] <= summary[key]["p99"]


def test_the_profile_names_where_the_time_went(tmp_path) -> None:
    output = tmp_path / "burst.prof"
    options = PipelineOptions(nodes=1, messages=40, trials=1, warmup=0, samples=0, idle_s=0)
    result = run_trials(options, output)
    assert output.stat().st_size > 0
    assert result.profile is not None and result.profile["file"] == str(output)
    functions = [row[0] for row in result.profile["top_total_percent_calls"]]
    assert any("runtime.py" in name and "_apply" in name for name in functions)
    assert len(result.trials) == 1  # the profiled trial is not counted


def test_main_prints_a_json_summary_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert pipeline.main(["--messages", "30", "--trials", "1", "--warmup", "0",
                          "--samples", "1", "--idle", "0", "--json"]) == 0  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"tool": "pipeline"' in last and '"msgs_per_s"' in last
