"""Fuzzing a real memoryd over its socket (issue 12): a few thousand generated hostile inputs
(tests/fuzzing.py: random bytes, mutated valid requests of every method, deep nesting,
invalid UTF-8, lone surrogates, huge numbers, duplicate keys, 10,000-item batches; single and
batch path). After every burst memoryd is alive and answers ``system.health``; no reply is
anything but a JSON-RPC response, none says ``internal``; its RSS stays under RSS_BOUND_MIB.
``scripts/fuzz.py`` runs the same generator at 20,000 inputs and more."""

from __future__ import annotations

from typing import Any

from tests.fuzzing import CLASSES, Generator, fuzz, rss_kb, wait_alive

COUNT = 5000
DIM = 8
# memoryd's own process (the engine worker is another) starts near 40 MiB and stays near 55
# over a few thousand inputs with no embedding model loaded; 256 MiB leaves room for what a
# 10,000-item batch holds at once while catching growth per input.
RSS_BOUND_MIB = 256


def test_generator_is_deterministic_and_covers_every_class_and_method() -> None:
    first = [case.line for case in Generator(7, DIM).cases(600, big_batch_every=0)]
    assert first == [case.line for case in Generator(7, DIM).cases(600, big_batch_every=0)]
    assert first != [case.line for case in Generator(8, DIM).cases(600, big_batch_every=0)]
    generator = Generator(11, DIM)
    cases = list(generator.cases(2000, big_batch_every=1000))
    assert {c.kind for c in cases} == set(CLASSES)
    assert {c.batch for c in cases if c.kind != "big_batch"} == {True, False}
    methods = {c.method for c in cases}
    assert set(generator.names) <= methods  # every registered method, shutdown included
    assert not any(b'"system.shutdown"' in c.line and b'"fuzz":true' not in c.line
                   for c in cases)  # never a valid shutdown


def test_thousands_of_hostile_inputs_never_stop_memoryd_nor_answer_internal(
        memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", str(DIM), env={
        "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0"})
    pid = server.proc.pid
    report = fuzz(server.socket, pid, seed=20261127, count=COUNT, burst=100, dimension=DIM)
    alive = wait_alive(pid)
    rss_mib = rss_kb(pid) // 1024 if alive else 0
    if not alive:
        server.proc.wait(30)
    log = server.log().decode(errors="replace")[-6000:]
    found = [(c.kind if c else None, c.method if c else None, c.line[:300] if c else None,
              reply["error"]["message"]) for c, reply in report.internal[:10]]
    assert report.crashes == 0 and alive, (report.crash_burst[-5:], log)
    assert not report.internal, (found, log)
    assert not report.malformed, report.malformed[:10]
    assert report.inputs >= COUNT
    assert report.health_checks >= report.lines // 100  # one per burst, each answered
    assert report.kinds.get("ok", 0) > 0 and report.kinds.get("validation", 0) > 0
    assert max(report.max_rss_kb // 1024, rss_mib) < RSS_BOUND_MIB, report.max_rss_kb
