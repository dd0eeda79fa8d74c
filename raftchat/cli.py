"""Command-line entry point: argument parsing only; the work lives in other modules."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from raftchat import __version__
from raftchat.frontends.commands import HEADLESS_COMMANDS
from raftchat.frontends.logs import configure_logging, log_file_path


def _log_level(verbose: bool, default: int) -> int:
    return logging.DEBUG if verbose else default


def _log_file_hint() -> str:
    """The file the chat UI logs to, for ``raftchat join --help``."""
    return str(log_file_path())


def _headless_commands() -> str:
    """The commands headless mode takes, for ``raftchat join --help``."""
    return ", ".join(command.usage for command in HEADLESS_COMMANDS.commands.values())


def _seconds(text: str) -> float:
    """A non-negative number of seconds, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` for ``serve --set``; the value is read as in config.toml (a number,
    ``true``, ``["a", "b"]``), else taken as a string."""
    import tomllib

    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: object = tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def _serve(args: argparse.Namespace) -> int:
    from raftchat.frontends.serve import ServeOptions, serve

    configure_logging(_log_level(args.verbose, logging.INFO))
    overrides: dict[str, object] = dict(args.set)
    overrides.update(host=args.host, port=args.port)
    options = ServeOptions(
        config_path=Path(args.config) if args.config else None,
        overrides=overrides,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        witness=not args.no_witness,
    )
    return serve(options)


def _join(args: argparse.Namespace) -> int:
    from raftchat.frontends.launch import JoinOptions, join

    # Without --headless the terminal belongs to the UI: logs go to a file.
    default_level = logging.WARNING if args.headless else logging.INFO
    configure_logging(_log_level(args.verbose, default_level), to_file=not args.headless)
    options = JoinOptions(
        channels=tuple(args.channels),
        server_url=args.server,
        nick=args.nick,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        config_path=Path(args.config) if args.config else None,
        headless=args.headless,
        ask_passphrase=args.passphrase,
        passphrase_file=Path(args.passphrase_file) if args.passphrase_file else None,
        ice_servers=tuple(args.ice_server),
        ice_username=args.ice_username,
        ice_credential=args.ice_credential,
        relay_only=args.relay_only,
        ice_host=args.ice_host,
        webrtc=args.webrtc,
        trust_server=args.trust_server,
        commit_timeout_s=args.commit_timeout,
    )
    return join(options)


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from raftchat.frontends.demo import DemoOptions, run_demo

    if not 1 <= args.peers <= 8:
        print("raftchat demo: --peers must be between 1 and 8", file=sys.stderr)
        return 2
    if args.headless:
        configure_logging(logging.WARNING)
    options = DemoOptions(
        peers=args.peers,
        nick=args.nick,
        headless=args.headless,
        chatter_interval_s=0.0 if args.quiet else DemoOptions.chatter_interval_s,
        webrtc=args.webrtc,
    )
    return asyncio.run(run_demo(options))


def _bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from raftchat.bench.options import BenchOptions, OptionsError, parse_only, quick_options
    from raftchat.bench.runner import run

    configure_logging(_log_level(args.verbose, logging.WARNING))
    given = {
        name: value
        for name in ("nodes", "messages", "trials", "members", "history")
        if (value := getattr(args, name)) is not None
    }
    if args.samples is not None:
        given["latency_samples"] = args.samples
    if args.webrtc is not None:
        given["webrtc"] = args.webrtc
    if args.compare:
        from raftchat.net.engines import wrtc_problem

        if args.webrtc is not None:
            print("raftchat bench: --compare runs both engines: no --webrtc", file=sys.stderr)
            return 2
        if (problem := wrtc_problem()) is not None:
            print(f"raftchat bench: --compare needs the wrtc engine: {problem}", file=sys.stderr)
            return 2
    if args.peer is not None:
        from raftchat.bench.pysyncobj_peer import PEER_SCENARIOS, pysyncobj_problem

        if args.compare or args.webrtc is not None:
            print(
                "raftchat bench: --peer runs PySyncObj alone: no --compare or --webrtc",
                file=sys.stderr,
            )
            return 2
        if (problem := pysyncobj_problem()) is not None:
            print(f"raftchat bench: --peer {args.peer}: {problem}", file=sys.stderr)
            return 2
        if args.only and not set(parse_only(args.only)) & set(PEER_SCENARIOS):
            print(
                f"raftchat bench: --peer {args.peer} measures {', '.join(PEER_SCENARIOS)} only",
                file=sys.stderr,
            )
            return 2
    try:
        base = quick_options() if args.quick else BenchOptions()
        options = replace(
            base,
            only=parse_only(args.only),
            keep_data=args.keep_data,
            profile_dir=Path(args.profile) if args.profile else None,
            debug_nodes=args.verbose,
            **given,
        )
    except OptionsError as error:
        print(f"raftchat bench: {error}", file=sys.stderr)
        return 2
    return run(options, as_json=args.json, compare=args.compare, peer=args.peer is not None)


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from raftchat.bench.options import SCENARIOS

    bench = sub.add_parser(
        "bench",
        help="measure throughput, latency, failover",
        description="Run local node processes over WebRTC on loopback and measure "
        "throughput, commit and delivery latency, failover, join/catch-up, scale and "
        "idle CPU. Progress goes to stderr, the table to stdout.",
    )
    bench.add_argument("--nodes", type=int, help="node processes in the main channel (3)")
    bench.add_argument("--messages", type=int, help="messages per throughput burst (5000)")
    bench.add_argument("--samples", type=int, help="messages timed one at a time (200)")
    bench.add_argument("--trials", type=int, help="leader-kill trials (5)")
    bench.add_argument("--history", type=int, help="messages a joining member catches up on")
    bench.add_argument("--members", type=int, help="members of the scale channel (10)")
    bench.add_argument(
        "--only", metavar="SCENARIO[,...]", help=f"run only these: {', '.join(SCENARIOS)}"
    )
    bench.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    bench.add_argument(
        "--webrtc",
        choices=("auto", "wrtc", "aiortc"),
        help="the nodes' WebRTC engine (default auto, as raftchat join)",
    )
    bench.add_argument(
        "--keep-data", action="store_true", help="keep node data dirs and logs (path printed)"
    )
    bench.add_argument(
        "--profile", metavar="DIR", help="py-spy profiles of leader and follower during throughput"
    )
    bench.add_argument(
        "--compare",
        action="store_true",
        help="run the scenarios on aiortc, then on wrtc (then throughput and latency on "
        "PySyncObj if installed), and show them side by side with the ratios",
    )
    bench.add_argument(
        "--peer",
        choices=("pysyncobj",),
        help="run throughput and latency on PySyncObj (a Python Raft over TCP) alone; "
        "--compare includes it when it is installed (pip install 'raftchat[bench]')",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    bench.add_argument(
        "-v", "--verbose", action="store_true", help="debug logs (nodes: with --keep-data)"
    )
    bench.set_defaults(handler=_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftchat",
        description="Terminal chat where every participant runs a Raft node; "
        "messages travel peer to peer over WebRTC DataChannels.",
    )
    parser.add_argument("--version", action="version", version=f"raftchat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run a signaling server",
        description="Run a signaling server. Its address and limits come from the [server] "
        "table of the config file, then from these flags (docs/configuration.md).",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument("--config", help="settings file (default: the user config dir)")
    serve.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a limit, as in the [server] table, e.g. --set max_connections=8192 (repeatable)",
    )
    serve.add_argument(
        "--data-dir",
        help="where the witness keeps its votes (default: the user data dir's 'witness')",
    )
    serve.add_argument(
        "--no-witness",
        action="store_true",
        help="hold no tie-breaking vote for the channels (two-member channels then cannot "
        "survive losing one)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    serve.set_defaults(handler=_serve)

    join = sub.add_parser(
        "join",
        help="join channels",
        description="Join chat channels. With --headless (one channel), stdin lines are messages "
        f"({_headless_commands()}) and stdout is one JSON object per line; logs go to "
        "stderr. Otherwise the chat UI runs and logs go to "
        f"{_log_file_hint()}.",
    )
    join.add_argument(
        "channels",
        metavar="CHANNEL",
        nargs="+",
        help="channel names (case-insensitive, shown in lower case); several run in one "
        "window, one WebSocket to the server; --headless takes exactly one",
    )
    join.add_argument("--server", help="signaling server URL")
    join.add_argument("--nick", help="nickname shown to others")
    join.add_argument("--data-dir", help="where this node keeps its log")
    join.add_argument("--headless", action="store_true", help="JSON lines on stdout, no TUI")
    join.add_argument("--config", help="settings file (default: the user config dir)")
    join.add_argument(
        "--commit-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="--headless: at end of input (or /quit), wait at most this long for the "
        "messages sent to commit before leaving; exit status 3 if some did not (default 30)",
    )
    join.add_argument(
        "--passphrase",
        action="store_true",
        help="private channel: passphrase from $RAFTCHAT_PASSPHRASE, else asked for",
    )
    join.add_argument("--passphrase-file", help="private channel: passphrase in this file")
    join.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN or TURN server, e.g. turn:turn.example.org:3478 (repeatable; none by default)",
    )
    join.add_argument("--ice-username", help="username for the TURN servers given")
    join.add_argument("--ice-credential", help="credential for the TURN servers given")
    join.add_argument("--relay-only", action="store_true", help="connect only through TURN relays")
    join.add_argument(
        "--trust-server",
        action="store_true",
        help="private channel: let the signaling server hold a tie-breaking vote, so two "
        "members survive losing one (a public channel always does)",
    )
    join.add_argument(
        "--ice-host",
        metavar="ADDR",
        help="gather ICE host candidates on this address only (default: loopback when the "
        "signaling server is on loopback, else all)",
    )
    join.add_argument(
        "--webrtc",
        choices=("auto", "wrtc", "aiortc"),
        help="WebRTC engine: wrtc (Chrome's libwebrtc, pip install raftchat[wrtc]), aiortc "
        "(pure Python), or auto, the best one installed (default)",
    )
    join.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging (stderr or the log file)"
    )
    join.set_defaults(handler=_join)

    demo = sub.add_parser(
        "demo", help="local demo cluster with the TUI", description="Start a local demo cluster."
    )
    demo.add_argument("--peers", type=int, default=2, help="number of local peers besides you")
    demo.add_argument("--nick", help="your nickname")
    demo.add_argument("--headless", action="store_true", help="JSON lines on stdout, no TUI")
    demo.add_argument("--quiet", action="store_true", help="the peers only say hello")
    demo.add_argument(
        "--webrtc",
        choices=("auto", "wrtc", "aiortc"),
        help="the WebRTC engine of every demo node (default auto, as raftchat join)",
    )
    demo.set_defaults(handler=_demo)

    _add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
