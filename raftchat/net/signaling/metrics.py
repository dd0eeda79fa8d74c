"""The signaling server's counters, served at ``GET /metrics`` in Prometheus text format.

Every limit of the server shows here: each error it answers (an error frame, or an HTTP
503 before a WebSocket exists) counts under its code in
``raftchat_signaling_errors_total``, and every half-sent request it closes counts in
``raftchat_signaling_http_timeouts_total``. Gauges are read from the server when the
page is rendered. No channel name or peer id ever appears here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "raftchat_signaling_"


@dataclass
class _Family:
    name: str
    kind: str
    help: str
    label: str | None = None
    values: dict[str, float] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Counters (:meth:`inc`) and gauges (:meth:`gauge`, read at render time)."""

    def __init__(self, error_codes: Iterable[str]) -> None:
        self._families: dict[str, _Family] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._counter("connections_total", "TCP connections accepted.")
        self._counter(
            "errors_total",
            "Errors answered, by code: error frames, and HTTP 503 refusals.",
            "code",
            error_codes,
        )
        self._counter(
            "http_timeouts_total",
            "Connections closed because a request's headers (or body) did not arrive in time.",
            "phase",
            ("header", "body"),
        )
        self._counter("joins_total", "Hellos accepted.")
        self._counter("shared_websockets_total", "Shared WebSockets opened (several channels).")
        self._counter("sessions_opened_total", "Channel sessions opened (challenges sent).")
        self._counter("frames_received_total", "WebSocket frames received from clients.")
        self._counter("signals_relayed_total", "Signals relayed from one peer to another.")
        self._counter("witness_frames_received_total", "Witness frames passed to the witness.")
        self._counter("witness_frames_sent_total", "Witness answers sent to peers.")

    def _counter(
        self, name: str, help: str, label: str | None = None, label_values: Iterable[str] = ()
    ) -> None:
        family = _Family(PREFIX + name, "counter", help, label)
        family.values = {value: 0.0 for value in label_values} if label else {"": 0.0}
        self._families[name] = family

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A gauge whose value ``read()`` gives when the page is rendered."""
        self._families[name] = _Family(PREFIX + name, "gauge", help)
        self._gauges[name] = read

    def inc(self, name: str, label_value: str = "", amount: float = 1.0) -> None:
        values = self._families[name].values
        values[label_value] = values.get(label_value, 0.0) + amount

    def value(self, name: str, label_value: str = "") -> float:
        """A counter's value now (or a gauge's), for tests and the load report."""
        if name in self._gauges:
            return float(self._gauges[name]())
        return self._families[name].values.get(label_value, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name, family in self._families.items():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if name in self._gauges:
                lines.append(f"{family.name} {_number(self._gauges[name]())}")
                continue
            for label_value, value in sorted(family.values.items()):
                labels = f'{{{family.label}="{_escape(label_value)}"}}' if family.label else ""
                lines.append(f"{family.name}{labels} {_number(value)}")
        return "\n".join(lines) + "\n"
