"""Deadlines, retries and a circuit breaker around the store.

``ResilientStore`` wraps any ``Store`` and gives every call:

1. a deadline: the operation class's timeout (``read_timeout_ms``, ``write_timeout_ms``,
   ``admin_timeout_ms``), or the request's deadline when that is sooner (sidecar/deadline.py:
   the request's ``timeoutMs``, else its method's operation class). Running out raises
   ``Timeout`` with ``data.timeoutMs``; nothing waits forever.
2. retries of transient failures (``BackendUnavailable``, which the stores raise for refused
   or reset connections, HTTP 408/429/5xx and a dead engine worker) with exponential backoff
   and full jitter (sidecar/backoff.py), at most ``store_retries`` times and never past the
   deadline. A call that timed out is not retried: it already used the whole deadline.
3. a circuit breaker shared by every call to the same backend: while it is open calls fail at
   once with ``backend_unavailable`` instead of piling up on a dead server. It counts store
   failures only: errors the store raised, and timeouts while the store answered nothing at
   all for a whole read deadline. A timeout while the store kept answering other calls is time
   spent queueing behind them (the embedded engine does one call at a time), or a caller's
   tiny ``timeoutMs``: one client's flood must not take the store away from the others.

Which operations are retried, and why that is safe: all of them except ``open`` and
``close``. Every Store operation memoryd issues is idempotent —

- ``upsert``: whole points under ids memoryd chose before the first attempt (random UUIDs made
  once per request, or deterministic legacy ids), so a repeat writes the same points again;
- ``delete``: by id; deleting an id that is already gone is a no-op;
- ``ensure_collection``: creates only when absent and checks the dimension otherwise;
- ``retrieve``, ``search``, ``scroll``, ``count``, ``facet``, ``info``: reads.

Filtered deletes are built by the writer from ``count`` + ``scroll`` + ``delete`` by id, so
no non-idempotent call ever reaches this layer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import anyio
from loguru import logger

from sidecar import deadline as request_deadline
from sidecar import errors
from sidecar.backoff import Backoff
from sidecar.config import Config
from sidecar.deadline import Deadline
from sidecar.domain.filters import Filter
from sidecar.domain.lexical import SparseVector
from sidecar.store.base import (
    OrderBy,
    PayloadIndex,
    Point,
    Record,
    ScoredRecord,
    Store,
    StoreInfo,
)

T = TypeVar("T")
OpClass = Literal["read", "write", "admin"]

# Failures that say "the backend cannot serve now", as opposed to "this request is wrong".
TRANSIENT: tuple[type[errors.MemorydError], ...] = (errors.BackendUnavailable, errors.Timeout)


# -- deadlines ---------------------------------------------------------------------------------

def deadline_for(config: Config, op: OpClass) -> Deadline:
    """The tighter of the operation class's deadline and the request's."""
    own = Deadline({"read": config.read_timeout_ms, "write": config.write_timeout_ms,
                    "admin": config.admin_timeout_ms}[op])
    request = request_deadline.current()
    if request is not None and request.at < own.at:
        return request
    return own


# -- circuit breaker ---------------------------------------------------------------------------

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive transient failures, or when more than
    ``failure_rate`` of the calls in the last ``window`` seconds failed (once at least
    ``min_calls`` were made). Open → half-open after ``open_seconds``: one probe call goes
    through, the others still fail fast; the probe's success closes the breaker, its failure
    opens it again for another ``open_seconds``.

    A timeout is a failure only once the store has answered no call for ``silence`` seconds
    (``record_timeout``)."""

    def __init__(self, *, failures: int = 5, failure_rate: float = 0.5, window: float = 30.0,
                 min_calls: int = 20, open_seconds: float = 5.0, silence: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures
        self.failure_rate = failure_rate
        self.window = window
        self.min_calls = min_calls
        self.open_seconds = open_seconds
        self.silence = silence
        self.clock = clock
        self.last_answer_at = clock()  # when the store last answered a call
        self.state: BreakerState = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.probe_in_flight = False
        self.calls: deque[tuple[float, bool]] = deque()  # (when, ok) inside the window
        # counters for system.stats
        self.successes = 0
        self.failures = 0
        self.rejected = 0
        self.times_opened = 0
        self.queued_timeouts = 0  # timeouts not counted: the store was answering meanwhile
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # wall clock, for humans
        self.last_change_at: float = time.time()

    @classmethod
    def from_config(cls, config: Config) -> CircuitBreaker:
        return cls(failures=config.breaker_failures, failure_rate=config.breaker_failure_rate,
                   window=config.breaker_window, min_calls=config.breaker_min_calls,
                   open_seconds=config.breaker_open_seconds,
                   silence=config.read_timeout_ms / 1000)

    # ---- state machine
    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            logger.log("WARNING" if state == "open" else "INFO",
                       "store circuit breaker {} -> {}{}", self.state, state,
                       f" ({self.last_error})" if state == "open" and self.last_error else "")
            self.state = state
            self.last_change_at = time.time()
        if state == "open":
            self.opened_at = self.clock()
            self.times_opened += 1
        elif state == "closed":
            self.opened_at = None
            self.consecutive_failures = 0
            self.calls.clear()

    def retry_at(self) -> float | None:
        """When (monotonic clock) an open breaker lets a probe through; None unless open."""
        if self.state != "open" or self.opened_at is None:
            return None
        return self.opened_at + self.open_seconds

    def acquire(self) -> bool:
        """Ask to make a call. Returns whether this call is the half-open probe; raises
        ``BackendUnavailable`` when the call must fail fast."""
        if self.state == "open":
            assert self.opened_at is not None
            if self.clock() - self.opened_at < self.open_seconds:
                self.rejected += 1
                raise self._open_error()
            self._set("half_open")
        if self.state == "half_open":
            if self.probe_in_flight:
                self.rejected += 1
                raise self._open_error()
            self.probe_in_flight = True
            return True
        return False

    def _open_error(self) -> errors.BackendUnavailable:
        cause = f": {self.last_error}" if self.last_error else ""
        return errors.BackendUnavailable(f"the store is unavailable (circuit breaker "
                                         f"{self.state.replace('_', '-')}){cause}",
                                         breaker=self.state)

    def release(self, probe: bool) -> None:
        """A call ended without a verdict (cancelled, or failed for a non-transient reason
        that says nothing about the backend's health)."""
        if probe:
            self.probe_in_flight = False

    def record_success(self, probe: bool) -> None:
        self.successes += 1
        self.last_answer_at = self.clock()
        self.consecutive_failures = 0
        if probe:
            self.probe_in_flight = False
        if self.state != "closed":
            self._set("closed")
        else:
            self._remember(True)

    def record_timeout(self, probe: bool, error: errors.Timeout) -> None:
        """A call ran out of its deadline. If the store answered some call within the last
        ``silence`` seconds it is alive: the time went waiting behind other calls (or the
        caller allowed almost none), which says nothing about the store's health. Only a
        store silent for that long — hung, or too slow for any deadline — is failing."""
        if self.clock() - self.last_answer_at < self.silence:
            self.queued_timeouts += 1
            self.release(probe)
        else:
            self.record_failure(probe, error)

    def record_failure(self, probe: bool, error: errors.MemorydError) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error.message
        self.last_error_at = time.time()
        if probe:
            self.probe_in_flight = False
        if self.state == "half_open":
            self._set("open")
            return
        if self.state == "open":
            return
        self._remember(False)
        if self.consecutive_failures >= self.failures_to_open or self._rate_exceeded():
            self._set("open")

    def _remember(self, ok: bool) -> None:
        now = self.clock()
        self.calls.append((now, ok))
        while self.calls and now - self.calls[0][0] > self.window:
            self.calls.popleft()

    def _rate_exceeded(self) -> bool:
        if len(self.calls) < self.min_calls:
            return False
        failed = sum(1 for _, ok in self.calls if not ok)
        return failed / len(self.calls) > self.failure_rate

    def snapshot(self) -> dict[str, Any]:
        retry_at = self.retry_at()
        return {
            "state": self.state,
            "consecutiveFailures": self.consecutive_failures,
            "successes": self.successes,
            "failures": self.failures,
            "rejected": self.rejected,
            "timesOpened": self.times_opened,
            "queuedTimeouts": self.queued_timeouts,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
            "lastChangeAt": self.last_change_at,
            "probeInSeconds": (round(max(0.0, retry_at - self.clock()), 3)
                               if retry_at is not None else None),
        }


# -- the wrapper ------------------------------------------------------------------------------

class ResilientStore(Store):
    """Any Store, with deadlines, retries and the breaker (see the module docstring)."""

    def __init__(self, inner: Store, config: Config,
                 breaker: CircuitBreaker | None = None) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.config = config
        self.breaker = breaker or CircuitBreaker.from_config(config)
        self.retries = 0  # attempts beyond the first, over the process's life
        self.timeouts = 0

    async def call(self, op: OpClass, fn: Callable[[], Awaitable[T]], *,
                   deadline: Deadline | None = None, retry: bool = True) -> T:
        """Run ``fn`` under ``op``'s deadline (or ``deadline``), retrying transient
        failures when ``retry``."""
        deadline = deadline or deadline_for(self.config, op)
        backoff = Backoff(self.config.store_retry_base_ms / 1000,
                          self.config.store_retry_max_ms / 1000,
                          retries=self.config.store_retries if retry else 0)
        while True:
            if deadline.expired:
                self.timeouts += 1
                raise deadline.error()
            probe = self.breaker.acquire()
            try:
                with anyio.fail_after(deadline.remaining()):
                    result = await fn()
            except TimeoutError:
                raise self._timed_out(probe, deadline) from None
            except TRANSIENT as exc:
                self.breaker.record_failure(probe, exc)
                # none when the next attempt could not finish in time anyway
                pause = backoff.next(left=deadline.remaining())
                if pause is None:
                    raise
                self.retries += 1
                await anyio.sleep(pause)
                continue
            except anyio.get_cancelled_exc_class():
                # the request's scope, firing with ours (the loop lagged past its grace): still
                # this call's timeout; any other cancellation says nothing about the store
                if deadline.expired:
                    self._timed_out(probe, deadline)
                else:
                    self.breaker.release(probe)
                raise
            except BaseException:
                self.breaker.release(probe)  # the request itself is wrong
                raise
            self.breaker.record_success(probe)
            return result

    def _timed_out(self, probe: bool, deadline: Deadline) -> errors.Timeout:
        self.timeouts += 1
        error = deadline.error()
        # The embedded engine answers reads nobody waits for any more without running
        # them: no success is recorded, but the store is answering all the same.
        if (answered := self.inner.answered_at) is not None:
            self.breaker.last_answer_at = max(self.breaker.last_answer_at, answered)
        self.breaker.record_timeout(probe, error)
        return error

    # ---- Store
    async def open(self) -> None:
        await self.call("admin", self.inner.open, retry=False)

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        await self.call("admin", lambda: self.inner.ensure_collection(dimension, indexes))

    async def upsert(self, points: Sequence[Point]) -> None:
        await self.call("write", lambda: self.inner.upsert(points))

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        return await self.call("read", lambda: self.inner.retrieve(ids, with_vector=with_vector))

    async def delete(self, ids: Sequence[str]) -> None:
        await self.call("write", lambda: self.inner.delete(ids))

    async def search(self, vector: Sequence[float], *, filter: Filter | None, limit: int,
                     score_threshold: float | None = None, with_vector: bool = False,
                     sparse: SparseVector | None = None) -> list[ScoredRecord]:
        return await self.call("read", lambda: self.inner.search(
            vector, filter=filter, limit=limit, score_threshold=score_threshold,
            with_vector=with_vector, sparse=sparse))

    async def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> int:
        return await self.call("write", lambda: self.inner.set_sparse(vectors))

    async def scroll(self, *, filter: Filter | None, limit: int, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = False,
                     offset: str | None = None) -> list[Record]:
        return await self.call("read", lambda: self.inner.scroll(
            filter=filter, limit=limit, order_by=order_by, with_payload=with_payload,
            with_vector=with_vector, offset=offset))

    async def count(self, filter: Filter | None) -> int:
        return await self.call("read", lambda: self.inner.count(filter))

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        return await self.call("read", lambda: self.inner.facet(key, filter, limit))

    async def info(self) -> StoreInfo:
        return await self.call("read", self.inner.info)

    async def close(self) -> None:
        await self.inner.close()

    def stats(self) -> dict[str, Any]:
        return {"retries": self.retries, "timeouts": self.timeouts}
