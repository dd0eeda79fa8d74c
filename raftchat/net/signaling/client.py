"""Signaling client: keeps one peer present in a channel and relays its signals.

A :class:`SignalingSession` is one channel's presence over a WebSocket it may share with
the sessions of other channels (:class:`SignalingConnection`, the ``/ws`` socket of
``protocol``); :class:`SignalingClient` is a session over a socket of its own. A session
opens its channel on the socket, answers the server's challenge for it with a hello signed
by the node's identity key for that channel (``net/identity.py``), tracks the set of other
peers (and the roles they announce) and hands relayed payloads to a listener. When the
socket goes away, or the server ends just this session, it joins again in the background
with exponential backoff and jitter and then reports the fresh peer set. The role this
node announces (``set_role``) goes into every hello, so it survives reconnects. The socket
sends a ``keepalive`` whenever it has sent nothing for ``keepalive_interval`` seconds, so
the server does not drop it as idle.

It never blocks or raises into its callers while the server is away: ``send_signal``
returns False and the last known peer set is kept (peers already linked over WebRTC keep
talking). Only ``start()`` raises, for errors that retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import aiohttp

from raftchat.net.identity import NodeIdentity, signaling_hello_message
from raftchat.net.signaling.client_config import (
    ClientConfig,
    IdentityRefusedError,
    InvalidChannelError,
    PeerIdTakenError,
    ServerGone,
    ServerRejectedError,
    ServerUnreachableError,
    SignalingError,
    server_is_up,
    shared_websocket_url,
    websocket_url,
)
from raftchat.net.signaling.protocol import (
    ROLES,
    Challenge,
    ErrorCode,
    ErrorFrame,
    PeerJoined,
    PeerLeft,
    PeerRole,
    ProtocolError,
    RelayedSignal,
    ServerFrame,
    Welcome,
    WitnessRelay,
    encode_hello,
    encode_leave,
    encode_open,
    encode_role,
    encode_signal_request,
    encode_witness_relay,
    is_valid_role,
    normalize_channel,
    utf8_length,
)
from raftchat.net.signaling.shared_socket import SignalingConnection

__all__ = [
    "CLOSED",
    "CONNECTED",
    "CONNECTING",
    "RECONNECTING",
    "ClientConfig",
    "IdentityRefusedError",
    "InvalidChannelError",
    "PeerIdTakenError",
    "ServerRejectedError",
    "ServerUnreachableError",
    "SignalingClient",
    "SignalingConnection",
    "SignalingError",
    "SignalingListener",
    "SignalingSession",
    "server_is_up",
    "shared_websocket_url",
    "websocket_url",
]

logger = logging.getLogger(__name__)

_Frame = TypeVar("_Frame", Challenge, Welcome)

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"


MAX_QUEUED_WITNESS_FRAMES = 8
"""Witness frames waiting for the socket, at most: Raft sends again what still matters."""

_SOCKET_LOST = object()
"""Put in a joining session's inbox when its socket went away."""

_STOPPING_CODES = frozenset(
    {
        ErrorCode.REPLACED,
        ErrorCode.ID_TAKEN,
        ErrorCode.ID_NOT_OF_KEY,
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.INVALID_CHANNEL,
    }
)
"""A session the server ends with one of these stops: joining again cannot help."""


class SignalingListener(Protocol):
    def on_peers(self, peers: frozenset[str]) -> None:
        """The full current set of OTHER peers, whenever it or their announced roles
        (``SignalingSession.peer_roles``) change, and after every welcome."""

    def on_signal(self, sender: str, payload: dict[str, Any]) -> None:
        """A payload relayed from ``sender`` (stamped by the server)."""

    def on_state(self, state: str) -> None:
        """'connecting' | 'connected' | 'reconnecting' | 'closed'."""

    # Optional: ``on_witness(relay: WitnessRelay)``, the server's witness answering.


def _present_roles(roles: Mapping[str, str | None], peers: frozenset[str]) -> Mapping[str, str]:
    """The roles of ``peers`` only (a hint about anyone else is dropped), read-only."""
    return MappingProxyType(
        {peer: role for peer, role in roles.items() if peer in peers and role is not None}
    )


class SignalingSession:
    """One peer's presence in one channel of a signaling server, over ``connection``."""

    def __init__(
        self,
        connection: SignalingConnection,
        channel: str,
        identity: NodeIdentity,
        listener: SignalingListener,
    ) -> None:
        try:
            self.channel = normalize_channel(channel)
        except ProtocolError as exc:
            raise InvalidChannelError(exc.message) from None
        self.connection = connection
        self.server_url = connection.server_url
        self.ws_url = connection.ws_url
        self.config = connection.config
        self.peer_id = identity.node_id
        self._identity = identity
        "Signs every hello: the server admits this peer id only with its key's proof."
        self._listener = listener
        self._rng = random.Random()
        self._state = CLOSED
        self._peers: frozenset[str] = frozenset()
        self._peer_roles: Mapping[str, str] = MappingProxyType({})
        self._role: str | None = None
        self._announced_role: str | None = None  # the role the server has from this session
        self._hello_role: str | None = None  # the role in the latest hello
        self._role_task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        "The socket this session is joined on (None while it is not)."
        self._inbox: asyncio.Queue[object] | None = None
        "While joining: the challenge, welcome or error the server sends this session."
        self._dropped = asyncio.Event()
        self._stop_error: Exception | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._witness_outbox: deque[str] = deque()
        self._witness_task: asyncio.Task[None] | None = None
        self.witness: str | None = None
        """The id of the witness the server hosts, from the latest welcome (None: none)."""
        self.token: str | None = None
        """The latest welcome's token, for ``GET /channels/<channel>/peers``."""
        self.failed_reconnects = 0
        """Reconnect attempts that failed since start (for status displays and tests)."""

    @property
    def state(self) -> str:
        return self._state

    @property
    def peers(self) -> frozenset[str]:
        """The other peers as last reported by the server (kept while reconnecting)."""
        return self._peers

    @property
    def peer_roles(self) -> Mapping[str, str]:
        """Roles announced by the present peers (untrusted hints; peers without one are
        missing). A read-only snapshot: read it again after each ``on_peers``."""
        return self._peer_roles

    @property
    def role(self) -> str | None:
        """The role this node announces (``set_role``), None until set."""
        return self._role

    # ------------------------------------------------------------ public

    async def start(self) -> None:
        """Join the channel; then stay joined in the background.

        Raises ServerUnreachableError, InvalidChannelError, PeerIdTakenError,
        IdentityRefusedError or ServerRejectedError when the first join cannot be made.
        """
        if self._task is not None or self._closed:
            raise RuntimeError("SignalingSession.start() may be called once")
        self.connection.attach(self)
        self._set_state(CONNECTING)
        last_problem = ""
        try:
            for attempt in range(self.config.first_connect_attempts):
                if attempt:
                    await asyncio.sleep(self.config.first_connect_retry_delay)
                try:
                    await self._join()
                    break
                except ServerGone as exc:
                    last_problem = str(exc)
                    logger.info("signaling connect attempt %d failed: %s", attempt + 1, exc)
            else:
                raise ServerUnreachableError(
                    f"signaling server {self.server_url} is unreachable after "
                    f"{self.config.first_connect_attempts} attempts ({last_problem}); "
                    "start one with 'raftchat serve' or pass --server URL"
                )
        except BaseException:
            self._closed = True
            await self._shutdown()
            raise
        self._task = asyncio.create_task(self._stay_joined(), name=f"signaling-{self.peer_id}")

    def set_role(self, role: str) -> None:
        """Announce this node's role ("voter", "learner" or "none") to the channel's peers.

        Remembered and sent with every hello; while connected a change is sent at once
        (in the background). Raises ValueError for any other role.
        """
        if not is_valid_role(role):
            raise ValueError(f"invalid role {role!r}: use one of {', '.join(sorted(ROLES))}")
        if role == self._role:
            return
        self._role = role
        self._announce_role()

    async def send_signal(self, to: str, payload: dict[str, Any]) -> bool:
        """Ask the server to relay ``payload`` to peer ``to``.

        Returns False if not connected right now (retry on the next presence change). Raises
        TypeError/ValueError only for a payload that could never be sent.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
        text = encode_signal_request(to, payload, channel=self.channel)
        if utf8_length(text) > self.config.max_frame_bytes:
            raise ValueError(
                f"signal payload too large: {utf8_length(text)} bytes in a frame, "
                f"limit {self.config.max_frame_bytes}"
            )
        return await self._send(text, f"signal to {to}")

    def send_witness(self, relay: WitnessRelay) -> bool:
        """Queue Raft messages for the server's witness, in order; False if not connected
        (or the frame would be too large): Raft sends them again as it needs to."""
        if self._state != CONNECTED or self.witness is None:
            return False
        text = encode_witness_relay(relay, channel=self.channel)
        if utf8_length(text) > self.config.max_frame_bytes:
            logger.info("witness frame of %d bytes not sent: over the limit", utf8_length(text))
            return False
        if len(self._witness_outbox) >= MAX_QUEUED_WITNESS_FRAMES:
            return False  # a stalled server: a burst on its return would only be refused
        self._witness_outbox.append(text)
        if self._witness_task is None or self._witness_task.done():
            self._witness_task = asyncio.create_task(
                self._flush_witness(), name=f"signaling-witness-{self.peer_id}"
            )
        return True

    async def _flush_witness(self) -> None:
        outbox = self._witness_outbox
        while outbox:
            if not await self._send(outbox.popleft(), "witness frame"):
                outbox.clear()  # not connected: Raft resends what still matters
                return

    async def close(self) -> None:
        """Leave the channel and stop rejoining (the other sessions of the socket stay)."""
        self._closed = True
        tasks = (self._task, self._role_task, self._witness_task)
        self._task = self._role_task = self._witness_task = None
        for task in tasks:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._shutdown()

    # ------------------------------------------------------------ from the socket

    def on_frame(self, frame: ServerFrame) -> None:
        """A frame the server tagged with this session's channel."""
        inbox = self._inbox
        if inbox is not None:
            if isinstance(frame, Welcome):
                self._adopt(frame)  # at once: the frames after it are this session's
            if isinstance(frame, Challenge | Welcome | ErrorFrame):
                inbox.put_nowait(frame)
            return  # what a session ended earlier still had on its way
        if self._ws is None:
            return
        if isinstance(frame, RelayedSignal):
            self._notify("on_signal", frame.sender, frame.payload)
        elif isinstance(frame, WitnessRelay):
            if hasattr(self._listener, "on_witness"):
                self._notify("on_witness", frame)
        elif isinstance(frame, PeerJoined):
            if frame.peer_id != self.peer_id:
                roles = {**self._peer_roles, frame.peer_id: frame.role}
                self._update_peers(self._peers | {frame.peer_id}, roles)
        elif isinstance(frame, PeerRole):
            self._update_peers(self._peers, {**self._peer_roles, frame.peer_id: frame.role})
        elif isinstance(frame, PeerLeft):
            self._update_peers(self._peers - {frame.peer_id}, self._peer_roles)
        elif isinstance(frame, ErrorFrame):
            self._on_error(frame)
        else:
            logger.warning("ignoring unexpected %s from signaling server", type(frame).__name__)

    def _on_error(self, frame: ErrorFrame) -> None:
        if frame.fatal:  # the server ended this session (the socket may carry on)
            logger.warning(
                "signaling server ended our session in %s: %s %s",
                self.channel,
                frame.code,
                frame.message,
            )
            if frame.code in _STOPPING_CODES:
                self._stop_error = self._error_from_frame(frame)
            self._ws = None
            self._dropped.set()
            return
        quiet = (ErrorCode.SHUTTING_DOWN, ErrorCode.WITNESS_UNAVAILABLE)
        level = logging.INFO if frame.code in quiet else logging.WARNING
        logger.log(level, "signaling server error %s: %s", frame.code, frame.message)

    def socket_lost(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The shared socket ``ws`` closed."""
        if self._inbox is not None:
            self._inbox.put_nowait(_SOCKET_LOST)
        if self._ws is ws:
            self._ws = None
            self._dropped.set()

    # ------------------------------------------------------------ joining

    async def _join(self) -> None:
        """One attempt: the socket, open, challenge, hello, welcome. Raises ServerGone or
        SignalingError."""
        waiting_for = "the WebSocket"
        self._inbox = asyncio.Queue()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                ws = await self.connection.ensure_open()
                if not await self.connection.send(ws, encode_open(self.channel), "open"):
                    raise ServerGone("the socket closed before the session opened")
                self._hello_role = hello_role = self._role
                waiting_for = "a challenge"
                challenge = await self._expect(Challenge, waiting_for)
                message = signaling_hello_message(challenge.nonce, self.channel, self.peer_id)
                hello = encode_hello(
                    self.peer_id,
                    self._identity.public_key,
                    self._identity.sign(message),
                    hello_role,
                    channel=self.channel,
                )
                if not await self.connection.send(ws, hello, "hello"):
                    raise ServerGone("the socket closed before the hello went out")
                waiting_for = "a welcome"
                await self._expect(Welcome, waiting_for)
        except BaseException as exc:
            if ws is not None and self._ws is None and isinstance(exc, TimeoutError):
                # The server may hold the half-open session: end it before the next open.
                await self.connection.send(ws, encode_leave(self.channel), "leave")
            if not isinstance(exc, TimeoutError):
                raise
            hint = (
                " (a signaling server of an earlier raftchat sends none: both need a "
                "compatible raftchat)"
                if waiting_for == "a challenge"
                else ""
            )
            raise ServerGone(
                f"no {waiting_for.removeprefix('a ')} within {self.config.connect_timeout} s" + hint
            ) from None
        finally:
            self._inbox = None
        self._announce_role()  # set_role may have changed it while we waited for welcome

    def _adopt(self, welcome: Welcome) -> None:
        """Joined: take the welcome's peers, roles, witness and token."""
        self._inbox = None
        self._ws = self.connection.socket
        self._dropped.clear()
        self._announced_role = self._hello_role
        self._peers = welcome.peers - {self.peer_id}
        self._peer_roles = _present_roles(welcome.roles, self._peers)
        self.witness = welcome.witness
        self.token = welcome.token
        self._set_state(CONNECTED)
        logger.info("joined channel %s with %d other peers", self.channel, len(self._peers))
        self._notify("on_peers", self._peers)

    async def _expect(self, kind: type[_Frame], what: str) -> _Frame:
        inbox = self._inbox
        assert inbox is not None
        while True:
            item = await inbox.get()
            if item is _SOCKET_LOST:
                raise ServerGone(f"server closed the connection before sending {what}")
            if isinstance(item, kind):
                return item
            if isinstance(item, ErrorFrame):
                if item.fatal:
                    raise self._error_from_frame(item)
                logger.warning("signaling server error %s: %s", item.code, item.message)

    def _error_from_frame(self, frame: ErrorFrame) -> Exception:
        detail = f"{frame.message} (server {self.server_url}, channel {self.channel!r})"
        if frame.code == ErrorCode.ID_TAKEN:
            return PeerIdTakenError(f"peer id {self.peer_id} is taken: {detail}")
        if frame.code in (ErrorCode.ID_NOT_OF_KEY, ErrorCode.BAD_SIGNATURE):
            return IdentityRefusedError(
                frame.code, f"the signaling server refused our proof of id {self.peer_id}: {detail}"
            )
        if frame.code == ErrorCode.INVALID_CHANNEL:
            return InvalidChannelError(detail)
        if frame.code in (ErrorCode.SHUTTING_DOWN, ErrorCode.HELLO_TIMEOUT):
            return ServerGone(detail)
        return ServerRejectedError(frame.code, f"signaling server refused us: {detail}")

    async def _stay_joined(self) -> None:
        """Wait until the session drops; then join again with backoff until closed."""
        try:
            while not self._closed:
                await self._dropped.wait()
                if self._stop_error is not None:
                    logger.error("signaling stopped: %s", self._stop_error)
                    break
                if self._closed:
                    break
                self._set_state(RECONNECTING)
                fatal = await self._rejoin()
                if fatal is not None:
                    logger.error("signaling stopped: %s", fatal)
                    break
        except Exception:
            logger.exception("signaling client failed")
        finally:
            if not self._closed:
                self._closed = True
                await self._shutdown()

    async def _rejoin(self) -> Exception | None:
        """Retry until joined (None) or a retry cannot help (the error)."""
        attempt = 0
        while not self._closed:
            delay = self.config.backoff_delay(attempt, self._rng)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._join()
                return None
            except (ServerGone, ServerRejectedError) as exc:  # full now, maybe not later
                self.failed_reconnects += 1
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
            except SignalingError as exc:  # id refused, invalid channel: retrying cannot help
                return exc
        return None

    # ------------------------------------------------------------ helpers

    async def _send(self, text: str, what: str) -> bool:
        """Write one frame if joined; False if it could not be written now."""
        if self._state != CONNECTED:
            return False
        return await self.connection.send(self._ws, text, what)

    def _announce_role(self) -> None:
        """Send the role frame in the background if the server has an older role."""
        if self._state != CONNECTED or self._role == self._announced_role:
            return
        if self._role_task is None or self._role_task.done():
            self._role_task = asyncio.create_task(
                self._send_role(), name=f"signaling-role-{self.peer_id}"
            )

    async def _send_role(self) -> None:
        # Loops because set_role may change the role again while a frame is being written.
        while (role := self._role) is not None and role != self._announced_role:
            ws = self._ws
            if not await self._send(encode_role(role, channel=self.channel), f"role {role!r}"):
                return  # the next hello carries it
            if self._ws is ws:
                self._announced_role = role

    def _update_peers(self, peers: frozenset[str], roles: Mapping[str, str | None]) -> None:
        """Adopt a new peer set and roles; tell the listener if either changed."""
        present_roles = _present_roles(roles, peers)
        if peers != self._peers or present_roles != self._peer_roles:
            self._peers = peers
            self._peer_roles = present_roles
            self._notify("on_peers", peers)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._notify("on_state", state)

    def _notify(self, method: str, *args: Any) -> None:
        """Call the listener; its bugs are logged, never allowed to stop signaling."""
        try:
            getattr(self._listener, method)(*args)
        except Exception:
            logger.exception("signaling listener %s raised", method)

    async def _shutdown(self) -> None:
        """Leave the channel (if joined) and let go of the socket."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await self.connection.send(ws, encode_leave(self.channel), "leave")
        await self.connection.detach(self)
        self._set_state(CLOSED)


class SignalingClient(SignalingSession):
    """A session over a WebSocket of its own (one channel per socket)."""

    def __init__(
        self,
        server_url: str,
        channel: str,
        identity: NodeIdentity,
        listener: SignalingListener,
        config: ClientConfig | None = None,
    ) -> None:
        super().__init__(SignalingConnection(server_url, config), channel, identity, listener)
