"""Headless input end to end: refused lines never stop the reader, and the end of input
delivers what was given before the node leaves (real ``raftchat join --headless``
processes; the unit-level rules are in test_headless.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.nodes import NodeProcess, write_config

from raftchat.frontends.launch import EXIT_NOT_COMMITTED
from raftchat.net.signaling.server import RunningServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("node_webrtc")]

CHANNEL = "headless-input"


def node(tmp_path: Path, server: RunningServer, name: str, *extra_args: str) -> NodeProcess:
    config = tmp_path / "config.toml"
    if not config.exists():
        write_config(config)
    return NodeProcess(
        name, CHANNEL, server.url, tmp_path / name / "data", config, extra_args=extra_args
    )


def write_raw(process: NodeProcess, data: bytes) -> None:
    assert process.process is not None and process.process.stdin is not None
    process.process.stdin.write(data)


def line_errors(process: NodeProcess) -> dict[int, str]:
    return {
        e["line"]: e["message"] for e in process.output if e["event"] == "error" and "line" in e
    }


@pytest.mark.parametrize("ending", ["end of input", "/quit"])
async def test_refused_lines_are_errors_and_reading_goes_on(
    tmp_path: Path, server: RunningServer, ending: str
) -> None:
    alone = node(tmp_path, server, "alone")
    await alone.start()
    try:
        await alone.wait_for(NodeProcess.is_leader, what="leading its own channel")
        write_raw(alone, b"esc \x1b[2J here\n")
        write_raw(alone, b"\xff\xfe not utf-8\n")
        write_raw(alone, b"y" * 100_000 + b"\n")
        write_raw(alone, b"bell\x07\n")
        write_raw(alone, b"/nick bad\x1bnick\n")
        write_raw(alone, "/nick \u3164\n".encode())  # a Hangul filler: a nick that shows nothing
        write_raw(alone, b"after the bad lines\n")
        if ending == "/quit":
            alone.quit()  # stdin stays open: only /quit ends the node
        else:
            alone.close_stdin()
        assert await alone.wait_exit() == 0
        errors = line_errors(alone)
        assert sorted(errors) == [1, 2, 3, 4, 5, 6], alone.report()
        assert all(f"input line {n} not sent" in errors[n] for n in errors)
        assert "U+001B (ESC)" in errors[1] and "control character" in errors[1]
        assert "UTF-8" in errors[2]
        assert "longer than" in errors[3]
        assert "U+0007 (BEL)" in errors[4]
        assert "U+001B" in errors[5]
        assert "invisible character U+3164 (HANGUL FILLER)" in errors[6]
        assert alone.texts() == ["after the bad lines"]
        assert len(alone.acks()) == 1
    finally:
        await alone.stop()


async def test_piped_input_to_a_joining_node_is_delivered_before_it_leaves(
    tmp_path: Path, server: RunningServer
) -> None:
    first = node(tmp_path, server, "first")
    await first.start()
    try:
        await first.wait_for(NodeProcess.is_leader, what="the first member leading")
        # `echo hi | raftchat join CHANNEL --headless` on a channel that exists
        second = node(tmp_path, server, "second")
        await second.start()
        try:
            write_raw(second, b"hi\n")
            second.close_stdin()
            assert await second.wait_exit(60) == 0, second.report()
            assert second.errors() == []
            assert len(second.acks()) == 1
            await first.wait_for(lambda n: "hi" in n.texts(), what="the joiner's message")
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_end_of_input_that_cannot_commit_exits_non_zero_with_an_error(
    tmp_path: Path, server: RunningServer
) -> None:
    first = node(tmp_path, server, "first")
    await first.start()
    try:
        await first.wait_for(NodeProcess.is_leader, what="the first member leading")
        os.kill(first.pid, signal.SIGSTOP)  # the only member can commit nothing now
        second = node(tmp_path, server, "second", "--commit-timeout", "2")
        await second.start()
        try:
            write_raw(second, b"one\ntwo\n")
            second.close_stdin()
            assert await second.wait_exit(60) == EXIT_NOT_COMMITTED, second.report()
            errors = second.errors()
            assert any("2 messages not committed" in e and "waited 2 s" in e for e in errors)
            assert second.acks() == {}
        finally:
            await second.stop()
    finally:
        os.kill(first.pid, signal.SIGCONT)
        await first.stop()
