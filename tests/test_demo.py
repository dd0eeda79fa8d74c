"""`raftchat demo --headless`: peers form a cluster, greet, and the user's messages commit."""

from __future__ import annotations

import asyncio
import json
import sys


async def read_until(stream: asyncio.StreamReader, seen: list[dict], done, timeout: float) -> None:
    async def pump() -> None:
        while not done(seen):
            line = await stream.readline()
            if not line:
                raise AssertionError(f"demo ended early; events so far: {seen[-5:]}")
            seen.append(json.loads(line))

    await asyncio.wait_for(pump(), timeout)


async def test_demo_cluster_greets_and_commits_our_message(node_webrtc: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat",
        "demo",
        "--headless",
        "--quiet",
        "--peers",
        "2",
        "--nick",
        "tester",
        "--webrtc",
        node_webrtc,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    seen: list[dict] = []
    try:

        def greeted(events: list[dict]) -> bool:
            texts = {e["text"] for e in events if e["event"] == "message"}
            return {"hello, I'm alice", "hello, I'm bob"} <= texts

        await read_until(process.stdout, seen, greeted, timeout=90)
        process.stdin.write(b"hi from the demo user\n")
        await process.stdin.drain()

        def acked(events: list[dict]) -> bool:
            ours = [e for e in events if e["event"] == "message" and e["nick"] == "tester"]
            acks = {e["id"] for e in events if e["event"] == "ack"}
            return bool(ours) and ours[0]["id"] in acks

        def three_voters(events: list[dict]) -> bool:  # two peers and us, on the engine asked
            return any(
                e["event"] == "status" and len(e["voters"]) == 3 and e["webrtc"] == node_webrtc
                for e in events
            )

        await read_until(process.stdout, seen, lambda e: acked(e) and three_voters(e), 30)
        process.stdin.write(b"/quit\n")
        await process.stdin.drain()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
