"""Write SVG screenshots of the chat UI to screenshots/ (chat, stats pane, members pane).

Uses the fake node from the tests with a fixed, realistic conversation and
fixed clocks, so the pictures only change when the UI does.

    python scripts/make_screenshots.py [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_node import demo_app, play_demo_traffic  # noqa: E402
from support.clocks import ManualClock  # noqa: E402

logger = logging.getLogger(__name__)

SIZE = (120, 36)


async def shoot(name: str, out: Path, traffic: bool, **config: object) -> Path:
    clock = ManualClock()
    app = demo_app(clock, **config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        if traffic:
            await play_demo_traffic(pilot, clock)
            # Finish on the conversation rather than on the load-test lines.
            for nick, text in (
                ("carol", "load test done: 24 s, no message lost, same order everywhere"),
                ("bob", "alice: your pings committed in 30-62 ms"),
            ):
                app.node.receive(nick, text)
        app.chat_input.value = "sounds good, shipping it"
        await pilot.press("enter")  # stays pending: shows the "…" of an uncommitted message
        app.chat_input.value = "/me is "
        await pilot.pause()
        path = out / f"{name}.svg"
        path.write_text(app.export_screenshot(title=f"raftchat — {name}"))
    return path


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shots = [
        await shoot("chat", out, traffic=False, show_stats=False, show_members=False),
        await shoot("stats", out, traffic=True, show_stats=True, show_members=False),
        await shoot("members", out, traffic=False, show_stats=False, show_members=True),
    ]
    for path in shots:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    asyncio.run(main(parser.parse_args().out))
