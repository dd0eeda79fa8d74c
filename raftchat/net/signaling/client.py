"""Signaling client: keeps one peer present in a channel and relays its signals.

It connects to the signaling server's WebSocket, answers the server's challenge with a
hello signed by the node's identity key (``net/identity.py``), tracks the set of other peers
(and the roles they announce) and hands relayed payloads to a listener. When the server
goes away it reconnects in the background with exponential backoff and jitter and then
reports the fresh peer set. The role this node announces (``set_role``) goes into every
hello, so it survives reconnects. While connected it sends a ``keepalive`` frame whenever
it has sent nothing for ``keepalive_interval`` seconds, so the server does not drop it as
idle (see ``protocol``).

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
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from raftchat.net.identity import NodeIdentity, signaling_hello_message
from raftchat.net.signaling.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    ERROR_HEADER,
    KEEPALIVE_INTERVAL,
    ROLES,
    WS_PATH_TEMPLATE,
    Challenge,
    ErrorCode,
    ErrorFrame,
    PeerJoined,
    PeerLeft,
    PeerRole,
    ProtocolError,
    RelayedSignal,
    Welcome,
    WitnessRelay,
    encode_hello,
    encode_keepalive,
    encode_role,
    encode_signal_request,
    encode_witness_relay,
    is_valid_role,
    normalize_channel,
    parse_server_frame,
    utf8_length,
)

logger = logging.getLogger(__name__)

_Frame = TypeVar("_Frame", Challenge, Welcome)

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"


MAX_QUEUED_WITNESS_FRAMES = 8
"""Witness frames waiting for the socket, at most: Raft sends again what still matters."""


class SignalingListener(Protocol):
    def on_peers(self, peers: frozenset[str]) -> None:
        """The full current set of OTHER peers, whenever it or their announced roles
        (``SignalingClient.peer_roles``) change, and after every welcome."""

    def on_signal(self, sender: str, payload: dict[str, Any]) -> None:
        """A payload relayed from ``sender`` (stamped by the server)."""

    def on_state(self, state: str) -> None:
        """'connecting' | 'connected' | 'reconnecting' | 'closed'."""

    # Optional: ``on_witness(relay: WitnessRelay)``, the server's witness answering.


class SignalingError(Exception):
    """A signaling failure that retrying will not fix by itself."""


class ServerUnreachableError(SignalingError):
    """No signaling server answered at the URL."""


class InvalidChannelError(SignalingError, ValueError):
    """The channel name breaks the naming rules."""


class PeerIdTakenError(SignalingError):
    """The id is reserved on this server (the witness's)."""


class IdentityRefusedError(SignalingError):
    """The server did not accept this node's proof of its id (``code`` says why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ServerRejectedError(SignalingError):
    """The server refused the connection (full, too many channels, ...); ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientConfig:
    """Timing of the signaling client. All must be positive."""

    connect_timeout: float = 5.0
    """Seconds for one attempt: TCP + WebSocket handshake + welcome."""
    first_connect_attempts: int = 3
    """Attempts in ``start()`` before giving up with ServerUnreachableError."""
    first_connect_retry_delay: float = 0.3
    """Pause between those first attempts."""
    backoff_initial: float = 0.5
    """First pause before reconnecting after the server went away..."""
    backoff_multiplier: float = 2.0
    """...multiplied by this after each failed attempt..."""
    backoff_max: float = 15.0
    """...up to this."""
    backoff_jitter: float = 0.5
    """Fraction of each pause that is random, so peers do not all come back at once."""
    heartbeat_interval: float = 15.0
    """WebSocket ping interval; a server that misses its pong counts as gone."""
    keepalive_interval: float = KEEPALIVE_INTERVAL
    """Longest silence towards the server: a ``keepalive`` frame is sent after it (the
    server drops a peer silent for its ``idle_timeout``)."""
    send_timeout: float = 5.0
    """A send_signal that cannot be written within this gives up and returns False."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame sent or accepted; must not exceed the server's."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"ClientConfig.{field.name} must be positive, got {value!r}")
        if self.backoff_jitter > 1:
            raise ValueError("ClientConfig.backoff_jitter must be at most 1")

    def backoff_delay(self, attempt: int, rng: random.Random) -> float:
        """Pause before reconnect attempt number ``attempt`` (0-based)."""
        base = min(self.backoff_max, self.backoff_initial * self.backoff_multiplier**attempt)
        return base * (1 - self.backoff_jitter * rng.random())


class _ServerGone(Exception):
    """The connection attempt failed for a reason worth retrying."""


def websocket_url(server_url: str, channel: str) -> str:
    """``http://host:port`` -> ``ws://host:port/channels/<channel>/ws`` (https -> wss)."""
    parts = urlsplit(server_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(
            f"signaling server URL {server_url!r} must look like http://HOST:PORT or https://HOST"
        )
    path = parts.path.rstrip("/") + WS_PATH_TEMPLATE.format(channel=channel)
    return urlunsplit((schemes[parts.scheme], parts.netloc, path, "", ""))


async def server_is_up(url: str, timeout: float = 2.0) -> bool:
    """True if a signaling server answers ``GET /healthz`` at ``url`` within ``timeout``."""
    health = url.rstrip("/") + "/healthz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(health) as response,
        ):
            if response.status != 200:
                return False
            body = await response.json(content_type=None)
            return isinstance(body, dict) and body.get("ok") is True
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False


def _present_roles(roles: Mapping[str, str | None], peers: frozenset[str]) -> Mapping[str, str]:
    """The roles of ``peers`` only (a hint about anyone else is dropped), read-only."""
    return MappingProxyType(
        {peer: role for peer, role in roles.items() if peer in peers and role is not None}
    )


class SignalingClient:
    """One peer's presence in one channel of a signaling server."""

    def __init__(
        self,
        server_url: str,
        channel: str,
        identity: NodeIdentity,
        listener: SignalingListener,
        config: ClientConfig | None = None,
    ) -> None:
        try:
            self.channel = normalize_channel(channel)
        except ProtocolError as exc:
            raise InvalidChannelError(exc.message) from None
        self.server_url = server_url
        self.ws_url = websocket_url(server_url, self.channel)
        self.peer_id = identity.node_id
        self._identity = identity
        "Signs every hello: the server admits this peer id only with its key's proof."
        self._listener = listener
        self.config = config or ClientConfig()
        self._rng = random.Random()
        self._state = CLOSED
        self._peers: frozenset[str] = frozenset()
        self._peer_roles: Mapping[str, str] = MappingProxyType({})
        self._role: str | None = None
        self._announced_role: str | None = None  # the role the server has from this socket
        self._role_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._last_sent = 0.0
        "When a frame last went to the server (loop time)."
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
        """Connect and join; then stay connected in the background.

        Raises ServerUnreachableError, InvalidChannelError, PeerIdTakenError,
        IdentityRefusedError or ServerRejectedError when the first connection cannot be made.
        """
        if self._task is not None or self._closed:
            raise RuntimeError("SignalingClient.start() may be called once")
        self._set_state(CONNECTING)
        self._session = aiohttp.ClientSession()
        last_problem = ""
        try:
            for attempt in range(self.config.first_connect_attempts):
                if attempt:
                    await asyncio.sleep(self.config.first_connect_retry_delay)
                try:
                    await self._connect()
                    break
                except _ServerGone as exc:
                    last_problem = str(exc)
                    logger.info("signaling connect attempt %d failed: %s", attempt + 1, exc)
            else:
                raise ServerUnreachableError(
                    f"signaling server {self.server_url} is unreachable after "
                    f"{self.config.first_connect_attempts} attempts ({last_problem}); "
                    "start one with 'raftchat serve' or pass --server URL"
                )
        except BaseException:
            await self._shutdown()
            raise
        self._task = asyncio.create_task(self._stay_connected(), name=f"signaling-{self.peer_id}")

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
        text = encode_signal_request(to, payload)
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
        text = encode_witness_relay(relay)
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
        """Leave the channel and stop reconnecting."""
        self._closed = True
        tasks = (self._task, self._role_task, self._witness_task)
        self._task = self._role_task = self._witness_task = None
        for task in tasks:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._shutdown()

    # ------------------------------------------------------------ connection

    async def _connect(self) -> None:
        """One attempt: handshake, challenge, hello, welcome. Raises _ServerGone or
        SignalingError."""
        assert self._session is not None
        waiting_for = "the WebSocket"
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                ws = await self._session.ws_connect(
                    self.ws_url,
                    heartbeat=self.config.heartbeat_interval,
                    max_msg_size=self.config.max_frame_bytes,
                    autoclose=True,
                )
                hello_role = self._role
                try:
                    waiting_for = "a challenge"
                    challenge = await self._read_frame(ws, Challenge, waiting_for)
                    message = signaling_hello_message(challenge.nonce, self.channel, self.peer_id)
                    await ws.send_str(
                        encode_hello(
                            self.peer_id,
                            self._identity.public_key,
                            self._identity.sign(message),
                            hello_role,
                        )
                    )
                    waiting_for = "a welcome"
                    welcome = await self._read_frame(ws, Welcome, waiting_for)
                except BaseException:
                    await ws.close()
                    raise
        except aiohttp.WSServerHandshakeError as exc:
            code = exc.headers.get(ERROR_HEADER) if exc.headers else None
            if exc.status == 503 and code:
                raise ServerRejectedError(
                    code,
                    f"signaling server refused us: {code} (HTTP 503; server "
                    f"{self.server_url}, channel {self.channel!r})",
                ) from None
            raise _ServerGone(
                f"{self.ws_url} is not a raftchat signaling endpoint (HTTP {exc.status})"
            ) from None
        except TimeoutError:  # (an OSError too: caught first)
            hint = (
                " (a signaling server of an earlier raftchat sends none: both need a "
                "compatible raftchat)"
                if waiting_for == "a challenge"
                else ""
            )
            raise _ServerGone(
                f"no {waiting_for.removeprefix('a ')} within {self.config.connect_timeout} s" + hint
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _ServerGone(str(exc) or type(exc).__name__) from None
        self._ws = ws
        self._last_sent = asyncio.get_running_loop().time()
        self._keepalive_task = asyncio.create_task(
            self._keep_alive(ws), name=f"signaling-keepalive-{self.peer_id}"
        )
        self._announced_role = hello_role
        self._peers = welcome.peers - {self.peer_id}
        self._peer_roles = _present_roles(welcome.roles, self._peers)
        self.witness = welcome.witness
        self.token = welcome.token
        self._set_state(CONNECTED)
        logger.info("joined channel %s with %d other peers", self.channel, len(self._peers))
        self._notify("on_peers", self._peers)
        self._announce_role()  # set_role may have changed it while we waited for welcome

    async def _read_frame(
        self, ws: aiohttp.ClientWebSocketResponse, kind: type[_Frame], what: str
    ) -> _Frame:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise _ServerGone(
                f"server closed the connection before sending {what} ({msg.type.name})"
            )
        try:
            frame = parse_server_frame(msg.data)
        except ProtocolError as exc:
            raise _ServerGone(f"bad frame from server: {exc.message}") from None
        if isinstance(frame, kind):
            return frame
        if isinstance(frame, ErrorFrame):
            raise self._error_from_frame(frame)
        raise _ServerGone(f"expected {what} from the server, got {type(frame).__name__}")

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
            return _ServerGone(detail)
        return ServerRejectedError(frame.code, f"signaling server refused us: {detail}")

    async def _stay_connected(self) -> None:
        """Read frames; when the connection drops, reconnect with backoff until closed."""
        try:
            while not self._closed:
                fatal = await self._read_until_closed()
                if fatal is not None:
                    logger.error("signaling stopped: %s", fatal)
                    break
                if self._closed:
                    break
                self._set_state(RECONNECTING)
                fatal = await self._reconnect()
                if fatal is not None:
                    logger.error("signaling stopped: %s", fatal)
                    break
        except Exception:
            logger.exception("signaling client failed")
        finally:
            if not self._closed:
                self._closed = True
                await self._shutdown()

    async def _reconnect(self) -> Exception | None:
        """Retry until connected (None) or a retry cannot help (the error)."""
        attempt = 0
        while not self._closed:
            delay = self.config.backoff_delay(attempt, self._rng)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._connect()
                return None
            except (_ServerGone, ServerRejectedError) as exc:  # full now, maybe not later
                self.failed_reconnects += 1
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
            except SignalingError as exc:  # id refused, invalid channel: retrying cannot help
                return exc
        return None

    async def _read_until_closed(self) -> Exception | None:
        """Dispatch frames until the socket closes; return a fatal error if one ended it."""
        ws = self._ws
        assert ws is not None
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    fatal = self._dispatch(msg.data)
                    if fatal is not None:
                        return fatal
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.info("signaling connection error: %s", ws.exception())
                    break
                else:
                    logger.warning("ignoring unexpected %s frame from server", msg.type.name)
        finally:
            self._ws = None
            await self._stop_keepalive()
            await ws.close()
        logger.info("signaling server connection lost (code %s)", ws.close_code)
        return None

    def _dispatch(self, text: str) -> Exception | None:
        try:
            frame = parse_server_frame(text)
        except ProtocolError as exc:
            logger.warning("ignoring bad frame from signaling server: %s", exc.message)
            return None
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
            if frame.fatal and frame.code in (ErrorCode.REPLACED, ErrorCode.ID_TAKEN):
                return self._error_from_frame(frame)
            quiet = (ErrorCode.SHUTTING_DOWN, ErrorCode.WITNESS_UNAVAILABLE)
            level = logging.INFO if frame.code in quiet else logging.WARNING
            logger.log(level, "signaling server error %s: %s", frame.code, frame.message)
        else:
            logger.warning("ignoring unexpected %s from signaling server", type(frame).__name__)
        return None

    # ------------------------------------------------------------ helpers

    async def _keep_alive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send a keepalive whenever nothing went to the server for keepalive_interval."""
        loop = asyncio.get_running_loop()
        interval = self.config.keepalive_interval
        while self._ws is ws and not ws.closed:
            due = self._last_sent + interval
            if loop.time() < due:
                await asyncio.sleep(due - loop.time())
                continue
            if not await self._send(encode_keepalive(), "keepalive"):
                self._last_sent = loop.time()  # not connected now: try again later

    async def _stop_keepalive(self) -> None:
        task, self._keepalive_task = self._keepalive_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self, text: str, what: str) -> bool:
        """Write one frame if connected; False if it could not be written now."""
        ws = self._ws
        if self._state != CONNECTED or ws is None or ws.closed:
            return False
        try:
            async with asyncio.timeout(self.config.send_timeout), self._send_lock:
                await ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError) as exc:
            logger.info("%s not sent: %s", what, exc)
            return False
        self._last_sent = asyncio.get_running_loop().time()
        return True

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
            if not await self._send(encode_role(role), f"role {role!r}"):
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
        await self._stop_keepalive()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._set_state(CLOSED)
