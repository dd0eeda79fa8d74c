"""One PySyncObj node for ``raftchat bench --peer pysyncobj``: a replicated log of chat
lines over PySyncObj's own TCP transport on 127.0.0.1, driven like a headless raftchat
node so both are measured the same way.

``python -m raftchat.bench.pysyncobj_node --port P --partners P1,P2 [--journal FILE]
[--no-batch]``. Each stdin line is a message (its first word the token); it is added
with a callback. Output lines, written by PySyncObj's tick thread and flushed once per
tick: ``state leader|follower|candidate``, ``ready``, ``applied TOKEN`` (every node,
when the entry is applied), ``ack TOKEN`` (the sender, when its own entry is applied),
``fail TOKEN REASON``. Stdin at its end stops the node.

With ``--journal FILE`` the log is PySyncObj's file journal, made durable the way
raftchat's storage is: new entries are synced to disk (``msync``) before a message that
carries or acknowledges entries leaves the node, so nothing is acknowledged or counted
toward a majority that is not on disk, and term and vote are fsync'd when they change.
PySyncObj 0.3.17 itself never syncs its journal (its writes reach the page cache only).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import journal as pso_journal
from pysyncobj import syncobj as pso_syncobj
from pysyncobj.transport import TCPTransport

LOOPBACK = "127.0.0.1"
MAX_LINE_BYTES = 8_192
"""Longer stdin lines are refused (the benchmark's messages are at most 4,000 bytes)."""
STATE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}


class Output:
    """Lines for stdout, collected by the tick thread and written once per tick."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def line(self, text: str) -> None:
        self._lines.append(text + "\n")

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            sys.stdout.write("".join(lines))
            sys.stdout.flush()


class DurableFileJournal(pso_journal.FileJournal):
    """PySyncObj's file journal, synced before anything that depends on it is sent."""

    def __init__(self, journal_file: str) -> None:
        super().__init__(journal_file)
        self.dirty = False

    def add(self, command: Any, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self.dirty = True

    def clear(self) -> None:
        super().clear()
        self.dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self.dirty = True

    def sync(self) -> None:
        if self.dirty:
            self.flush()  # mmap.flush: msync(MS_SYNC) of the journal's pages
            self.dirty = False


class DurableMetaStorer(pso_journal.MetaStorer):
    """Term and vote written with an fsync (PySyncObj only writes and renames)."""

    def storeMeta(self, meta: dict) -> None:
        path = self.getPath()
        with open(path + ".tmp", "wb") as file:
            file.write(pso_journal.dumps(meta))
            file.flush()
            os.fsync(file.fileno())
        os.replace(path + ".tmp", path)


DURABLE_JOURNALS: list[DurableFileJournal] = []


def _create_durable_journal(journal_file: str | None = None) -> pso_journal.Journal:
    if journal_file is None:
        return pso_journal.MemoryJournal()
    journal = DurableFileJournal(journal_file)
    DURABLE_JOURNALS.append(journal)
    return journal


SYNC_BEFORE = frozenset({"append_entries", "next_node_idx"})
"""Messages that carry entries or acknowledge them: the journal is synced before them.
(A leader counts itself in every majority, so its entries must be on disk before they
are sent; a follower's ``next_node_idx`` tells the leader what it has stored.)"""


class SyncingTransport(TCPTransport):
    """Syncs the journal before a message that depends on it: persist, then send."""

    def send(self, node: Any, message: Any) -> bool:
        if isinstance(message, dict) and message.get("type") in SYNC_BEFORE:
            for journal in DURABLE_JOURNALS:
                journal.sync()
        return super().send(node, message)


def make_durable() -> None:
    """Route PySyncObj's journal creation and meta writes through the durable versions."""
    pso_syncobj.createJournal = _create_durable_journal
    pso_journal.MetaStorer = DurableMetaStorer


class ChatLog(SyncObj):
    """The replicated state: how many lines, and how many bytes, were applied."""

    def __init__(self, port: int, partners: list[int], conf: SyncObjConf, output: Output):
        self._output = output
        super().__init__(
            f"{LOOPBACK}:{port}",
            [f"{LOOPBACK}:{partner}" for partner in partners],
            conf,
            transportClass=SyncingTransport,
        )
        self.lines = 0
        self.line_bytes = 0

    @replicated
    def add_line(self, text: str) -> int:
        self.lines += 1
        self.line_bytes += len(text)
        self._output.line(f"applied {text.split(' ', 1)[0]}")
        return self.lines


def _acknowledge(output: Output, token: str, result: Any, error: int) -> None:
    if error == FAIL_REASON.SUCCESS:
        output.line(f"ack {token}")
    else:
        output.line(f"fail {token} {error}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m raftchat.bench.pysyncobj_node")
    parser.add_argument("--port", type=int, required=True, help="this node's port on 127.0.0.1")
    parser.add_argument("--partners", required=True, help="the other nodes' ports, comma-separated")
    parser.add_argument("--journal", help="file journal (synced before sending); default: memory")
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="appendEntriesUseBatch=False: send each entry at once (PySyncObj's latency mode)",
    )
    args = parser.parse_args(argv)
    ports = [args.port, *(int(part) for part in args.partners.split(",") if part)]
    if not all(0 < port < 65536 for port in ports) or len(set(ports)) != len(ports):
        parser.error(f"ports must be distinct and between 1 and 65535, got {ports}")
    args.partner_ports = ports[1:]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Output()
    make_durable()
    conf = SyncObjConf(
        appendEntriesUseBatch=not args.no_batch,
        journalFile=args.journal,
        fullDumpFile=f"{args.journal}.dump" if args.journal else None,
        onStateChanged=lambda _old, new: output.line(f"state {STATE_NAMES.get(new, new)}"),
        onReady=lambda: output.line("ready"),
    )
    node = ChatLog(args.port, args.partner_ports, conf, output)
    node.addOnTickCallback(output.flush)
    try:
        for raw in sys.stdin.buffer:
            if len(raw) > MAX_LINE_BYTES:
                print(f"line of {len(raw)} bytes refused", file=sys.stderr)
                continue
            text = raw.decode("utf-8", "replace").rstrip("\n")
            if not text:
                continue
            token = text.split(" ", 1)[0]
            node.add_line(text, callback=functools.partial(_acknowledge, output, token))
    finally:
        node.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
