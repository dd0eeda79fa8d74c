"""Optional sampling profiles of node processes during a scenario, with py-spy.

py-spy is not a dependency: ``--profile DIR`` works when the ``py-spy`` command is
installed (``pip install py-spy``). Each profile is a py-spy "raw" file (collapsed
stacks: ``frame;frame;frame count`` per line, outermost first), which
speedscope.app and flamegraph tools read; :func:`top_functions` sums it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftchat.bench.errors import BenchError

logger = logging.getLogger(__name__)

SAMPLES_PER_S = 200
TOP_FUNCTIONS = 25


def py_spy_path() -> str:
    path = shutil.which("py-spy")
    if path is None:
        raise BenchError("--profile needs the py-spy command: pip install py-spy")
    return path


@dataclass
class Profile:
    """A py-spy recording of one process, stopped with SIGINT when the work is done."""

    label: str
    output: Path
    process: asyncio.subprocess.Process

    @classmethod
    async def start(cls, label: str, pid: int, output: Path) -> Profile:
        output.parent.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            py_spy_path(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(SAMPLES_PER_S),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(label, output, process)

    async def stop(self) -> dict[str, Any]:
        """Stop sampling; the file and the hottest functions."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if not self.output.exists():
            return {"file": None, "error": "py-spy wrote no profile (ptrace not permitted?)"}
        return {"file": str(self.output), **top_functions(self.output)}


def _function_name(frame: str) -> str:
    """``handle (raftchat/node/runtime.py:412)`` -> ``raftchat/node/runtime.py:handle``
    (no line number)."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{name}" if path else name


def top_functions(collapsed: Path, count: int = TOP_FUNCTIONS) -> dict[str, Any]:
    """Per function: share of samples where it is running (self) and on the stack (total)."""
    self_samples: Counter[str] = Counter()
    total_samples: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        weight = int(number)
        frames = [_function_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        samples += weight
        self_samples[frames[-1]] += weight
        for name in set(frames):
            total_samples[name] += weight

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [
            [name, round(100 * value / samples, 1)] for name, value in counter.most_common(count)
        ]

    return {
        "samples": samples,
        "top_self_percent": share(self_samples) if samples else [],
        "top_total_percent": share(total_samples) if samples else [],
    }
