"""One client WebSocket on the signaling server: its outbound queue, bounded in bytes, its
liveness timer (a joined session in time, then idle) and its rate gate.

A WebSocket carries sessions (``session``): one, implied, on a channel's own socket, or
any number up to ``max_sessions_per_connection`` on a shared one.

Frames for a peer are queued without waiting and written by the connection's own task, so
a peer that does not read never blocks the peers that send to it. The queue is bounded in
bytes, per connection (``send_queue_bytes``) and over all connections
(``max_queued_bytes_total``, enforced by :class:`QueueBudget`): a peer that does not read
is disconnected with ``slow_consumer`` and its queue dropped, never buffered further.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from enum import Enum
from typing import Any

from aiohttp import WSCloseCode, web

from raftchat.net.rate_limit import TokenBucket
from raftchat.net.signaling.addresses import AddressUsage
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.metrics import Metrics
from raftchat.net.signaling.protocol import ErrorCode, encode_error

logger = logging.getLogger(__name__)


def _size(text: str) -> int:
    """UTF-8 size of a frame (frames are nearly always ASCII: no copy then)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))


class QueueBudget:
    """Bytes queued over all connections; past the limit the longest queue is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._holders: set[Connection] = set()

    def changed(self, conn: Connection, delta: int) -> None:
        self.total += delta
        if conn.queued_bytes > 0:
            self._holders.add(conn)
        else:
            self._holders.discard(conn)

    def enforce(self) -> None:
        while self.total > self.limit and self._holders:
            victim = max(self._holders, key=lambda conn: conn.queued_bytes)
            if victim.closing:
                self._holders.discard(victim)
                continue
            logger.warning(
                "closing slow peer %s: %d bytes unread while the server holds %d",
                victim.describe(),
                victim.queued_bytes,
                self.total,
            )
            victim.slow_consumer("the server's queues are full and yours is the longest")


class RateVerdict(Enum):
    PASS = "pass"
    LIMITED = "limited"  # drop the frame, answer rate_limited
    FLOODING = "flooding"  # limited too often: close what it came for


class RateGate:
    """Frames per second for one sender (a socket or a session), with bursts; a sender
    limited too often in a row is flooding."""

    def __init__(self, config: ServerConfig, now: float, scale: int = 1) -> None:
        self.rate = TokenBucket(
            config.messages_per_second * scale, config.burst_messages * scale, now
        )
        self.violations = TokenBucket(
            config.rate_violations_forgiven_per_second, config.max_rate_violations, now
        )

    def check(self, now: float) -> RateVerdict:
        if self.rate.take(now):
            return RateVerdict.PASS
        return RateVerdict.LIMITED if self.violations.take(now) else RateVerdict.FLOODING


class Connection:
    """One WebSocket: queue, writer task, liveness timer and rate gate."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        config: ServerConfig,
        now: float,
        *,
        usage: AddressUsage | None = None,
        metrics: Metrics | None = None,
        budget: QueueBudget | None = None,
    ) -> None:
        self.ws = ws
        self.remote = request.remote or "?"
        self._transport = request.transport
        self.config = config
        self.usage = usage
        "The client address's share of the server (None only in unit tests)."
        self.metrics = metrics
        self.budget = budget or QueueBudget(config.max_queued_bytes_total)
        self.shared = False
        "A shared socket (sessions tagged with their channel), not a channel's own."
        self.sessions: dict[str, Any] = {}
        "Its sessions by channel (:class:`raftchat.net.signaling.session.Session`)."
        self.joined_sessions = 0
        "Sessions whose hello was accepted and that have not ended."
        self.gate = RateGate(config, now)
        """Frames of the socket itself (on a channel's own socket: all of them; on a shared
        one: those of no session, such as ``open``, ``keepalive`` or a broken frame)."""
        self.ceiling = RateGate(config, now, config.max_sessions_per_connection)
        """A shared socket's frames of all sessions together, checked before parsing."""
        self.closing = False
        self._close_code = WSCloseCode.OK
        self._queue: deque[str | None] = deque()
        self.queued_bytes = 0
        "Bytes of frames waiting to be written to this peer."
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop())
        self._watchdog: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self.connected_at = loop.time()
        self.last_heard = self.connected_at
        "When the client last sent a frame (loop time)."
        self.unjoined_since = self.connected_at
        "Since when no session of this socket is joined (loop time)."
        self._liveness: asyncio.TimerHandle | None = loop.call_at(
            self.connected_at + config.hello_timeout, self._check_liveness
        )

    def describe(self) -> str:
        sessions = ",".join(
            f"{channel}:{session.peer_id or '?'}" for channel, session in self.sessions.items()
        )
        return f"{self.remote} sessions={sessions or '-'}"

    # --- sending --------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Queue a frame without waiting; a peer too slow to read is disconnected."""
        if self.closing:
            return
        size = _size(text)
        if self.queued_bytes + size > self.config.send_queue_bytes:
            logger.warning(
                "closing slow peer %s: %d bytes unread", self.describe(), self.queued_bytes
            )
            self.slow_consumer(f"more than {self.config.send_queue_bytes} bytes unread")
            return
        self._push(text, size)
        self.budget.enforce()

    def _push(self, text: str | None, size: int = 0) -> None:
        self._queue.append(text)
        if size:
            self.queued_bytes += size
            self.budget.changed(self, size)
        self._wakeup.set()

    def _drop_queue(self) -> None:
        self._queue.clear()
        if self.queued_bytes:
            dropped, self.queued_bytes = self.queued_bytes, 0
            self.budget.changed(self, -dropped)

    def error(self, code: ErrorCode, message: str, *, channel: str | None = None) -> None:
        """A non-fatal error frame (tagged with ``channel`` if about that session)."""
        if self.metrics is not None and not self.closing:
            self.metrics.inc("errors_total", code)
        self.send(encode_error(code, message, channel=channel))

    def slow_consumer(self, why: str) -> None:
        """Drop what this peer did not read, tell it why and close it."""
        self._drop_queue()
        self.fail(ErrorCode.SLOW_CONSUMER, f"{why}; disconnected")

    def fail(self, code: ErrorCode, message: str) -> None:
        """Send a fatal error frame, then close the socket once it is written."""
        if self.closing:
            return
        if self.metrics is not None:
            self.metrics.inc("errors_total", code)
        text = encode_error(code, message)
        self._push(text, _size(text))
        closing_code = (
            WSCloseCode.GOING_AWAY
            if code == ErrorCode.SHUTTING_DOWN
            else WSCloseCode.POLICY_VIOLATION
        )
        self._begin_close(closing_code)

    # --- liveness -------------------------------------------------------------------------

    def heard(self) -> None:
        """The client sent a frame: it is alive (pings do not count)."""
        self.last_heard = asyncio.get_running_loop().time()

    def joined(self) -> None:
        """A session's hello was accepted: from now on the socket must not stay silent for
        idle_timeout."""
        self.joined_sessions += 1
        self.heard()
        self._schedule_liveness(self.last_heard + self.config.idle_timeout)

    def session_ended(self, was_joined: bool) -> None:
        """A session ended; with none joined left, the socket has hello_timeout to join
        one again (a shared socket cannot idle along without a channel)."""
        if not was_joined:
            return
        self.joined_sessions -= 1
        if self.joined_sessions == 0 and not self.closing:
            self.unjoined_since = asyncio.get_running_loop().time()
            self._schedule_liveness(self.unjoined_since + self.config.hello_timeout)

    def _schedule_liveness(self, due: float) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
        self._liveness = asyncio.get_running_loop().call_at(due, self._check_liveness)

    def _check_liveness(self) -> None:
        self._liveness = None
        if self.closing:
            return
        now = asyncio.get_running_loop().time()
        if self.joined_sessions == 0:
            due = self.unjoined_since + self.config.hello_timeout
            if now >= due:
                logger.info("no hello from %s in time", self.describe())
                self.fail(
                    ErrorCode.HELLO_TIMEOUT,
                    f"no hello within {self.config.hello_timeout:g} s of connecting (or of "
                    "leaving the last channel)",
                )
                return
        else:
            due = self.last_heard + self.config.idle_timeout
            if now >= due:
                logger.info("dropping idle peer %s", self.describe())
                self.fail(
                    ErrorCode.IDLE_TIMEOUT,
                    f"nothing received for {self.config.idle_timeout:g} s; clients send a "
                    "keepalive frame when they have nothing else to say",
                )
                return
        self._liveness = asyncio.get_running_loop().call_at(due, self._check_liveness)

    # --- closing --------------------------------------------------------------------------

    def _begin_close(self, code: WSCloseCode) -> None:
        self.closing = True
        self._close_code = code
        self._push(None)
        if self._liveness is not None:
            self._liveness.cancel()
            self._liveness = None
        # A peer that stops reading can block the writer forever: cut it off in the end.
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(2 * self.config.close_timeout, self._abort)

    def _abort(self) -> None:
        if not self._writer.done():
            logger.info("aborting unresponsive connection %s", self.describe())
            self._writer.cancel()
        if self._transport is not None:
            # abort, not close: close would wait for the unread buffer to drain, forever.
            abort = getattr(self._transport, "abort", self._transport.close)
            abort()

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                text = self._queue.popleft()
                if text is None:
                    break
                size = _size(text)
                self.queued_bytes -= size
                self.budget.changed(self, -size)
                await self.ws.send_str(text)
        except ConnectionError as exc:
            logger.info("cannot write to %s: %s", self.describe(), exc)
        except Exception as exc:  # the socket broke in some other way; drop just this peer
            logger.warning("write to %s failed: %r", self.describe(), exc)
        finally:
            self.closing = True
            self._drop_queue()
            if self._liveness is not None:
                self._liveness.cancel()
                self._liveness = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.ws.close(code=self._close_code), self.config.close_timeout
                )

    async def close(self) -> None:
        """Flush queued frames and close the socket (bounded by ``close_timeout``)."""
        if not self.closing:
            self._begin_close(WSCloseCode.OK)
        try:
            await asyncio.shield(self._writer)
        except asyncio.CancelledError:
            if not self._writer.done() or not self._writer.cancelled():
                raise  # we were cancelled, not the writer
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._drop_queue()
