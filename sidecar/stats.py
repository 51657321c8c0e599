"""Counters and latencies for ``system.stats``: per method, per error kind, per process."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any

# Latency samples kept per method (a sliding window, so p99 follows recent behaviour).
_WINDOW = 2048


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


class Stats:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.errors_by_kind: Counter[str] = Counter()
        self.errors_by_method: Counter[str] = Counter()
        self.latencies: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=_WINDOW))
        self.in_flight = 0
        self.connections = 0
        self.connections_total = 0
        self.connections_paused = 0  # not read until their replies are (backpressure)
        self.sweeps = 0
        self.swept = 0
        self.last_sweep_at: float | None = None

    def record(self, method: str, seconds: float, error_kind: str | None) -> None:
        self.calls[method] += 1
        self.latencies[method].append(seconds)
        if error_kind:
            self.errors_by_kind[error_kind] += 1
            self.errors_by_method[method] += 1

    def methods(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for method, count in sorted(self.calls.items()):
            samples = sorted(self.latencies[method])
            out[method] = {
                "calls": count,
                "errors": self.errors_by_method[method],
                "p50Ms": round(_percentile(samples, 0.50) * 1000, 3),
                "p99Ms": round(_percentile(samples, 0.99) * 1000, 3),
            }
        return out
