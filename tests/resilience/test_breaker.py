"""The circuit breaker's state machine (on a hand-driven clock), ResilientStore's retries,
deadlines and breaker against a real QdrantStore talking HTTP through a cuttable proxy to the
fake Qdrant endpoint, and one client's flood of timed-out reads over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sidecar import deadline, errors
from sidecar.backoff import Backoff
from sidecar.config import Config
from sidecar.resilience import CircuitBreaker, ResilientStore
from sidecar.store.qdrant import QdrantStore
from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess
from tests.support import ListFlood, flood_target


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


FAIL = errors.BackendUnavailable("down")


def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, open_seconds=5, clock=clock)
    for _ in range(2):
        breaker.record_failure(breaker.acquire(), FAIL)
    assert breaker.state == "closed"
    breaker.record_success(breaker.acquire())  # a success resets the run
    for _ in range(2):
        breaker.record_failure(breaker.acquire(), FAIL)
    assert breaker.state == "closed"
    breaker.record_failure(breaker.acquire(), FAIL)
    assert breaker.state == "open"
    with pytest.raises(errors.BackendUnavailable) as caught:
        breaker.acquire()
    assert caught.value.extra["breaker"] == "open"
    snap = breaker.snapshot()
    assert snap["rejected"] == 1 and snap["timesOpened"] == 1 and snap["lastError"] == "down"


def test_half_open_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_seconds=5, clock=clock)
    breaker.record_failure(breaker.acquire(), FAIL)
    clock.now += 4.9
    with pytest.raises(errors.BackendUnavailable):
        breaker.acquire()
    clock.now += 0.2
    probe = breaker.acquire()
    assert probe and breaker.state == "half_open"
    with pytest.raises(errors.BackendUnavailable):  # only one probe at a time
        breaker.acquire()
    breaker.record_failure(probe, FAIL)  # probe failed: open again, timer restarted
    assert breaker.state == "open"
    clock.now += 5.1
    probe = breaker.acquire()
    breaker.record_success(probe)
    assert breaker.state == "closed"
    assert breaker.acquire() is False


def test_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_seconds=1, clock=clock)
    breaker.record_failure(breaker.acquire(), FAIL)
    clock.now += 2
    breaker.release(breaker.acquire())  # the probe's caller went away
    assert breaker.acquire() is True


def test_failure_rate_over_the_window_opens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=100, failure_rate=0.5, window=10, min_calls=10,
                             clock=clock)
    calls = 0
    while breaker.state == "closed" and calls < 30:
        # success, failure, failure, ...: never a long run of consecutive failures
        probe = breaker.acquire()
        if calls % 3 == 0:
            breaker.record_success(probe)
        else:
            breaker.record_failure(probe, FAIL)
        calls += 1
        clock.now += 0.1
    assert breaker.state == "open"
    assert calls >= 10  # not before min_calls
    # Old calls leave the window: a fresh breaker with the same history spread thinly stays
    # closed.
    slow = CircuitBreaker(failures=100, failure_rate=0.5, window=10, min_calls=10, clock=clock)
    for i in range(12):
        probe = slow.acquire()
        if i % 3 == 0:
            slow.record_success(probe)
        else:
            slow.record_failure(probe, FAIL)
        clock.now += 5
    assert slow.state == "closed"


def test_timeouts_count_only_while_the_store_answers_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, silence=10, clock=clock)
    late = errors.Timeout(5)
    breaker.record_success(breaker.acquire())
    for _ in range(50):  # the store answered 1 s ago: these calls only waited behind others
        clock.now += 0.02
        breaker.record_timeout(breaker.acquire(), late)
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    assert breaker.queued_timeouts == 50 and breaker.last_error is None
    clock.now += 10  # silent for a whole read deadline: the store is hung
    for _ in range(3):
        breaker.record_timeout(breaker.acquire(), late)
    assert breaker.state == "open" and breaker.snapshot()["queuedTimeouts"] == 50
    # A probe that times out after the silence re-opens; one that succeeds closes.
    clock.now += 5.1
    breaker.record_timeout(breaker.acquire(), late)
    assert breaker.state == "open"
    clock.now += 5.1
    breaker.record_success(breaker.acquire())
    assert breaker.state == "closed"


def jitter(attempt: int, base: float, cap: float) -> float:
    backoff = Backoff(base, cap)
    backoff.attempt = attempt
    return backoff.jitter()


def test_full_jitter_stays_under_the_cap() -> None:
    values = [jitter(attempt, 0.05, 1.0) for attempt in range(12) for _ in range(50)]
    assert all(0 <= v <= 1.0 for v in values)
    assert max(values) > 0.5  # large attempts do reach towards the cap
    assert all(jitter(0, 0.05, 1.0) <= 0.05 for _ in range(50))
    assert 0 <= jitter(5000, 0.05, 1.0) <= 1.0  # a loop that never gives up stays finite


def test_backoff_gives_up_when_retries_or_the_deadline_run_out() -> None:
    backoff = Backoff(0.01, 0.02, retries=2)
    assert backoff.next(left=10) is not None and backoff.next(left=10) is not None
    assert backoff.exhausted and backoff.next(left=10) is None
    backoff.reset()
    assert backoff.next(5.0, left=10) == 5.0  # a server's Retry-After replaces the jitter
    assert backoff.next(5.0, left=4.9) is None  # it would end past the deadline
    assert backoff.attempt == 1


# -- against a real HTTP endpoint ----------------------------------------------------------

@pytest.fixture(scope="module")
def fake_qdrant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeQdrantProcess]:
    fake = FakeQdrantProcess(tmp_path_factory.mktemp("fake-qdrant"))
    yield fake
    fake.stop()


@pytest.fixture
def proxy(fake_qdrant: FakeQdrantProcess) -> Iterator[CutProxy]:
    cut = CutProxy(fake_qdrant.port)
    yield cut
    cut.close()


def _config(proxy: CutProxy, **extra: object) -> Config:
    return Config(qdrant_url=proxy.url, collection="breaker_test", store_retries=3,
                  store_retry_base_ms=10, store_retry_max_ms=50, breaker_failures=8,
                  breaker_open_seconds=0.2, **extra)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_refused_connections_are_retried_then_open_the_breaker(
        proxy: CutProxy, tmp_path: Path) -> None:
    config = _config(proxy)
    store = ResilientStore(QdrantStore(config), config)
    await store.open()
    await store.ensure_collection(4, [])
    assert await store.count(None) == 0
    proxy.set_mode("refuse")
    with pytest.raises(errors.BackendUnavailable):
        await store.count(None)
    assert store.retries == 3  # 1 attempt + store_retries
    assert store.breaker.state == "closed"
    with pytest.raises(errors.BackendUnavailable):
        await store.count(None)
    assert store.breaker.state == "open"  # 8 consecutive failures
    before = store.retries
    with pytest.raises(errors.BackendUnavailable, match="circuit breaker open"):
        await store.count(None)
    assert store.retries == before  # failed fast: no attempt, no retry
    proxy.set_mode("open")
    # The breaker waits open_seconds before its probe; the next call after that closes it.
    while store.breaker.state == "open" and store.breaker.retry_at() is not None:
        await anyio.sleep(0.05)
        try:
            await store.count(None)
        except errors.BackendUnavailable:
            continue
    assert store.breaker.state == "closed"
    assert await store.count(None) == 0
    await store.close()


@pytest.mark.anyio
async def test_hanging_endpoint_times_out_at_the_request_deadline(proxy: CutProxy) -> None:
    config = _config(proxy)
    store = ResilientStore(QdrantStore(config), config)
    await store.open()
    await store.ensure_collection(4, [])
    proxy.set_mode("hang")
    started = anyio.current_time()
    with pytest.raises(errors.Timeout) as caught, deadline.within(300):
        await store.count(None)
    elapsed = anyio.current_time() - started
    assert caught.value.extra == {"timeoutMs": 300}
    assert elapsed < config.read_timeout_ms / 1000  # the request's deadline, not the class's
    assert store.timeouts == 1
    await store.close()


# -- over a real socket: one client's flood cannot open the breaker for the others ----------


def test_one_clients_timed_out_flood_leaves_the_breaker_closed_for_others(
        memoryd_factory: Any) -> None:
    """Three connections (192 requests in flight, under max_in_flight) pipeline batches of
    memory.list with a few ms of timeoutMs: the engine does one call at a time, so most of
    them run out of time queueing behind the others. The store keeps answering, so none of
    that is a store failure: another client's reads are served throughout and the breaker
    stays closed."""
    server = flood_target(memoryd_factory)
    with server.connect() as other:
        with ListFlood(server) as flood:
            served = 0
            for _ in range(400):  # bounded: the flood must have produced its timeouts by then
                assert len(other.result("memory.list", {"limit": 5})) == 5
                served += 1
                if flood.count("timeout") >= 300 and served >= 5:
                    break
        flood_kinds = flood.kinds
        stats = other.result("system.stats")["store"]
        health = other.result("system.health")
    assert flood_kinds.get("timeout", 0) >= 300, flood_kinds
    assert set(flood_kinds) <= {"ok", "timeout"}, flood_kinds  # never backend_unavailable
    assert stats["breaker"]["queuedTimeouts"] > 0  # timeouts inside store calls, not counted
    assert stats["breaker"]["timesOpened"] == 0 and stats["breaker"]["failures"] == 0
    assert health["checks"]["breaker"]["state"] == "closed"
