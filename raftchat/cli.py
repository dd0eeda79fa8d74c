"""Command-line entry point: argument parsing only; the work lives in other modules."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from raftchat import __version__

DEFAULT_SERVER_HOST = "127.0.0.1"
DEFAULT_SERVER_PORT = 8765

Handler = Callable[[argparse.Namespace], int]


def _not_available(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"raftchat {name}: not available yet", file=sys.stderr)
        return 2

    return handler


def _configure_logging(verbose: bool, default: int = logging.INFO) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else default,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve(args: argparse.Namespace) -> int:
    from raftchat.net.signaling_server import run_server

    _configure_logging(args.verbose)

    try:
        run_server(args.host, args.port)
    except OSError as exc:
        print(f"raftchat serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _join(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from raftchat.launch import JoinOptions, run_join

    if args.headless or args.verbose:
        _configure_logging(args.verbose, default=logging.WARNING)
    options = JoinOptions(
        channel=args.channel,
        server_url=args.server,
        nick=args.nick,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        config_path=Path(args.config) if args.config else None,
        headless=args.headless,
    )
    return asyncio.run(run_join(options))


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from raftchat.demo import DemoOptions, run_demo

    if not 1 <= args.peers <= 8:
        print("raftchat demo: --peers must be between 1 and 8", file=sys.stderr)
        return 2
    if args.headless:
        _configure_logging(False, default=logging.WARNING)
    options = DemoOptions(
        peers=args.peers,
        nick=args.nick,
        headless=args.headless,
        chatter_interval_s=0.0 if args.quiet else DemoOptions.chatter_interval_s,
    )
    return asyncio.run(run_demo(options))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftchat",
        description="Terminal chat where every participant runs a Raft node; "
        "messages travel peer to peer over WebRTC DataChannels.",
    )
    parser.add_argument("--version", action="version", version=f"raftchat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve", help="run a signaling server", description="Run a signaling server."
    )
    serve.add_argument("--host", default=DEFAULT_SERVER_HOST, help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_SERVER_PORT, help="port to listen on")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    serve.set_defaults(handler=_serve)

    join = sub.add_parser("join", help="join a channel", description="Join a chat channel.")
    join.add_argument("channel", metavar="CHANNEL", help="channel name")
    join.add_argument("--server", help="signaling server URL")
    join.add_argument("--nick", help="nickname shown to others")
    join.add_argument("--data-dir", help="where this node keeps its log")
    join.add_argument("--headless", action="store_true", help="JSON lines on stdout, no TUI")
    join.add_argument("--config", help="settings file (default: the user config dir)")
    join.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    join.set_defaults(handler=_join)

    demo = sub.add_parser(
        "demo", help="local demo cluster with the TUI", description="Start a local demo cluster."
    )
    demo.add_argument("--peers", type=int, default=2, help="number of local peers besides you")
    demo.add_argument("--nick", help="your nickname")
    demo.add_argument("--headless", action="store_true", help="JSON lines on stdout, no TUI")
    demo.add_argument("--quiet", action="store_true", help="the peers only say hello")
    demo.set_defaults(handler=_demo)

    bench = sub.add_parser(
        "bench", help="measure throughput, latency, failover", description="Run the benchmark."
    )
    bench.add_argument("--nodes", type=int, default=3, help="number of node processes")
    bench.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    bench.set_defaults(handler=_not_available("bench"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
