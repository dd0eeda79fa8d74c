"""Headless mode: the JSON lines it prints and the input lines it understands."""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
from dataclasses import replace

import pytest
from fake_node import FakeChatNode

from raftchat.frontends.headless import HeadlessPrinter, _handle_line, event_line, run_headless
from raftchat.limits import MAX_MESSAGE_MS, MIN_MESSAGE_MS
from raftchat.node.api import (
    AckEvent,
    ChatMessageEvent,
    EmptyMessageError,
    ErrorEvent,
    Event,
    MemberInfo,
    MembersEvent,
    MissingVoter,
    NoticeEvent,
    StatusEvent,
    validate_nick,
)


def status(state: str = "follower", commit_index: int = 3, applied_index: int = 3) -> StatusEvent:
    return StatusEvent(
        node_id="n1",
        state=state,  # type: ignore[arg-type]
        term=2,
        leader="n2",
        voters=("n1", "n2"),
        learners=("n3",),
        commit_index=commit_index,
        applied_index=applied_index,
        last_index=4,
        snapshot_index=0,
        election_timeout_ms=500.0,
        webrtc="wrtc",
    )


class FakeNode:
    """Records what headless mode asks of a node."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []
        self.nicks: list[str] = []
        self.left = asyncio.Event()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._stopped = asyncio.Event()
        self.acks_held: list[tuple[str, str]] | None = None

    def send_chat(self, text: str, action: bool = False) -> str:
        if not text.strip():
            raise EmptyMessageError("empty message: type some text")
        self.sent.append((text, action))
        message_id = f"n1:{len(self.sent)}"
        if self.acks_held is None:
            self.commit(message_id, text)
        else:
            self.acks_held.append((message_id, text))
        return message_id

    def commit(self, message_id: str, text: str) -> None:
        index = int(message_id.split(":")[1])
        self.queue.put_nowait(ChatMessageEvent(index, message_id, "n1", "ada", text, 1.0))
        self.queue.put_nowait(AckEvent(message_id, index))

    def hold_acks(self) -> None:
        """Commit nothing until :meth:`release_acks` (a node not yet a member)."""
        self.acks_held = []

    def release_acks(self) -> None:
        held, self.acks_held = self.acks_held or [], None
        for message_id, text in held:
            self.commit(message_id, text)

    async def set_nick(self, nick: str) -> None:
        self.nicks.append(validate_nick(nick))  # the node's own check

    def subscribe(self) -> asyncio.Queue[Event]:
        return self.queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        pass

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def leave(self) -> None:
        self.left.set()
        self._stopped.set()


def test_status_line_has_exactly_the_documented_fields() -> None:
    line = event_line(status())
    assert line == {
        "event": "status",
        "node_id": "n1",
        "state": "follower",
        "term": 2,
        "leader": "n2",
        "voters": ["n1", "n2"],
        "learners": ["n3"],
        "commit_index": 3,
        "last_index": 4,
        "snapshot_index": 0,
        "witness": None,
        "webrtc": "wrtc",
        "cluster": None,
    }


@pytest.mark.parametrize(
    ("state", "printed"),
    [("pre_candidate", "candidate"), ("learner", "learner"), ("leader", "leader")],
)
def test_status_state_is_one_of_the_raft_states(state: str, printed: str) -> None:
    line = event_line(status(state))
    assert line is not None and line["state"] == printed


def test_stopped_status_notices_and_members_print_nothing() -> None:
    assert event_line(status("stopped")) is None
    assert event_line(NoticeEvent("join", "bob joined", 1.0)) is None
    assert event_line(MembersEvent(())) is None


def test_message_ack_and_error_lines() -> None:
    message = ChatMessageEvent(7, "n1:5", "n1", "ada", "hi", 1_700_000_000.5)
    assert event_line(message) == {
        "event": "message",
        "index": 7,
        "id": "n1:5",
        "nick": "ada",
        "text": "hi",
        "ts": 1_700_000_000.5,
    }
    action = event_line(ChatMessageEvent(8, "n1:6", "n1", "ada", "waves", 13.0, action=True))
    assert action is not None and action["action"] is True
    assert event_line(AckEvent("n1:5", 7)) == {"event": "ack", "id": "n1:5", "index": 7}
    assert event_line(ErrorEvent("boom")) == {"event": "error", "message": "boom"}


def test_printer_writes_one_json_object_per_line_and_skips_unchanged_status() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer.print_event(status())
    printer.print_event(status(applied_index=9))  # no printed field changed
    printer.print_event(status(commit_index=4))
    printer.print_event(ChatMessageEvent(1, "x:1", "x", "e\x1b[2Jvil", "bell\x07\nnext", 1.0))
    printer.print_event(NoticeEvent("info", "not printed", 1.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["status", "status", "message"]
    assert events[2]["text"] == "bell\x07\nnext"
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def cannot_commit(silent_s: int | None = 6, nick: str = "bob") -> StatusEvent:
    """The status of a node whose only other voter crashed."""
    return replace(
        status("pre_candidate"),
        leader=None,
        quorum_problem=(
            f"no leader: waiting for {nick} \u2014 the channel needs 2 of 2 voters; 1 reachable"
            f" ({nick} last heard {silent_s} s ago); if {nick} is gone for good, type"
            f" /forget {nick}"
        ),
        missing_voters=(MissingVoter("n2", nick, silent_s),),
        voters_needed=2,
        voters_reachable=1,
        forget_command=f"/forget {nick}",
    )


def test_status_line_says_why_the_channel_cannot_commit() -> None:
    line = event_line(cannot_commit())
    assert line == {
        "event": "status",
        "node_id": "n1",
        "state": "candidate",
        "term": 2,
        "leader": None,
        "voters": ["n1", "n2"],
        "learners": ["n3"],
        "commit_index": 3,
        "last_index": 4,
        "snapshot_index": 0,
        "witness": None,
        "webrtc": "wrtc",
        "cluster": None,
        "quorum_problem": (
            "no leader: waiting for bob \u2014 the channel needs 2 of 2 voters; 1 reachable"
            " (bob last heard 6 s ago); if bob is gone for good, type /forget bob"
        ),
        "voters_needed": 2,
        "voters_reachable": 1,
        "missing_voters": [{"node_id": "n2", "nick": "bob", "silent_s": 6}],
        "forget_command": "/forget bob",
    }
    never = event_line(cannot_commit(silent_s=None))
    assert never is not None and never["missing_voters"][0]["silent_s"] is None
    stuck = event_line(replace(cannot_commit(), forget_command=None))
    assert stuck is not None and "forget_command" not in stuck


def test_printer_shows_the_quorum_problem_appear_change_and_go() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer.print_event(status())
    printer.print_event(cannot_commit(silent_s=4))
    printer.print_event(cannot_commit(silent_s=4))  # unchanged: not printed again
    printer.print_event(cannot_commit(silent_s=5, nick="b\u00f6b\x1b[2J"))
    printer.print_event(status())
    text = out.getvalue()
    assert text.isascii() and "\x1b" not in text
    events = [json.loads(line) for line in text.splitlines()]
    assert ["quorum_problem" in e for e in events] == [False, True, True, False]
    assert [e.get("missing_voters") for e in events] == [
        None,
        [{"node_id": "n2", "nick": "bob", "silent_s": 4}],
        [{"node_id": "n2", "nick": "b\u00f6b\x1b[2J", "silent_s": 5}],
        None,
    ]


@pytest.mark.parametrize(
    "message",
    [
        ChatMessageEvent(7, "n1:5", "n1", "ada", "hi", 12.5),
        ChatMessageEvent(8, "n1:6", "n1", "ada", "waves", 13.0, action=True),
        ChatMessageEvent(
            9, 'n"1:7', "n\\1", "e\x1b[2Jvil", "bell\x07\nnext \u00e9\U0001f600", 1e-7
        ),
        ChatMessageEvent(10, "n1:8", "n1", "ada", "int ts", 14),  # type: ignore[arg-type]
        ChatMessageEvent(11, "n1:9", "n1", "ada", "nan ts", float("nan")),
        AckEvent("n1:5", 7),
        AckEvent('n\u00e9"1:\x07', 2**62),
    ],
)
def test_printed_message_and_ack_lines_are_the_event_line_in_compact_ascii_json(
    message: ChatMessageEvent | AckEvent,
) -> None:
    out = io.StringIO()
    HeadlessPrinter(out).print_event(message)
    expected = json.dumps(event_line(message), ensure_ascii=True, separators=(",", ":"))
    assert out.getvalue() == expected + "\n"


async def test_input_lines_become_messages_commands_and_errors() -> None:
    node = FakeNode()
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    assert not await _handle_line(node, "hello there", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/me waves", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "//not a command", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/nick bob", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "   ", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/dance", printer)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/me ", printer)  # type: ignore[arg-type]
    assert await _handle_line(node, "/quit", printer)  # type: ignore[arg-type]
    assert node.sent == [("hello there", False), ("waves", True), ("/not a command", False)]
    assert node.nicks == ["bob"]
    errors = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert len(errors) == 2
    assert "unknown command /dance" in errors[0]
    assert "empty" in errors[1]


@pytest.mark.parametrize(
    ("nick", "named"),
    [
        ("\u3164", "U+3164 (HANGUL FILLER)"),
        ("a\u2800", "U+2800 (BRAILLE PATTERN BLANK)"),
        ("bo\u200bb", "U+200B (ZERO WIDTH SPACE)"),
        ("\ufe0f", "U+FE0F (VARIATION SELECTOR-16)"),
    ],
)
async def test_nick_with_an_invisible_character_is_refused_naming_it(nick: str, named: str) -> None:
    node = FakeNode()
    out = io.StringIO()
    assert not await _handle_line(node, f"/nick {nick}", HeadlessPrinter(out), number=4)  # type: ignore[arg-type]
    assert node.nicks == []
    (error,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert error["line"] == 4
    assert "input line 4 not sent" in error["message"]
    assert f"nick must not contain the invisible character {named}" in error["message"]


def test_message_lines_stay_valid_json_whatever_the_time() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    for ts in (math.nan, math.inf, -math.inf, (2**63 - 1) / 1000, -1e300, 1e300):
        printer.print_event(ChatMessageEvent(1, "n1:1", "n1", "ada", "hi", ts))
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["ts"] for line in lines] == [
        MIN_MESSAGE_MS / 1000,
        MAX_MESSAGE_MS / 1000,
        MIN_MESSAGE_MS / 1000,
        MAX_MESSAGE_MS / 1000,
        MIN_MESSAGE_MS / 1000,
        MAX_MESSAGE_MS / 1000,
    ]


async def test_end_of_input_leaves_after_printing_the_messages() -> None:
    node = FakeNode()
    read_end, write_end = io.StringIO("one\ntwo\n"), io.StringIO()
    await asyncio.wait_for(run_headless(node, read_end, write_end), 10)  # type: ignore[arg-type]
    assert node.left.is_set()
    assert node.sent == [("one", False), ("two", False)]
    lines = [json.loads(line) for line in write_end.getvalue().splitlines()]
    assert [line["text"] for line in lines if line["event"] == "message"] == ["one", "two"]


async def test_stop_signal_leaves_while_input_stays_open() -> None:
    node = FakeNode()
    stop_callbacks = []
    never_ending = _BlockingInput()
    task = asyncio.create_task(
        run_headless(node, never_ending, io.StringIO(), install_signals=stop_callbacks.append)  # type: ignore[arg-type]
    )
    while not stop_callbacks:  # run_headless registers its handler first thing
        await asyncio.sleep(0)
    stop_callbacks[0]()
    await asyncio.wait_for(task, 10)
    assert node.left.is_set()
    never_ending.release()


class _BlockingInput(io.TextIOBase):
    """Input that yields no line until released (like a terminal nobody types in)."""

    def __init__(self) -> None:
        self._released = threading.Event()

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._released.wait()
        return iter(())

    def release(self) -> None:
        self._released.set()


def test_line_batches_hand_over_every_complete_line_of_a_read() -> None:
    import os

    from raftchat.frontends.headless import _line_batches

    read_end, write_end = os.pipe()
    os.write(write_end, b"one\ntwo\nthr" + "ee \u00e9\nlast".encode())
    os.close(write_end)
    try:
        batches = list(_line_batches(read_end, chunk_bytes=8))
    finally:
        os.close(read_end)
    lines = [line for batch in batches for line in batch]
    assert lines == ["one", "two", "three \u00e9", "last"]
    assert any(len(batch) > 1 for batch in batches)  # several lines share one read


def _printed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_lines_with_control_characters_are_refused_and_reading_goes_on() -> None:
    node = FakeNode()
    out = io.StringIO()
    lines = "esc \x1b[2J\nbell\x07 ring\n/nick a\x1bb\nfine\ttabbed\n/quit\nnever read\n"
    returned = await asyncio.wait_for(run_headless(node, io.StringIO(lines), out), 10)  # type: ignore[arg-type]
    assert returned == 0 and node.left.is_set()
    assert node.sent == [("fine\ttabbed", False)]
    assert node.nicks == []
    errors = [line for line in _printed(out) if line["event"] == "error"]
    assert [error["line"] for error in errors] == [1, 2, 3]
    assert "input line 1 not sent" in errors[0]["message"]
    assert "U+001B (ESC)" in errors[0]["message"]
    assert "U+0007 (BEL)" in errors[1]["message"]


class _FailingNode(FakeNode):
    def send_chat(self, text: str, action: bool = False) -> str:
        if text == "boom":
            raise RuntimeError("unexpected")
        return super().send_chat(text, action)


async def test_a_line_the_node_fails_on_is_an_error_and_later_lines_and_the_end_still_work() -> (
    None
):
    node = _FailingNode()
    out = io.StringIO()
    await asyncio.wait_for(run_headless(node, io.StringIO("boom\nafter\n"), out), 10)  # type: ignore[arg-type]
    assert node.left.is_set()
    assert node.sent == [("after", False)]
    errors = [line for line in _printed(out) if line["event"] == "error"]
    assert len(errors) == 1 and errors[0]["line"] == 1 and "not sent" in errors[0]["message"]


async def test_end_of_input_waits_for_every_message_to_commit_before_leaving() -> None:
    node = FakeNode()
    node.hold_acks()
    out = io.StringIO()
    task = asyncio.create_task(run_headless(node, io.StringIO("one\ntwo\n"), out))  # type: ignore[arg-type]
    while len(node.sent) < 2:
        await asyncio.sleep(0)
    for _ in range(20):  # the end of input has been read by now; the node must not leave
        await asyncio.sleep(0)
    assert not node.left.is_set() and not task.done()
    node.release_acks()
    assert await asyncio.wait_for(task, 10) == 0
    assert node.left.is_set()
    assert [line["event"] for line in _printed(out)].count("ack") == 2


async def test_end_of_input_leaves_after_the_timeout_and_says_how_many_did_not_commit() -> None:
    node = FakeNode()
    node.hold_acks()
    out = io.StringIO()
    returned = await asyncio.wait_for(
        run_headless(node, io.StringIO("one\ntwo\n"), out, end_of_input_timeout_s=0.1),  # type: ignore[arg-type]
        10,
    )
    assert returned == 2 and node.left.is_set()
    errors = [line["message"] for line in _printed(out) if line["event"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("2 messages not committed before leaving")


def test_line_batches_refuse_invalid_utf8_and_overlong_lines_and_go_on() -> None:
    import os

    from raftchat.frontends.headless import UnreadableLine, _line_batches

    read_end, write_end = os.pipe()
    os.write(write_end, b"ok\n\xff\xfebad\n" + b"x" * 50 + b"\nafter\n\nlong tail " + b"y" * 40)
    os.close(write_end)
    try:
        batches = list(_line_batches(read_end, chunk_bytes=7, max_line_bytes=20))
    finally:
        os.close(read_end)
    lines = [line for batch in batches for line in batch]
    assert len(lines) == 6
    assert lines[0] == "ok" and lines[3] == "after" and lines[4] == ""
    assert isinstance(lines[1], UnreadableLine) and "UTF-8" in lines[1].reason
    assert isinstance(lines[2], UnreadableLine) and "longer than 20 bytes" in lines[2].reason
    assert isinstance(lines[5], UnreadableLine) and "longer than 20 bytes" in lines[5].reason


async def test_forget_needs_yes_in_the_same_line_and_refusals_are_line_errors() -> None:
    node = FakeChatNode(node_id="n1", nick="alice")
    node.set_members(
        [
            MemberInfo("n1", "alice", "voter", "self", None),
            MemberInfo("n2", "bob", "voter", "disconnected", None),
        ]
    )
    node.lose_quorum([("n2", "bob", 12)], needed=2, reachable=1)
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    assert not await _handle_line(node, "/forget bob", printer, number=1)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/forget alice --yes", printer, number=2)  # type: ignore[arg-type]
    assert not await _handle_line(node, "/forget --yes", printer, number=3)  # type: ignore[arg-type]
    assert node.status().voters == ("n1", "n2"), "nothing done yet"
    assert not await _handle_line(node, "/FORGET bob --yes", printer, number=4)  # type: ignore[arg-type]
    errors = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [error["line"] for error in errors] == [1, 2, 3]
    assert errors[0]["message"].startswith(
        "input line 1 not sent: /forget needs --yes: Only do this if bob's machine is really gone."
    )
    assert errors[0]["message"].endswith("type /forget bob --yes")
    assert errors[1]["message"] == "input line 2 not sent: You cannot forget yourself."
    assert "needs a name" in errors[2]["message"]
    assert node.forget_calls == [(("bob",), False), (("alice",), True), (("bob",), True)]
    assert node.status().voters == ("n1",) and node.status().quorum_problem is None
