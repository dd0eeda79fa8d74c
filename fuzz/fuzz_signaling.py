"""Fuzz the signaling protocol parser (both directions) and the mesh's signal checks.

The properties, for any text:

- ``parse_client_frame`` and ``parse_server_frame`` either return a frame or raise
  ``ProtocolError`` - never any other exception;
- a parsed frame re-encodes (with the ``encode_*`` helpers) to text that parses back to
  an equal frame;
- ``normalize_channel`` only raises ``ProtocolError``, and what it returns is valid;
- a shared socket's tagged parsers only raise ``ProtocolError``, and pass valid tags only;
- the mesh's check of a relayed payload (``link_signals.signal_problem``) never raises.

With atheris (coverage-guided, libFuzzer flags)::

    pip install atheris
    python fuzz/fuzz_signaling.py -runs=1000000                 # a fixed number of inputs
    python fuzz/fuzz_signaling.py -max_total_time=600 corpus/   # ten minutes, keep a corpus

Without atheris, a hypothesis-driven loop (random text, random JSON objects shaped like
frames, mutated valid frames) runs instead::

    python fuzz/fuzz_signaling.py --hypothesis [--examples 20000] [--seed N]

A failing input is printed (atheris also writes it to ``crash-*``); replay it with
``python fuzz/fuzz_signaling.py crash-<hash>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from typing import Any

from raftchat.limits import CHANNEL_NAME_PATTERN
from raftchat.net import MeshConfig
from raftchat.net.link_signals import signal_problem
from raftchat.net.signaling.protocol import (
    Challenge,
    ErrorFrame,
    Hello,
    LeaveSession,
    OpenSession,
    PeerJoined,
    PeerLeft,
    PeerRole,
    ProtocolError,
    RelayedSignal,
    RoleUpdate,
    SignalRequest,
    Welcome,
    client_frame_of,
    encode_challenge,
    encode_hello,
    encode_peer_joined,
    encode_peer_left,
    encode_peer_role,
    encode_relayed_signal,
    encode_role,
    encode_signal_request,
    encode_welcome,
    normalize_channel,
    parse_client_frame,
    parse_server_frame,
    parse_tagged_client_frame,
    parse_tagged_server_frame,
)

SELF_ID = "fuzz-self-peer-id-0000"
MAX_SDP_BYTES = MeshConfig().max_sdp_bytes


def _reencode(frame: Any) -> str | None:
    if isinstance(frame, Hello):
        return encode_hello(frame.peer_id, frame.public_key, frame.signature, frame.role)
    if isinstance(frame, Challenge):
        return encode_challenge(frame.nonce)
    if isinstance(frame, RoleUpdate):
        return encode_role(frame.role)
    if isinstance(frame, SignalRequest):
        return encode_signal_request(frame.to, frame.payload)
    if isinstance(frame, Welcome):
        return encode_welcome(
            frame.channel,
            frame.peer_id,
            sorted(frame.peers),
            frame.roles,
            frame.witness,
            frame.token,
        )
    if isinstance(frame, PeerJoined):
        return encode_peer_joined(frame.peer_id, frame.role)
    if isinstance(frame, PeerRole):
        return encode_peer_role(frame.peer_id, frame.role)
    if isinstance(frame, PeerLeft):
        return encode_peer_left(frame.peer_id)
    if isinstance(frame, RelayedSignal):
        return encode_relayed_signal(frame.sender, frame.payload)
    if isinstance(frame, OpenSession | LeaveSession):
        return json.dumps({"type": "open" if isinstance(frame, OpenSession) else "leave"})
    if isinstance(frame, ErrorFrame):
        return json.dumps(
            {"type": "error", "code": frame.code, "message": frame.message, "fatal": frame.fatal}
        )
    raise AssertionError(f"parser returned {type(frame).__name__}")


def _payloads_equal(first: Any, second: Any) -> bool:
    # NaN never equals itself, but the parser refuses NaN; compare the JSON text.
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def check_tagged(text: str) -> None:
    """A shared socket's parsers raise nothing but ProtocolError, and a tag they pass is
    a channel name in canonical form."""
    for parse in (
        lambda text: client_frame_of(parse_tagged_client_frame(text)),
        parse_tagged_server_frame,
    ):
        with contextlib.suppress(ProtocolError):
            parse(text)
    try:
        tagged = parse_tagged_client_frame(text)
    except ProtocolError:
        return
    if tagged.channel is not None and not CHANNEL_NAME_PATTERN.fullmatch(tagged.channel):
        raise AssertionError(f"a tag that is no channel name passed: {tagged.channel!r}")


def check_one(text: str) -> None:
    check_tagged(text)
    for parse in (parse_client_frame, parse_server_frame):
        try:
            frame = parse(text)
        except ProtocolError:
            continue
        try:
            again = parse(_reencode(frame))
        except (ValueError, RecursionError):
            continue  # a payload too deep to write back: the server refuses it too
        if type(again) is not type(frame):
            raise AssertionError(f"re-encoding changed the frame type: {frame!r} -> {again!r}")
        if isinstance(frame, SignalRequest | RelayedSignal):
            if not _payloads_equal(frame.payload, again.payload):
                raise AssertionError(f"re-encoding changed the payload: {frame!r} -> {again!r}")
        elif again != frame:
            raise AssertionError(f"re-encoding changed the frame: {frame!r} -> {again!r}")
        if isinstance(frame, SignalRequest | RelayedSignal):
            signal_problem(SELF_ID, "fuzz-peer-id-000000000", frame.payload, MAX_SDP_BYTES)
    try:
        channel = normalize_channel(text)
    except ProtocolError:
        return
    if not CHANNEL_NAME_PATTERN.fullmatch(channel):
        raise AssertionError(f"normalize_channel returned the invalid name {channel!r}")


def run_atheris(argv: list[str]) -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        check_one(provider.ConsumeUnicodeNoSurrogates(len(data)))

    atheris.instrument_all()
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def run_hypothesis(examples: int, seed: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    ids = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True), st.text(max_size=70))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )
    roles = st.sampled_from(["voter", "learner", "none", "king"]) | json_values

    def hexes(digits: int) -> st.SearchStrategy[Any]:
        return st.from_regex(f"[0-9a-f]{{{digits}}}", fullmatch=True) | st.text(max_size=digits)

    payloads = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["offer", "answer", "restart", "x"]) | json_values,
            "session": st.text(max_size=70) | json_values,
            "sdp": st.text(max_size=200) | json_values,
        },
    )
    objects = st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "challenge",
                    "hello",
                    "role",
                    "signal",
                    "welcome",
                    "peer_joined",
                    "peer_role",
                    "peer_left",
                    "error",
                    "?",
                ]
            )
        },
        optional={
            "peer_id": ids,
            "token": ids,
            "nonce": hexes(32),
            "public_key": hexes(64),
            "signature": hexes(128),
            "to": ids,
            "from": ids,
            "payload": payloads | json_values,
            "channel": st.text(max_size=70),
            "peers": st.lists(ids, max_size=4) | json_values,
            "code": st.text(max_size=20) | json_values,
            "message": st.text(max_size=40) | json_values,
            "fatal": json_values,
            "role": roles,
            "roles": st.dictionaries(ids, roles, max_size=4) | json_values,
        },
    )
    texts = st.one_of(
        st.text(max_size=300),
        objects.map(json.dumps),
        st.tuples(objects.map(json.dumps), st.randoms(use_true_random=False)).map(
            lambda pair: _mutate(pair[0], pair[1])
        ),
    )

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(texts)
    def loop(text: str) -> None:
        check_one(text)

    print(f"hypothesis fuzz loop: {examples} examples, seed {seed}")
    loop()
    print("no failures")


def _mutate(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        if not chars:
            break
        position = rng.randrange(len(chars))
        choice = rng.random()
        if choice < 0.4:
            chars[position] = rng.choice('{}[]",:\\0123456789aeflnrstu \u00e9\ud7ff')
        elif choice < 0.7:
            del chars[position]
        elif choice < 0.9:
            chars.insert(position, rng.choice('{}[]",:\\'))
        else:
            del chars[position:]
    return "".join(chars)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypothesis", action="store_true", help="use the hypothesis loop")
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=None)
    arguments, rest = parser.parse_known_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    if rest and not rest[0].startswith("-") and not arguments.hypothesis:
        try:
            with open(rest[0], "rb") as replay:
                check_one(replay.read().decode("utf-8", errors="replace"))
            print(f"{rest[0]}: ok")
            return
        except IsADirectoryError:
            pass  # a corpus directory for atheris
    if arguments.hypothesis:
        run_hypothesis(arguments.examples, seed)
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        print(
            "atheris is not installed (pip install atheris; it needs a clang/libFuzzer build"
            " on some platforms). Running the hypothesis loop instead."
        )
        run_hypothesis(arguments.examples, seed)
        return
    run_atheris([sys.argv[0], *rest])


if __name__ == "__main__":
    main()
