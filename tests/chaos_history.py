"""The history checker of the chaos test: what every node printed must tell one story.

Input is what headless node processes printed (``message`` and ``ack`` events), one
list of events per process lifetime (a restarted node starts a new lifetime and prints
again from the end of its own snapshot), plus a *reference*: the messages a fresh node
printed after joining at the end, which is the whole committed history. The checks:

- the reference has strictly increasing indices and every text at most once (so every
  message, acknowledged or not, is in the log at most once) and only texts that were
  really sent;
- within one lifetime a node's message indices strictly increase (its view never went
  backwards) and every message it printed is the reference's message at that index
  (the same order on every node);
- every acknowledged message is in the reference at the index of its ack, from its
  sender, and distinct acks of a sender point at distinct entries;
- each sender's messages appear in the order it sent them (texts are ``name#seq``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class NodeHistory:
    """What one node (by name, across restarts) printed."""

    name: str
    node_id: str
    lifetimes: Sequence[Sequence[Event]]


def message_text(sender: str, seq: int) -> str:
    return f"{sender}#{seq}"


def parse_text(text: str) -> tuple[str, int] | None:
    """``(sender, seq)`` of a chaos message text, None for anything else."""
    sender, sep, seq = text.rpartition("#")
    if not sep or not seq.isdigit():
        return None
    return sender, int(seq)


def check_history(
    nodes: Iterable[NodeHistory],
    reference: Sequence[Event],
    sent: dict[str, set[str]],
    extra_texts: frozenset[str] = frozenset(),
) -> list[str]:
    """Every violation found (empty: the history is consistent).

    ``sent`` maps a sender's name to the texts it was given to send; ``extra_texts``
    are other texts the test sent (e.g. an end marker).
    """
    problems: list[str] = []
    by_index = _check_reference(reference, sent, extra_texts, problems)
    for node in nodes:
        _check_node(node, by_index, problems)
    _check_sender_order(reference, problems)
    return problems


def _check_reference(
    reference: Sequence[Event],
    sent: dict[str, set[str]],
    extra_texts: frozenset[str],
    problems: list[str],
) -> dict[int, Event]:
    by_index: dict[int, Event] = {}
    first_index_of: dict[str, int] = {}
    previous = 0
    all_sent = set().union(*sent.values()) | extra_texts if sent else set(extra_texts)
    for message in reference:
        index, text = message["index"], message["text"]
        if index <= previous:
            problems.append(f"reference: index {index} after {previous}")
        previous = max(previous, index)
        by_index[index] = message
        if text in first_index_of:
            problems.append(f"{text!r} committed twice: at {first_index_of[text]} and at {index}")
        else:
            first_index_of[text] = index
        if text not in all_sent:
            problems.append(f"{text!r} at {index} was never sent")
    return by_index


def _check_node(node: NodeHistory, by_index: dict[int, Event], problems: list[str]) -> None:
    acked_at: dict[int, str] = {}
    for run, events in enumerate(node.lifetimes, 1):
        where = f"{node.name} run {run}"
        previous = 0
        for event in events:
            if event["event"] == "message":
                index = event["index"]
                if index <= previous:
                    problems.append(f"{where}: view went back from index {previous} to {index}")
                previous = max(previous, index)
                expected = by_index.get(index)
                if expected is None:
                    problems.append(
                        f"{where}: printed {event['text']!r} at {index}, "
                        "where the reference has no message"
                    )
                elif (expected["id"], expected["text"]) != (event["id"], event["text"]):
                    problems.append(
                        f"{where}: index {index} is {event['text']!r} ({event['id']}), "
                        f"the reference has {expected['text']!r} ({expected['id']})"
                    )
            elif event["event"] == "ack":
                _check_ack(node, where, event, by_index, acked_at, problems)


def _check_ack(
    node: NodeHistory,
    where: str,
    ack: Event,
    by_index: dict[int, Event],
    acked_at: dict[int, str],
    problems: list[str],
) -> None:
    index, ack_id = ack["index"], ack["id"]
    committed = by_index.get(index)
    if committed is None:
        problems.append(f"{where}: acknowledged {ack_id} at {index}, which is not in the log")
        return
    parsed = parse_text(committed["text"])  # None for a text other than name#seq (a marker)
    from_sender = committed["id"].split(":")[0] == node.node_id
    if not from_sender or (parsed is not None and parsed[0] != node.name):
        problems.append(
            f"{where}: acknowledged {ack_id} at {index}, but the log has "
            f"{committed['text']!r} ({committed['id']}) there"
        )
    other = acked_at.setdefault(index, ack_id)
    if other != ack_id:
        problems.append(f"{where}: {ack_id} and {other} both acknowledged at {index}")


def _check_sender_order(reference: Sequence[Event], problems: list[str]) -> None:
    last_seq: dict[str, tuple[int, int]] = {}
    for message in reference:
        parsed = parse_text(message["text"])
        if parsed is None:
            continue
        sender, seq = parsed
        before = last_seq.get(sender)
        if before is not None and seq <= before[0]:
            problems.append(
                f"{sender}'s messages out of sending order: #{seq} at {message['index']} "
                f"after #{before[0]} at {before[1]}"
            )
        last_seq[sender] = (seq, message["index"])
