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
is cancelled ``GRACE`` later: it stops only what has no bound of its own. The scope has no
deadline of its own (a loop timer per request was most of a no-op request's cost): one timer
per event loop cancels the scopes of the requests that outlive theirs (``_Expiry``).
(A scope nested in another with the same deadline cannot catch its own cancellation: the
outer one's would pass through it, reply and all.)

Tasks started outside a request (the journal applier, the TTL sweeper) have no deadline here;
their calls keep their operation class's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType

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


class _Expiry:
    """The cancel scopes of the requests in flight on one event loop, each with the loop time
    at which it is cancelled (its deadline + ``GRACE``), and one loop timer for the soonest.

    Cheaper than each scope's own deadline: that is a loop timer per request (made, pushed
    onto the loop's heap, cancelled), this is a dict entry; the timer is re-armed only when a
    request's deadline is sooner than the one it is set for. It is ``scope.cancel()`` that
    stops the request, as the scope's own deadline would, so anyio's shielded scopes inside it
    hold (a native ``Task.cancel()`` would pass through them)."""

    __slots__ = ("loop", "new_scope", "scopes", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # The class ``anyio.CancelScope()`` returns on this loop's backend: that call looks
        # the backend up (sniffio) each time, about a microsecond per request.
        self.new_scope: Callable[[], anyio.CancelScope] = type(anyio.CancelScope())
        self.scopes: dict[anyio.CancelScope, float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    def add(self, scope: anyio.CancelScope, at: float) -> None:
        self.scopes[scope] = at
        if at < self.timer_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        # The timer may be stale (its request finished): cancel what is due, re-arm for the
        # soonest left.
        self.timer, self.timer_at = None, math.inf
        now = self.loop.time()
        soonest = math.inf
        for scope, at in list(self.scopes.items()):
            if at <= now:
                del self.scopes[scope]
                scope.cancel("the request's deadline passed")
            elif at < soonest:
                soonest = at
        if soonest < math.inf:
            self._arm(soonest)


_expiry: _Expiry | None = None


class within:  # lower case: used like the context manager function it replaced
    """Run the block under a deadline ``timeout_ms`` from now, or the enclosing request's
    when that one is sooner. Raises ``Timeout`` (``data.timeoutMs``) when the deadline's
    cancel scope stopped the block; a block that finished keeps its result."""

    __slots__ = ("_expiry", "_scope", "_token", "deadline", "timeout_ms")

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._scope: anyio.CancelScope | None = None

    def __enter__(self) -> Deadline:
        global _expiry
        self.deadline = deadline = Deadline(self.timeout_ms)
        outer = _current.get()
        if outer is not None and outer.at <= deadline.at:
            return outer  # nested and looser: the enclosing deadline already bounds it
        loop = asyncio.get_running_loop()
        expiry = _expiry
        if expiry is None or expiry.loop is not loop:
            expiry = _expiry = _Expiry(loop)
        self._expiry = expiry
        self._token = _current.set(deadline)
        self._scope = scope = expiry.new_scope()
        scope.__enter__()
        expiry.add(scope, loop.time() + self.timeout_ms / 1000 + GRACE)
        return deadline

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        scope = self._scope
        if scope is None:
            return False
        self._expiry.scopes.pop(scope, None)
        try:
            swallowed = scope.__exit__(exc_type, exc, tb)
        finally:
            _current.reset(self._token)
        if scope.cancelled_caught:
            raise self.deadline.error() from None
        return bool(swallowed)
