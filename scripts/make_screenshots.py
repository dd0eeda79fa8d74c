"""Write SVG screenshots of the chat UI to screenshots/, taken from a real local cluster.

As ``raftchat demo`` does: a signaling server in this process on 127.0.0.1, peers as
headless ``raftchat join`` processes, and this process's own nodes (one per channel,
over real WebRTC DataChannels) shown by the real app, driven with Textual's Pilot.
The peers and the app exchange a short scripted conversation; times, node ids and
round-trip times are whatever the run measured, so the pictures differ a little
from one run to the next.

    python scripts/make_screenshots.py [--out screenshots]

Pictures: ``chat.svg`` (the chat), ``stats.svg`` (the node stats pane after some
traffic), ``members.svg`` (the members pane), ``channels.svg`` (two channels in one
window, with unread messages and a mention in the one not shown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from textual.pilot import Pilot

from raftchat.frontends.demo import DemoPeer
from raftchat.frontends.launch import JoinOptions, start_node
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import start_server
from raftchat.node import Node
from raftchat.tui.app import RaftChatApp, TuiConfig

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SIZE = (120, 34)
NICK = "alice"
CHANNELS = {"raft-lab": ("bob", "carol"), "ops": ("frank",)}
"""Each channel and the peers (processes) in it; this process joins each as NICK."""
TIMEOUT_S = 60.0


async def wait_for(pilot: Pilot, condition: Callable[[], object], what: str) -> None:
    """Let the app run until ``condition()`` holds (fails after TIMEOUT_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not condition():
        if loop.time() > deadline:
            raise SystemExit(f"make_screenshots: timed out waiting for {what}")
        await pilot.pause(0.05)


def shows(app: RaftChatApp, text: str) -> bool:
    return any(text in record.text for record in app.chat_log.records)


async def say(pilot: Pilot, peer: DemoPeer, text: str) -> None:
    peer.say(text)
    await wait_for(pilot, lambda: shows(pilot.app, text), f"{peer.nick}'s line {text!r}")


async def type_line(pilot: Pilot, text: str, *, commit: bool = True) -> None:
    app = pilot.app
    app.chat_input.value = text
    await pilot.press("enter")
    if commit:
        await wait_for(pilot, lambda: not app.chat_log.pending, f"{text!r} to commit")


def save(app: RaftChatApp, out: Path, name: str) -> Path:
    path = out / f"{name}.svg"
    path.write_text(app.export_screenshot(title=f"raftchat \u2014 {name}"))
    return path


async def drive(pilot: Pilot, peers: dict[str, DemoPeer], out: Path) -> list[Path]:
    app = pilot.app
    assert isinstance(app, RaftChatApp)
    lab, ops = app.views
    await wait_for(
        pilot,
        lambda: all(
            view.status is not None and view.status.leader and len(view.node.members()) > 1
            for view in app.views
        ),
        "every channel to have a leader and members",
    )
    await say(pilot, peers["bob"], "morning all! is the new build up?")
    await say(pilot, peers["carol"], "yes, deployed at 6. three voters now, the witness sits out")
    await type_line(pilot, "that's the point of raft :) every node has the same log")
    await say(pilot, peers["bob"], "alice: what's your commit latency?")
    for number in range(8):  # some traffic for the charts
        await type_line(pilot, f"ping {number + 1}")
        app.sample_rate()
    await say(pilot, peers["carol"], "try typing [bold]this[/bold]: shown literally, no markup")
    await type_line(pilot, "a few ms to commit through the leader, mostly the round trip")
    shots = [save(app, out, "chat")]
    await pilot.press("f2")
    await pilot.pause()
    shots.append(save(app, out, "stats"))
    await pilot.press("f2", "f3")
    await wait_for(
        pilot,
        lambda: all(
            member.rtt_ms is not None
            for member in lab.node.members()
            if member.link_state == "connected"
        ),
        "round-trip times of every link",
    )
    await pilot.pause(1.5)  # the members event with the latest round-trip times
    shots.append(save(app, out, "members"))
    await pilot.press("f3")
    peers["frank"].say("rolling out the signaling server on the new box")
    peers["frank"].say("alice: can you keep an eye on #raft-lab while it restarts?")
    await wait_for(pilot, lambda: app.unread.get(ops, (0, 0))[1] > 0, "the mention in #ops")
    await type_line(pilot, "/me watches the stats pane", commit=True)
    shots.append(save(app, out, "channels"))
    return shots


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = await start_server("127.0.0.1", 0, ServerConfig.one_machine())
    peers: dict[str, DemoPeer] = {}
    nodes: list[Node] = []
    with tempfile.TemporaryDirectory(prefix="raftchat-screenshots-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        try:
            config = root / "config.toml"
            config.write_text("")
            for channel, nicks in CHANNELS.items():
                for nick in nicks:
                    folder = root / nick
                    folder.mkdir()
                    peers[nick] = await DemoPeer.spawn(nick, channel, server.url, folder)
                    await asyncio.wait_for(peers[nick].leader_known.wait(), TIMEOUT_S)
            options = JoinOptions(channel="", server_url=server.url, nick=NICK, config_path=config)
            for channel in CHANNELS:
                node, _ = await start_node(
                    replace(options, channel=channel, data_dir=root / f"{NICK}-{channel}")
                )
                nodes.append(node)
            app = RaftChatApp(nodes, TuiConfig(cursor_blink=False, show_stats=False))
            async with app.run_test(size=SIZE) as pilot:
                shots = await drive(pilot, peers, out)
        finally:
            for node in nodes:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(node.leave(), 5)
                await node.stop()
            await asyncio.gather(*(peer.stop() for peer in peers.values()))
            await server.close()
    for path in shots:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(parser.parse_args().out))
