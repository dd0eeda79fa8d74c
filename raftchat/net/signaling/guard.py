"""The signaling server's doorman: every TCP connection passes here before aiohttp sees it.

aiohttp closes a connection whose first request is incomplete only after its
``keepalive_timeout`` (an hour by default) and counts nothing. So each accepted socket is
wrapped in a :class:`GuardedProtocol` that forwards everything to aiohttp's request
handler and, on the side:

- refuses a connection beyond ``max_connections`` (``server_full``) or beyond
  ``max_connections_per_address`` for its address (``too_many_connections``) with an
  HTTP 503 naming the code, then closes it;
- closes a connection that has not sent complete request headers within
  ``header_timeout`` of connecting, or sends more than ``max_header_bytes`` of them;
- closes a connection whose request is neither answered nor turned into a WebSocket
  within ``body_timeout`` after its headers (a body sent byte by byte);
- counts all of it in the server's metrics.

Plain HTTP responses carry ``Connection: close`` (the server sets it), so a connection
carries one request or becomes one WebSocket; the WebSocket handler calls
:meth:`ConnectionGuard.upgraded` and the timers stop (the WebSocket has its own: hello,
idle, heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from raftchat.net.signaling.addresses import Addresses, AddressUsage
from raftchat.net.signaling.config import ServerConfig
from raftchat.net.signaling.metrics import Metrics
from raftchat.net.signaling.protocol import ERROR_HEADER, ErrorCode

logger = logging.getLogger(__name__)

REFUSAL_LINGER = 1.0
"""Seconds a refused connection is kept to read the client's request after the 503 (so
closing it does not reset the connection before the client read the answer)."""
MAX_LINGERING_REFUSALS = 1024
"""Refused connections lingering at once; beyond, further ones are closed at once."""
HEADERS_TOO_LARGE = "headers_too_large"
"""Metrics code of a connection closed for sending more than ``max_header_bytes``."""


def refusal_response(code: ErrorCode, message: str) -> bytes:
    """The raw HTTP 503 answer to a connection refused before aiohttp sees it."""
    body = json.dumps({"error": str(code), "message": message}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{ERROR_HEADER}: {code}\r\n"
        "Retry-After: 10\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard:
    """Counts open connections in total and per address; owns the wrappers."""

    def __init__(
        self, config: ServerConfig, addresses: Addresses, metrics: Metrics, clock: Callable
    ) -> None:
        self.config = config
        self.addresses = addresses
        self.metrics = metrics
        self.clock = clock
        self.open: dict[asyncio.BaseTransport, GuardedProtocol] = {}
        "Admitted connections (HTTP or WebSocket) by transport."
        self.refused: set[GuardedProtocol] = set()
        "Refused connections still being answered."

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` wrapping aiohttp's."""
        return lambda: GuardedProtocol(self, inner)

    def usage_of(self, transport: asyncio.BaseTransport | None) -> AddressUsage | None:
        protocol = self.open.get(transport) if transport is not None else None
        return protocol.usage if protocol is not None else None

    def upgraded(self, transport: asyncio.BaseTransport | None) -> None:
        """The request on ``transport`` became a WebSocket: its HTTP timers stop."""
        protocol = self.open.get(transport) if transport is not None else None
        if protocol is not None:
            protocol.stop_timers()

    def close_all(self) -> None:
        """Close every connection still open (the server is stopping)."""
        for protocol in [*self.open.values(), *self.refused]:
            protocol.abort()

    def _admit(self, protocol: GuardedProtocol, host: str) -> tuple[ErrorCode, str] | None:
        self.metrics.inc("connections_total")
        if len(self.open) >= self.config.max_connections:
            return ErrorCode.SERVER_FULL, (
                f"server has its maximum of {self.config.max_connections} connections; "
                "try again later"
            )
        usage = self.addresses.of(host, self.clock())
        if not usage.exempt and usage.connections >= self.config.max_connections_per_address:
            self.addresses.release(usage, self.clock())
            return ErrorCode.TOO_MANY_CONNECTIONS, (
                f"your address holds {usage.connections} connections, the maximum per "
                "address; close some and try again"
            )
        usage.connections += 1
        protocol.usage = usage
        self.open[protocol.transport] = protocol  # type: ignore[index]
        return None

    def _release(self, protocol: GuardedProtocol) -> None:
        if self.open.pop(protocol.transport, None) is None:  # type: ignore[arg-type]
            return
        usage = protocol.usage
        if usage is not None:
            usage.connections -= 1
            self.addresses.release(usage, self.clock())


class GuardedProtocol(asyncio.Protocol):
    """One accepted socket: aiohttp's request handler behind the guard's checks."""

    def __init__(self, guard: ConnectionGuard, inner_factory: Callable[[], asyncio.Protocol]):
        self._guard = guard
        self._inner_factory = inner_factory
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.usage: AddressUsage | None = None
        self.host = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._tail = b""
        self._in_headers = True

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._guard._admit(self, self.host)
        if refusal is not None:
            self._refuse(*refusal)
            return
        self._inner = self._inner_factory()
        self._inner.connection_made(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.config.header_timeout, self._timed_out, "header")

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return  # a refused connection: what it sends is read and dropped
        if self._in_headers and not self._scan_headers(data):
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            if self.transport is not None:
                self.transport.close()
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timers()
        self._guard._release(self)
        self._guard.refused.discard(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- the checks ---------------------------------------------------------------------

    def stop_timers(self) -> None:
        self._in_headers = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _scan_headers(self, data: bytes) -> bool:
        """Watch for the end of the request headers; False if the connection was closed."""
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        if end < 0:
            end = window.find(b"\n\n")
        if end >= 0:
            self._in_headers = False
            if self._timer is not None:
                self._timer.cancel()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._guard.config.body_timeout, self._timed_out, "body")
            return True
        self._header_bytes += len(data)
        self._tail = window[-3:]
        if self._header_bytes > self._guard.config.max_header_bytes:
            logger.info("closing %s: request headers over %d bytes", self.host, self._header_bytes)
            self._guard.metrics.inc("errors_total", HEADERS_TOO_LARGE)
            self.abort()
            return False
        return True

    def _timed_out(self, phase: str) -> None:
        self._timer = None
        logger.info("closing %s: request %s not received in time", self.host, phase)
        self._guard.metrics.inc("http_timeouts_total", phase)
        self.abort()

    def abort(self) -> None:
        self.stop_timers()
        if self.transport is not None:
            self.transport.abort()

    def _refuse(self, code: ErrorCode, message: str) -> None:
        assert self.transport is not None
        self._guard.metrics.inc("errors_total", code)
        logger.warning("refusing a connection from %s: %s", self.host, code)
        if len(self._guard.refused) >= MAX_LINGERING_REFUSALS:
            self.transport.abort()
            return
        self._guard.refused.add(self)
        self.transport.write(refusal_response(code, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(REFUSAL_LINGER, self.abort)
