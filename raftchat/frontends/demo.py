"""``raftchat demo``: a working local cluster in one command.

Starts a signaling server in this process, a few peer nodes as headless
``raftchat join`` processes (each with its own data dir in a temporary folder),
waits until they have formed a cluster, then joins the same channel with the
TUI (or headless with ``--headless``). The peers greet and chat now and then,
so the stats pane has something to show. Everything lives on loopback and is
removed when the demo ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from raftchat.frontends.launch import JoinOptions, run_join
from raftchat.frontends.node_process import headless_join_command, spawn_headless_node
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import RunningServer, start_server

logger = logging.getLogger(__name__)

PEER_NICKS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
CHATTER = (
    "hi all",
    "is everyone seeing the same order?",
    "same log here",
    "who is the leader now?",
    "the stats pane shows the AppendEntries going by",
    "try /members to see who votes",
    "learners get every message but don't vote",
    "kill a peer and watch a new leader take over",
    "this travels over WebRTC DataChannels, not through the server",
)


@dataclass(frozen=True)
class DemoOptions:
    peers: int = 2
    nick: str | None = None
    headless: bool = False
    chatter_interval_s: float = 12.0
    """Mean pause between lines from the peers; 0 keeps them quiet."""
    cluster_timeout_s: float = 60.0
    webrtc: str | None = None
    """The WebRTC engine of every demo node (``auto``, ``wrtc``, ``aiortc``); None: auto."""


class DemoPeer:
    """One headless peer process of the demo."""

    def __init__(self, nick: str, process: asyncio.subprocess.Process) -> None:
        self.nick = nick
        self.process = process
        self.leader_known = asyncio.Event()
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def spawn(
        cls, nick: str, channel: str, server_url: str, folder: Path, webrtc: str | None = None
    ) -> DemoPeer:
        config = folder / "config.toml"
        config.write_text("")  # the demo's own settings, not the user's
        process = await spawn_headless_node(
            headless_join_command(
                channel,
                data_dir=folder / "data",
                config_path=config,
                nick=nick,
                server_url=server_url,
                extra_args=("--webrtc", webrtc) if webrtc else (),
            )
        )
        return cls(nick, process)

    async def _read_events(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "status" and event.get("leader"):
                    self.leader_known.set()

    def say(self, text: str) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(text.encode() + b"\n")

    async def stop(self, timeout: float = 5.0) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            with contextlib.suppress(ConnectionError):
                self.process.stdin.write(b"/quit\n")
                await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        self._reader.cancel()


async def _start_peers(
    options: DemoOptions, channel: str, server: RunningServer, root: Path
) -> list[DemoPeer]:
    peers: list[DemoPeer] = []
    for number in range(options.peers):
        nick = PEER_NICKS[number % len(PEER_NICKS)] + (
            "" if number < len(PEER_NICKS) else str(number)
        )
        folder = root / nick
        folder.mkdir()
        peer = await DemoPeer.spawn(nick, channel, server.url, folder, options.webrtc)
        peers.append(peer)
        if number == 0:  # the first one founds the channel; the rest join it
            await asyncio.wait_for(peer.leader_known.wait(), options.cluster_timeout_s)
    await asyncio.wait_for(
        asyncio.gather(*(peer.leader_known.wait() for peer in peers)), options.cluster_timeout_s
    )
    return peers


async def _chatter(peers: list[DemoPeer], interval: float, rng: random.Random) -> None:
    for peer in peers:
        peer.say(f"hello, I'm {peer.nick}")
    while interval > 0:
        await asyncio.sleep(rng.expovariate(1 / interval))
        rng.choice(peers).say(rng.choice(CHATTER))


async def run_demo(options: DemoOptions) -> int:
    """The whole demo; returns the exit status."""
    channel = f"demo-{secrets.token_hex(3)}"
    server = await start_server("127.0.0.1", 0, ServerConfig.one_machine())
    peers: list[DemoPeer] = []
    chatter: asyncio.Task[None] | None = None
    with tempfile.TemporaryDirectory(prefix="raftchat-demo-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        try:
            print(
                f"raftchat demo: starting {options.peers} peers in channel {channel}",
                file=sys.stderr,
            )
            try:
                peers = await _start_peers(options, channel, server, root)
            except TimeoutError:
                print("raftchat demo: the peers did not form a cluster in time", file=sys.stderr)
                return 1
            chatter = asyncio.create_task(
                _chatter(peers, options.chatter_interval_s, random.Random())
            )
            config = root / "config.toml"
            config.write_text("")
            return await run_join(
                JoinOptions(
                    channels=(channel,),
                    server_url=server.url,
                    nick=options.nick,
                    data_dir=root / "you",
                    config_path=config,
                    headless=options.headless,
                    webrtc=options.webrtc,
                )
            )
        finally:
            if chatter is not None:
                chatter.cancel()
            await asyncio.gather(*(peer.stop() for peer in peers))
            await server.close()
