"""Runs the chosen scenarios against local node processes and prints the result.

A signaling server runs inside the benchmark process on a free loopback port; every
node is a ``raftchat join --headless`` child process with its own temporary data dir.
Whatever happens (a failed scenario, Ctrl-C, SIGTERM), every child is killed and the
temporary directory removed before :func:`run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from raftchat.bench.compare import format_comparison, format_peer, run_comparison
from raftchat.bench.errors import BenchError
from raftchat.bench.options import BenchOptions
from raftchat.bench.pysyncobj_peer import PEER_SCENARIOS, pysyncobj_problem, run_peer
from raftchat.bench.report import build_result, format_table
from raftchat.bench.scenarios import SCENARIO_FUNCTIONS, BenchContext
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.server import start_server

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ProgressPrinter:
    """``[  12.3 s] what is happening`` lines on stderr."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = time.perf_counter()

    def __call__(self, text: str) -> None:
        elapsed = time.perf_counter() - self._started
        self._stream.write(f"[{elapsed:6.1f} s] {text}\n")
        self._stream.flush()


async def run_bench(options: BenchOptions, progress: ProgressPrinter) -> dict[str, Any]:
    """Every selected scenario in order; a failing one is recorded and the rest still run."""
    started = time.perf_counter()
    server = await start_server(LOOPBACK, 0, ServerConfig.one_machine())
    root = Path(tempfile.mkdtemp(prefix="raftchat-bench-"))
    ctx = BenchContext(server.url, root, options, progress)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        for name in options.only:
            try:
                results.update(await SCENARIO_FUNCTIONS[name](ctx))
            except BenchError as error:
                errors[name] = str(error)
                progress(f"{name} FAILED: {error}")
                if ctx.main is not None:  # a broken main channel must not spoil the next one
                    await ctx.main.close()
                    ctx.main = None
    finally:
        progress("stopping every node")
        await asyncio.gather(*(cluster.close() for cluster in ctx.clusters))
        await server.close()
        if options.keep_data:
            progress(f"node data dirs and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    engines = set().union(*(cluster.engines() for cluster in ctx.clusters))
    results["webrtc"] = ",".join(sorted(engines)) or None
    return build_result(results, options.as_params(), errors, time.perf_counter() - started)


async def _run_cancellable(
    options: BenchOptions, progress: ProgressPrinter, compare: bool, peer: bool
) -> dict[str, Any]:
    """SIGTERM cancels the run like Ctrl-C does, so the cleanup in run_bench happens."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    if peer:
        return await run_peer(options, progress)
    if compare:
        missing = pysyncobj_problem()
        if missing is None and not set(options.only) & set(PEER_SCENARIOS):
            missing = f"it measures {', '.join(PEER_SCENARIOS)} only"
        with_peer = run_peer if missing is None else None
        return await run_comparison(options, progress, run_bench, with_peer, missing)
    return await run_bench(options, progress)


def run(
    options: BenchOptions,
    as_json: bool,
    out: TextIO | None = None,
    compare: bool = False,
    peer: bool = False,
) -> int:
    """``raftchat bench``: exit status 0 when every scenario ran, 1 otherwise, 130 on
    Ctrl-C. The table (and with ``as_json`` one JSON line, last) goes to ``out``. With
    ``compare``, the scenarios run on each engine (and on PySyncObj when it is installed)
    and the table sets them side by side (:mod:`raftchat.bench.compare`); with ``peer``,
    only PySyncObj runs (:mod:`raftchat.bench.pysyncobj_peer`)."""
    out = out or sys.stdout
    progress = ProgressPrinter(sys.stderr)
    try:
        result = asyncio.run(_run_cancellable(options, progress, compare, peer))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; every node was stopped")
        return 130
    if peer:
        table = format_peer(result)
    else:
        table = format_comparison(result) if compare else format_table(result)
    out.write(table + "\n")
    if as_json:
        out.write(json.dumps(result, separators=(",", ":")) + "\n")
    out.flush()
    return 1 if result["errors"] else 0
