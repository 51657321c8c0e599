"""Progress of long CLI work (export, import, migrate, reembed).

On a terminal: a tqdm bar on stderr with count, rate and ETA. Otherwise (``--json``, pipes,
CI logs): one JSON object per line on stderr, at most one a second plus a last one, so a
supervisor can parse it and a log stays short.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

import msgspec
from tqdm import tqdm

# Seconds between two JSON progress lines.
_JSON_EVERY = 1.0


class Progress:
    """``with Progress("export", total) as p: p.advance(n)``; ``total`` may be None."""

    def __init__(self, what: str, total: int | None = None, *, json_lines: bool = False,
                 unit: str = "records", stream: TextIO | None = None) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last_line = 0.0
        self._bar: Any = None
        if not json_lines and self.stream.isatty():
            self._bar = tqdm(total=total, desc=what, unit=f" {unit}", unit_scale=True,
                             file=self.stream, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close("done" if kind is None else "stopped")

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= _JSON_EVERY:
            self._last_line = now
            self._line("running")

    def close(self, state: str = "done") -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        if self.stream is not None:
            self._line(state)
            self.stream = None  # type: ignore[assignment]

    def _line(self, state: str) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = ((self.total - self.done) / rate
               if self.total is not None and rate > 0 and self.total >= self.done else None)
        line = {"progress": self.what, "state": state, "done": self.done, "total": self.total,
                "unit": self.unit, "rate": round(rate, 1), "elapsedS": round(elapsed, 1),
                "etaS": None if eta is None else round(eta, 1)}
        self.stream.write(msgspec.json.encode(line).decode() + "\n")
        self.stream.flush()
