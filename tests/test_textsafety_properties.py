"""Nothing committed can crash a display (property-based).

Any member can get a command committed, so arbitrary entries (arbitrary bytes, and
well-formed commands with extreme fields: huge or negative times and serials, odd
Unicode, control characters, empty and longest strings) go through the chat state
machine, a snapshot and its restore, and every front end's way of showing them: the chat
view's lines and day separators, the members, stats and status panes, notices, and the
headless printer. Nothing raises; every JSON line is valid JSON on one line; rendered text
holds no control, line-breaking or reordering character.
"""

from __future__ import annotations

import io
import json
import unicodedata
from datetime import UTC, timedelta, timezone, tzinfo

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from raftchat.chat import ChatState, MessageApplied
from raftchat.frontends.headless import HeadlessPrinter
from raftchat.limits import MAX_MESSAGE_MS, MIN_MESSAGE_MS, nick_problem, text_problem
from raftchat.node.api import ChatMessageEvent, MemberInfo, NoticeEvent, StatusEvent
from raftchat.node.events import NodeView
from raftchat.raft.messages import Entry, EntryKind
from raftchat.tui.chat_lines import (
    LineLayout,
    LineStyles,
    make_day_separator,
    make_message,
    make_notice,
    render_record,
)
from raftchat.tui.widgets.members_pane import members_table
from raftchat.tui.widgets.stats_pane import status_table
from raftchat.tui.widgets.status_bar import status_line

CONSOLE = Console(width=70)
ZONES: tuple[tzinfo | None, ...] = (
    UTC,
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=14)),
    None,  # the machine's local time
)
_REORDERING = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def assert_display_safe(text: str, allowed: str = "") -> None:
    """No C0/C1 control (escape sequences start with one), no lone surrogate, no line or
    paragraph separator, no bidi override, isolate or mark."""
    for char in text:
        if char in allowed:
            continue
        category = unicodedata.category(char)
        assert category not in ("Cc", "Cs", "Zl", "Zp"), f"U+{ord(char):04X} in {text!r}"
        assert ord(char) not in _REORDERING, f"U+{ord(char):04X} in {text!r}"


# --- what a member can get committed ----------------------------------------------------------

odd_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=24),
    st.sampled_from(
        [
            "",
            " ",
            "#",
            "\x1b[2J\x1b]0;pwned\x07",
            "\x9b31m",
            "\u202eevil\u2066",
            "\u2028\u2029\r\n\t",
            "[bold red]loud[/]",
            "\u3164",
            "\u2800",
            "a\u200bb",
            "\ufe0f",
            "\u0430lice",
            "alice",
            "a" * 32,
            "\u4e2d" * 32,
            "\U0001f30a" * 33,
            "x" * 4_000,
            "\u00e9" * 4_000,
            "\U0001f30a" * 4_000,
            "y" * 4_001,
        ]
    ),
)
"""Nicks and texts: anything encodable (msgpack cannot carry a lone surrogate; arbitrary
bytes cover undecodable UTF-8), with the classic tricks and the longest strings."""

extreme_int = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(
        [
            0,
            1,
            -1,
            2**63 - 1,
            2**63,
            2**64 - 1,
            -(2**63),
            MIN_MESSAGE_MS - 1,
            MIN_MESSAGE_MS,
            MAX_MESSAGE_MS,
            MAX_MESSAGE_MS + 1,
            1_700_000_000_000,
        ]
    ),
)
"""Every integer msgpack can carry, weighted towards the edges."""

any_field = st.one_of(
    extreme_int,
    odd_text,
    st.booleans(),
    st.none(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
)
acceptable_nicks = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=32,
).filter(lambda nick: nick_problem(nick) is None)
"""Nicks every member accepts: any script, marks, symbols, emoji, lookalikes."""
acceptable_texts = st.text(
    st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n"), min_size=1
).filter(lambda text: text_problem(text) is None)
"""Texts every member accepts: bidi controls, zero-width and format characters, emoji,
wide characters, combining marks, line and paragraph separators."""
times = st.one_of(st.integers(MIN_MESSAGE_MS, MAX_MESSAGE_MS), extreme_int)
client_ids = st.sampled_from(
    ["n1", "n2", "3f2a91", "c0ffee", "me-node"] * 3 + ["", "x y", "x" * 65]
)
cluster_ids = st.sampled_from(["0b" * 16, "c1", "", "not a cluster!"])


@st.composite
def command_data(draw: st.DrawFn) -> bytes:
    """Encoded commands: two in three acceptable (with the oddest content the rules allow),
    the others well-formed shapes (each version and tag) with extreme fields, sometimes the
    wrong number or type of fields, sometimes arbitrary bytes."""
    if draw(st.integers(0, 2)) > 0:
        if draw(st.booleans()):
            nick, text = draw(acceptable_nicks), draw(acceptable_texts)
            ts = draw(st.integers(MIN_MESSAGE_MS, MAX_MESSAGE_MS))
            return msgpack.packb([2, 0, 0, nick, text, ts, draw(st.booleans())])
        return msgpack.packb([2, 0, 1, draw(acceptable_nicks)])
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    tag = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 3, 4, 9]))
    nick, text = draw(st.one_of(acceptable_nicks, odd_text)), draw(odd_text)
    fields: list[object] = {
        0: [nick, text, draw(times), draw(st.booleans())],
        1: [nick],
        2: [],
        3: [
            draw(cluster_ids),
            draw(client_ids),
            draw(st.one_of(st.integers(1, 9), extreme_int)),
            nick,
            text,
            draw(times),
            draw(st.booleans()),
        ],
        4: [draw(cluster_ids)],
        9: [],
    }[tag]
    if draw(st.integers(0, 7)) == 0:  # a field of another type, or one too many
        fields = [*fields, draw(any_field)] if not fields or draw(st.booleans()) else fields
        fields[draw(st.integers(0, len(fields) - 1))] = draw(any_field)
    version = draw(st.sampled_from([1, 2, 2, 2, 2, 2, 3]))
    prev_serial = draw(st.sampled_from([0, 0, 0, 1, -1, 2**64 - 1]))
    header: list[object] = [1, tag] if version == 1 else [version, prev_serial, tag]
    return msgpack.packb([*header, *fields], use_bin_type=True)


@st.composite
def serials(draw: st.DrawFn) -> tuple[str, int]:
    """Mostly the client's next serial (or a retry, or a gap), sometimes any integer at all."""
    if draw(st.integers(0, 9)) == 0:
        return ("exactly", draw(extreme_int))
    return ("step", draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 0, -1])))


entries = st.tuples(
    command_data(),
    client_ids,
    serials(),
    st.sampled_from([EntryKind.NORMAL] * 8 + [EntryKind.NOOP, EntryKind.CONFIG]),
    st.lists(client_ids, max_size=3),
)


# --- every way of showing it -------------------------------------------------------------------


class Screens:
    """Every front end's rendering of what the node publishes, checked as it goes."""

    def __init__(self, zone: tzinfo | None) -> None:
        self.zone = zone
        self.out = io.StringIO()
        self.printer = HeadlessPrinter(self.out)
        self.printed = 0

    def message(self, event: ChatMessageEvent) -> None:
        record = make_message(
            ts=event.ts, nick=event.nick, text=event.text, tz=self.zone, action=event.action
        )
        self.lines([record, make_day_separator(record.ts, self.zone)])
        self.printer.print_event(event)
        self.printed += 1

    def notice(self, notice: NoticeEvent) -> None:
        self.lines([make_notice(ts=notice.ts, text=notice.text, kind=notice.kind, tz=self.zone)])
        self.printer.print_event(notice)  # prints nothing

    def lines(self, records: list) -> None:
        for record in records:
            for width in (20, 70):
                strips = render_record(record, width, LineLayout(), LineStyles(), CONSOLE)
                assert strips
                for strip in strips:
                    assert strip.cell_length == width
                    assert_display_safe(strip.text)

    def panes(self, state: ChatState, view: NodeView) -> None:
        nicks = state.nicks()
        members = tuple(
            MemberInfo(client, nick, "voter", "connected", 1.5) for client, nick in nicks.items()
        )
        status = StatusEvent(
            node_id="me-node",
            state="follower",
            term=2**64 - 1,
            leader=next(iter(nicks), None),
            voters=tuple(nicks),
            learners=(),
            commit_index=state.last_applied_index,
            applied_index=state.last_applied_index,
            last_index=state.last_applied_index,
            snapshot_index=0,
            election_timeout_ms=300.0,
            signaling_state="connected",
        )
        leader_nick = view.name(state, status.leader) if status.leader else None
        rendered = io.StringIO()
        console = Console(file=rendered, width=60, color_system=None, force_terminal=False)
        console.print(members_table(members))
        console.print(status_table(status, leader_nick))
        console.print(status_line("lobby", view.nick, status, leader_nick))
        assert_display_safe(rendered.getvalue(), allowed="\n")

    def json_lines(self) -> list[dict]:
        lines = self.out.getvalue().splitlines()
        assert len(lines) == self.printed  # one line per message: no line break inside
        parsed = [json.loads(line) for line in lines]
        for line in parsed:
            assert MIN_MESSAGE_MS / 1000 <= line["ts"] <= MAX_MESSAGE_MS / 1000
        return parsed


def apply_all(state: ChatState, view: NodeView, screens: Screens, specs: list) -> None:
    last: dict[str, int] = {}
    for index, (data, client_id, (how, number), kind, members) in enumerate(specs, start=1):
        serial = number if how == "exactly" else last.get(client_id, 0) + number
        last[client_id] = max(last.get(client_id, 0), serial)
        entry = Entry(index, 1, kind, data, client_id, serial)
        events = state.apply(entry)
        if kind is EntryKind.CONFIG:
            voters = [member for member in members if member]
            events += state.apply_membership(index, voters, [])
        for event in events:
            if isinstance(event, MessageApplied):
                screens.message(view.message_event(state, event))
            for notice in view.notices_for(state, event, now=1_700_000_000.0 + index):
                screens.notice(notice)
        for notice in view.due_notices(state, now=1e300):
            screens.notice(notice)


@settings(
    max_examples=120,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(entries, max_size=20), st.sampled_from(ZONES))
def test_any_committed_entries_are_applied_and_shown_without_harm(
    specs: list, zone: tzinfo | None
) -> None:
    state = ChatState(history_limit=8)
    view = NodeView("me-node", "me", nick_wait_s=0.0)
    screens = Screens(zone)
    apply_all(state, view, screens, specs)
    screens.panes(state, view)
    for line in screens.json_lines():
        assert line["event"] == "message"

    # A member that joins later gets the state as a snapshot, and shows its history.
    restored = ChatState.restore(state.snapshot(), history_limit=8)
    assert restored.snapshot() == state.snapshot()
    later = Screens(zone)
    for message in restored.history():
        later.message(view.message_event(restored, message))
    later.panes(restored, view)
    assert len(later.json_lines()) == len(restored.history())


stored_ts = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1), extreme_int.filter(lambda t: 0 <= t < 2**63)
)
stored_nick = st.one_of(
    st.sampled_from(["ada", "a\u3164", "\u3164", "\u2800", "\ufe0f", "\u0430da", "a" * 32]),
    st.text(
        st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zs", "Zl", "Zp")),
        min_size=1,
        max_size=32,
    ).filter(lambda nick: "#" not in nick and nick.isprintable()),
)


@settings(max_examples=100, deadline=None, print_blob=True)
@given(st.lists(st.tuples(stored_nick, stored_ts), min_size=1, max_size=6), st.sampled_from(ZONES))
def test_a_snapshot_from_before_the_rules_loads_and_shows(
    records: list[tuple[str, int]], zone: tzinfo | None
) -> None:
    """What an earlier release may have written: any time a 64-bit integer holds, nicks
    with invisible characters."""
    history = [
        [index, f"c{index % 3}", index, nick, f"m{index}", ts, False, False]
        for index, (nick, ts) in enumerate(records, start=1)
    ]
    sessions = [[f"c{n}", records[0][0], [[len(records) + n, len(records)]]] for n in range(3)]
    snapshot = msgpack.packb(
        [2, len(records), 0, 0, [], [], sessions, history, []], use_bin_type=True
    )
    state = ChatState.restore(snapshot)
    view = NodeView("me-node", "me")
    screens = Screens(zone)
    for message in state.history():
        screens.message(view.message_event(state, message))
    screens.panes(state, view)
    assert len(screens.json_lines()) == len(records)
