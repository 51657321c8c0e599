"""One deadline per request.

The dispatcher opens it (``within``) around each request: its method's operation class's
``read/write/admin_timeout_ms``, shortened by the request's ``timeoutMs``. Everything the
request waits for lives inside it and ends by it — embedding and reranking calls, store calls
(each also bounded by its own operation class's deadline, see ``sidecar/resilience.py``), the
wait for a journaled write to be applied — and the reply is then ``timeout`` with
``data.timeoutMs``.

The parts that wait read the deadline from here (``current``, ``remaining``) and end at it by
their own scopes, each with its own error and counters; a journaled write answers
``queued: true`` there (its commit and wait are shielded from this scope: once appended, a
write's reply must say what became of it, never ``timeout``). ``within``'s cancel scope
fires ``GRACE`` later: it stops only what has no bound of its own.
(A scope nested in another with the same deadline cannot catch its own cancellation: the
outer one's would pass through it, reply and all.)

Tasks started outside a request (the journal applier, the TTL sweeper) have no deadline here;
their calls keep their operation class's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

import anyio

from sidecar import errors

# How long after the deadline the request's own cancel scope fires (see the docstring).
GRACE = 0.1


class Deadline:
    """An absolute point on the monotonic clock plus the budget it was made from (what a
    ``timeout`` error reports as ``timeoutMs``)."""

    __slots__ = ("at", "timeout_ms")

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.at = time.monotonic() + timeout_ms / 1000

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def loop_time(self) -> float:
        """The deadline on ``anyio.current_time()``'s clock (what cancel scopes take)."""
        return anyio.current_time() + (self.at - time.monotonic())

    def error(self, message: str | None = None) -> errors.Timeout:
        return errors.Timeout(self.timeout_ms, message)


_current: ContextVar[Deadline | None] = ContextVar("memoryd_request_deadline", default=None)


def current() -> Deadline | None:
    """The running request's deadline; None outside a request."""
    return _current.get()


def remaining(at_most: float = math.inf) -> float:
    """Seconds left of the request's deadline, at most ``at_most`` (its default: unbounded
    outside a request)."""
    deadline = _current.get()
    return at_most if deadline is None else min(at_most, deadline.remaining())


def expired() -> bool:
    """True when the running request's deadline has passed."""
    deadline = _current.get()
    return deadline is not None and deadline.expired


def clamp(at: float | None, default: float) -> tuple[float, Deadline | None]:
    """A part's own deadline on ``anyio.current_time()``'s clock — ``at`` when its caller gave
    one, else ``default`` seconds from now — but never later than the request's; and the
    request's ``Deadline`` when that is the one that binds (its ``timeoutMs`` is what a
    timeout then reports)."""
    own = anyio.current_time() + default if at is None else at
    request = _current.get()
    if request is not None and request.loop_time() <= own:
        return request.loop_time(), request
    return own, None


@contextlib.contextmanager
def within(timeout_ms: int) -> Iterator[Deadline]:
    """Run the block under a deadline ``timeout_ms`` from now, or the enclosing request's
    when that one is sooner. Raises ``Timeout`` (``data.timeoutMs``) when the deadline's
    cancel scope stopped the block; a block that finished keeps its result."""
    deadline = Deadline(timeout_ms)
    outer = _current.get()
    if outer is not None and outer.at <= deadline.at:
        yield outer  # nested and looser: the enclosing deadline already bounds it
        return
    token = _current.set(deadline)
    try:
        with anyio.CancelScope(deadline=deadline.loop_time() + GRACE) as scope:
            yield deadline
    finally:
        _current.reset(token)
    if scope.cancelled_caught:
        raise deadline.error()
