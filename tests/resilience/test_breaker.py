"""The circuit breaker's state machine (on a hand-driven clock), and ResilientStore's retries,
deadlines and breaker against a real QdrantStore talking HTTP through a cuttable proxy to the
fake Qdrant endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from sidecar import errors
from sidecar.config import Config
from sidecar.resilience import CircuitBreaker, ResilientStore, full_jitter, request_timeout
from sidecar.store.qdrant import QdrantStore
from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess


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


def test_full_jitter_stays_under_the_cap() -> None:
    values = [full_jitter(attempt, 0.05, 1.0) for attempt in range(12) for _ in range(50)]
    assert all(0 <= v <= 1.0 for v in values)
    assert max(values) > 0.5  # large attempts do reach towards the cap
    assert all(full_jitter(0, 0.05, 1.0) <= 0.05 for _ in range(50))


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
    with request_timeout(300), pytest.raises(errors.Timeout) as caught:
        await store.count(None)
    elapsed = anyio.current_time() - started
    assert caught.value.extra == {"timeoutMs": 300}
    assert elapsed < config.read_timeout_ms / 1000  # the request's deadline, not the class's
    assert store.timeouts == 1
    await store.close()
