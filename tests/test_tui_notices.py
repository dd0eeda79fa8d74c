"""Membership notices: folded into one line per burst by default, all, or none."""

from __future__ import annotations

from fake_node import FakeChatNode
from support.waiting import wait_until
from test_tui_app import SIZE, input_error, make_app, screen_lines, shows, type_line

from raftchat.node.api import ErrorEvent, NoticeEvent

T0 = 1_700_000_000.0


def membership_burst(node: FakeChatNode, start: float = T0) -> None:
    node.publish(NoticeEvent("join", "bob joined as learner", start, member="b0b"))
    node.publish(NoticeEvent("info", "bob is now a voter", start + 1, member="b0b"))
    node.publish(NoticeEvent("leader", "dave is the leader (term 3)", start + 2, member="d4e"))
    node.publish(
        NoticeEvent("leave", "carol was removed: not heard from for 31 s", start + 3, member="c4r")
    )


FOLDED = (
    "bob joined as learner, is now a voter \u00b7 dave is the leader (term 3)"
    " \u00b7 carol was removed: not heard from for 31 s"
)


async def test_a_burst_of_membership_notices_is_one_line_updated_in_place() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(200, 32)) as pilot:
        node.publish(NoticeEvent("join", "erin joined as learner", T0, member="e21"))
        await wait_until(lambda: shows(app.chat_log, "erin joined as learner"), pilot=pilot)
        assert len(app.chat_log.records) == 2  # the date line and the notice
        membership_burst(node, T0 + 1)
        await wait_until(lambda: shows(app.chat_log, "carol was removed"), pilot=pilot)
        notices = [r.text for r in app.chat_log.records if r.notice_kind]
        assert notices == ["erin joined as learner \u00b7 " + FOLDED], "one line, in place"
        assert len(app.chat_log.records) == 2


async def test_a_message_or_a_pause_ends_the_burst() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(200, 32)) as pilot:
        node.publish(NoticeEvent("join", "bob joined as learner", T0, member="b0b"))
        node.receive("bob", "hi all", ts=T0 + 1)
        node.publish(NoticeEvent("info", "bob is now a voter", T0 + 2, member="b0b"))
        node.publish(NoticeEvent("join", "erin joined as learner", T0 + 600, member="e21"))
        await wait_until(lambda: shows(app.chat_log, "erin joined"), pilot=pilot)
        notices = [r.text for r in app.chat_log.records if r.notice_kind]
        assert notices == ["bob joined as learner", "bob is now a voter", "erin joined as learner"]


async def test_notices_all_shows_each_on_its_own_line() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(200, 32)) as pilot:
        await type_line(pilot, "/set notices all")
        membership_burst(node)
        await wait_until(lambda: shows(app.chat_log, "carol was removed"), pilot=pilot)
        lines = screen_lines(app.chat_log)
        assert any(line.endswith("--> \u2502 bob joined as learner") for line in lines)
        assert any(
            line.endswith("<-- \u2502 carol was removed: not heard from for 31 s") for line in lines
        )
        assert not any("\u00b7" in line for line in lines)


async def test_notices_none_hides_membership_but_never_errors_or_warnings() -> None:
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(200, 32)) as pilot:
        await type_line(pilot, "/set notices none")
        membership_burst(node)
        node.publish(ErrorEvent("wrong passphrase from bob"))
        node.publish(NoticeEvent("info", "caught up from a snapshot", T0 + 5))
        node.publish(NoticeEvent("nick", "bob is now known as bobby", T0 + 6))
        node.lose_quorum([("b0b", "bob", 9)], needed=2, reachable=1)
        await wait_until(lambda: shows(app.chat_log, "bobby"), pilot=pilot)
        text = "\n".join(screen_lines(app.chat_log))
        assert "wrong passphrase from bob" in text and "caught up from a snapshot" in text
        assert "joined" not in text and "removed" not in text and "leader (term" not in text
        banner = str(app.query_one("#quorum-banner").render())
        assert "waiting for bob" in banner


async def test_set_refuses_what_it_does_not_know() -> None:
    app = make_app(FakeChatNode())
    async with app.run_test(size=SIZE) as pilot:
        await type_line(pilot, "/set notices loud")
        assert "all, smart or none" in input_error(app)
        await type_line(pilot, "/set colour red")
        assert "Unknown setting 'colour'" in input_error(app)
        assert app.notice_mode == "smart"


async def test_a_member_named_anew_in_a_burst_gets_a_part_of_its_own() -> None:
    """A leader notice can name a member by id before its nick is known; the join that
    follows names it by nick: two parts, not "user-0a63 is the leader, alice joined"."""
    node = FakeChatNode()
    app = make_app(node)
    async with app.run_test(size=(200, 32)) as pilot:
        node.publish(NoticeEvent("leader", "user-0a63 is the leader (term 2)", T0, "0a63f"))
        node.publish(NoticeEvent("join", "alice joined as voter", T0 + 1, member="0a63f"))
        await wait_until(lambda: shows(app.chat_log, "alice joined"), pilot=pilot)
        notices = [r.text for r in app.chat_log.records if r.notice_kind]
        assert notices == ["user-0a63 is the leader (term 2) \u00b7 alice joined as voter"]


async def test_the_notices_setting_chooses_the_mode_at_start() -> None:
    node = FakeChatNode()
    app = make_app(node, notices="all")
    async with app.run_test(size=(200, 32)) as pilot:
        membership_burst(node)
        await wait_until(lambda: shows(app.chat_log, "carol was removed"), pilot=pilot)
        notices = [r.text for r in app.chat_log.records if r.notice_kind]
        assert len(notices) == 4


async def test_set_notices_says_it_is_not_saved_and_what_would_keep_it(tmp_path) -> None:
    config_file = tmp_path / "config.toml"
    app = make_app(FakeChatNode(), config_file=config_file)
    async with app.run_test(size=(200, 32)) as pilot:
        await type_line(pilot, "/set notices none")
        assert app.notice_mode == "none"
        expected = f'not saved); to keep it, put notices = "none" in {config_file}'
        await wait_until(
            lambda: any(expected in record.text for record in app.chat_log.records), pilot=pilot
        )
    assert not config_file.exists()
