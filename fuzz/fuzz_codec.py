"""Fuzz the wire codec for longer than the test suite does.

The property: ``decode`` of any bytes either returns a message that re-encodes to an equal
message, or raises ``CodecError`` - never any other exception.

With atheris (coverage-guided, libFuzzer flags)::

    pip install atheris
    python fuzz/fuzz_codec.py -runs=1000000            # a fixed number of inputs
    python fuzz/fuzz_codec.py -max_total_time=600 corpus/   # ten minutes, keep a corpus

Without atheris, a hypothesis-driven loop (random bytes, random msgpack structures and
mutated valid frames) runs instead::

    python fuzz/fuzz_codec.py --hypothesis [--examples 20000] [--seed N]

A failing input is printed (atheris also writes it to ``crash-*``); replay it with
``python fuzz/fuzz_codec.py crash-<hash>``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import msgpack

from raftchat.raft.codec import CodecError, decode, encode
from raftchat.raft.messages import MESSAGE_TYPES


def check_one(frame: bytes) -> None:
    try:
        message = decode(frame)
    except CodecError:
        return
    if type(message) not in MESSAGE_TYPES:
        raise AssertionError(f"decode returned {type(message).__name__}")
    again = decode(encode(message))
    if again != message:
        raise AssertionError(f"re-encoding changed the message: {message!r} -> {again!r}")


def run_atheris(argv: list[str]) -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        check_one(data)

    atheris.instrument_all()
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def run_hypothesis(examples: int, seed: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_codec import any_message, msgpack_values  # the suite's generic strategies

    frames = st.one_of(
        st.binary(max_size=2048),
        st.lists(msgpack_values, max_size=12).map(lambda value: msgpack.packb(value)),
        st.tuples(any_message, st.randoms(use_true_random=False)).map(
            lambda pair: _mutate(encode(pair[0]), pair[1])
        ),
    )

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames)
    def loop(frame: bytes) -> None:
        check_one(frame)

    print(f"hypothesis fuzz loop: {examples} examples, seed {seed}")
    loop()
    print("no failures")


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        position = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.5:
            data[position] ^= 1 << rng.randrange(8)
        elif choice < 0.7:
            del data[position]
        elif choice < 0.9:
            data.insert(position, rng.randrange(256))
        else:
            del data[position:]
    return bytes(data)


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
                check_one(replay.read())
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
