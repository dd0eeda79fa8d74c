"""The chaos test's faults file: which peers a node process cuts off, and when it re-reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fault_node import FaultsFile, PollingFrameFilter, parse_faults, through_launcher
from support.clocks import ManualClock


def write(path: Path, document: object) -> None:
    """Replace the file atomically, as a test controlling a node does."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)


def test_listed_peers_are_dropped_both_ways_until_the_file_lists_none(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    faults = FaultsFile(path)
    assert not faults.poll() and not faults.should_drop("b", "send"), "no file: no faults"
    write(path, {"drop": ["b", "c"]})
    assert faults.poll()
    assert faults.should_drop("b", "send") and faults.should_drop("c", "recv")
    assert not faults.should_drop("d", "send")
    assert not faults.poll(), "unchanged file: nothing to do"
    write(path, {"drop": []})
    assert faults.poll() and not faults.should_drop("b", "recv")


def test_unreadable_file_keeps_the_faults_in_force(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    faults = FaultsFile(path)
    write(path, {"drop": ["b"]})
    faults.poll()
    path.write_text("{not json")
    assert not faults.poll()
    assert faults.should_drop("b", "send")
    path.unlink()
    assert faults.poll() and not faults.dropped, "a removed file means no faults"


@pytest.mark.parametrize("text", ['["b"]', '{"drop": "b"}', '{"drop": [1]}'])
def test_malformed_documents_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="drop"):
        parse_faults(text)


def test_the_frame_filter_rereads_the_file_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    clock = ManualClock()
    frame_filter = PollingFrameFilter(FaultsFile(path), interval=0.1, clock=clock)
    assert not frame_filter("b", "send")
    write(path, {"drop": ["b"]})
    assert not frame_filter("b", "send"), "read again only once the interval passed"
    clock.advance(0.1)
    assert frame_filter("b", "send") and frame_filter("b", "recv")


def test_launcher_runs_the_same_command_line() -> None:
    command = through_launcher(["python3", "-m", "raftchat", "join", "room", "--headless"])
    assert command[0] == "python3" and command[1].endswith("fault_node.py")
    assert command[2:] == ["join", "room", "--headless"]
    with pytest.raises(ValueError, match="python -m raftchat"):
        through_launcher(["python3", "script.py", "join"])
