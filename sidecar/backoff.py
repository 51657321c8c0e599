"""The one backoff rule every retry in memoryd uses.

Store calls (``sidecar/resilience.py``), the HTTP model services (embedding, reranking:
``sidecar/embedding/transport.py``) and the journal applier's pauses each hold a ``Backoff``
and ask it, after a failure, how long to wait before trying again. Exponential backoff with
full jitter spreads the retries of many callers; a server's ``Retry-After`` replaces the
computed pause; and no pause is handed out that would end after the request's deadline
(``sidecar/deadline.py``) — the caller gives up at once instead.
"""

from __future__ import annotations

import random

from sidecar import deadline

_MAX_EXPONENT = 30  # base·2^30 is far past any cap; keeps the float finite


class Backoff:
    """Pauses for one retry loop: the n-th (0-based) is uniform in [0, min(cap, base·2^n)],
    at most ``retries`` of them (None: unbounded, for loops that never give up)."""

    def __init__(self, base: float, cap: float, *, retries: int | None = None) -> None:
        self.base = base
        self.cap = cap
        self.retries = retries
        self.attempt = 0  # pauses handed out since the last reset

    @property
    def exhausted(self) -> bool:
        return self.retries is not None and self.attempt >= self.retries

    def jitter(self) -> float:
        """Full jitter for the next pause (counts nothing)."""
        exponent = min(self.attempt, _MAX_EXPONENT)
        return random.uniform(0.0, min(self.cap, self.base * 2.0 ** exponent))

    def next(self, hint: float | None = None, *, left: float | None = None) -> float | None:
        """Seconds to wait before the next attempt — ``hint`` (a server's ``Retry-After``)
        when given, else full jitter — or None when there is to be no next attempt: the
        retries are used up, or the pause would not end within ``left`` seconds (default:
        what is left of the request's deadline)."""
        if self.exhausted:
            return None
        pause = self.jitter() if hint is None else hint
        if pause >= (deadline.remaining() if left is None else left):
            return None
        self.attempt += 1
        return pause

    def reset(self) -> None:
        self.attempt = 0
