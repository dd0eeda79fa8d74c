"""A larger UDP receive buffer for the socket a peer connection's data flows through.

aioice 0.13 asks for a 256 KiB receive buffer on its sockets
(``aioice.turn.UDP_SOCKET_BUFFER_SIZE``). aiortc's SCTP sends every DATA chunk as its
own datagram and does not limit what it has in flight by the receiver's window, only
by its congestion window, which grows until a packet is lost. A peer that is briefly
starved of CPU (two cores, several nodes) lets such a burst overflow its buffer, and
aiortc's SCTP then often waits for a retransmission timeout of at least one second
(``SCTP_RTO_MIN``) with its congestion window cut to one packet: long enough to delay
Raft heartbeats past an election timeout. Measured on loopback with three node
processes: about 3,000 of 42,000 datagrams of a 5,000-message burst were dropped with
the default buffer, none with 4 MiB.

The kernel caps the size at ``net.core.rmem_max`` (often 208 KiB; raise it with
``sysctl net.core.rmem_max=4194304`` where bursts are lost), so asking for more never
fails; it may just not help.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

logger = logging.getLogger(__name__)


def selected_socket(ice_connection: Any) -> Any | None:
    """The UDP socket of the nominated candidate pair of component 1, if there is one.

    aioice keeps the nominated pairs in ``Connection._nominated``; each pair's
    ``protocol.transport`` is the asyncio datagram transport of its local candidate.
    A relayed (TURN) candidate has no socket of its own here: None.
    """
    pair = getattr(ice_connection, "_nominated", {}).get(1)
    transport = getattr(getattr(pair, "protocol", None), "transport", None)
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and hasattr(sock, "setsockopt") else None


def enlarge_receive_buffer(ice_connection: Any, size: int) -> int | None:
    """Ask for a receive buffer of at least ``size`` bytes on the connection's socket.

    Returns the size the kernel granted (it reports twice what it reserves for data),
    or None when there is no socket to set (not connected yet, a relayed candidate) or
    the system refused. Never shrinks the buffer, never raises."""
    sock = selected_socket(ice_connection)
    if sock is None:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError as error:
        logger.debug("cannot enlarge the UDP receive buffer: %s", error)
        return None
