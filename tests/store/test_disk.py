"""The embedded store on disk, through real memoryd processes: private files, deleted data
reclaimed without a restart, engine errors in memoryd's words, a full disk and an unopenable
store explained (at start and by ``memoryd doctor``)."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import qdrant_edge as qe

from sidecar.app import PAYLOAD_INDEXES
from sidecar.store.engine import _config, _index_schema
from sidecar.store.files import disk_usage
from tests.support import Memoryd

DIM = 8
NO_EMBEDDER = {"MEMORYD_EMBEDDING__PROVIDER": "none"}  # no model loading beside the test
MiB = 1 << 20
# The engine's WAL keeps its open 32 MiB segment and one closed one, whatever the history.
WAL_BOUND = 64 * MiB


def wait_for(condition: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy (bounded; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.2)


def store_check(server: Memoryd) -> dict[str, Any]:
    return server.call("system.health")["result"]["checks"]["store"]


def inputs(n: int, rng: random.Random, **fields: Any) -> list[dict[str, Any]]:
    return [{"category": "fact", "content": f"memory {i} " + "x" * 100,
             "vector": [rng.random() for _ in range(DIM)], **fields} for i in range(n)]


def doctor(root: Path) -> str:
    """``memoryd doctor`` for the socket and data dir a ``Memoryd(root)`` uses."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "doctor", "--socket", str(root / "run" / "memoryd.sock"),
         "--data-dir", str(root / "data")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "XDG_CONFIG_HOME": str(root / "config")})
    return done.stdout


def failed_line(server: Memoryd) -> dict[str, Any]:
    assert server.proc.wait(timeout=120) == 4
    assert server.proc.stdout is not None
    line = json.loads(server.proc.stdout.readline())
    assert line["method"] == "system.failed"
    return line["params"]["error"]


def test_data_files_are_private_whatever_the_umask(memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", str(DIM), env=NO_EMBEDDER,
                             preexec_fn=lambda: os.umask(0o022))
    rng = random.Random(1)
    with server.connect() as client:
        client.result("memory.saveBatch", {"inputs": inputs(50, rng)})
        client.result("kv.set", {"namespace": "cache", "key": "k", "value": {"v": 1}})
    wait_for(lambda: store_check(server)["points"] == 50, what="saves applied")
    assert server.stop() == 0  # flushed and closed: every file the engine writes exists

    loose = []
    for path in [server.data_dir, *server.data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        expected = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) & ~expected or stat.S_IMODE(mode) & 0o077:
            loose.append(f"{oct(stat.S_IMODE(mode))} {path}")
    assert not loose, loose
    shard = server.data_dir / "edge" / "agent_memory"
    assert (shard / "edge_config.json").exists() and any((shard / "wal").iterdir())
    assert any((server.data_dir / "journal").iterdir())


def test_data_dir_open_to_others_is_flagged_and_tightened(memoryd_factory: Any,
                                                          short_tmp: Path) -> None:
    data = short_tmp / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    report = doctor(short_tmp)
    assert f"PROBLEM data directory {data}: mode 0755 - other local users can read" in report

    server = memoryd_factory(env=NO_EMBEDDER)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    server.stop()
    assert f"ok    data directory {data}: mode 0700" in doctor(short_tmp)


def test_deleted_points_are_reclaimed_without_a_restart(memoryd_factory: Any) -> None:
    """20,000 saves deleted again: segments back within 1 MiB of empty, the data dir within
    the WAL's fixed bound plus 4 MiB, the worker's RSS within 32 MiB of empty; one worker."""
    server = memoryd_factory("--dimension", str(DIM), env=NO_EMBEDDER)
    rng = random.Random(2)

    def measure() -> dict[str, int]:
        check = store_check(server)
        detail = check["detail"]
        return {"points": check["points"], "segments": detail["diskBytes"] - detail["walBytes"],
                "wal": detail["walBytes"], "dataDir": disk_usage(server.data_dir),
                "rss": psutil.Process(detail["workerPid"]).memory_info().rss,
                "pid": detail["workerPid"], "reclaimable": detail["reclaimablePoints"],
                "reclaims": detail["reclaims"], "restarts": detail["workerRestarts"]}

    with server.connect() as client:
        client.result("memory.saveBatch", {"inputs": inputs(10, rng)})  # warm every code path
        assert client.result("memory.deleteWhere", {"namespace": "default"}) == {"deleted": 10}
        empty = wait_for(lambda: (m := measure())["points"] == 0 and m, what="warm-up applied")
        for _ in range(20):
            client.result("memory.saveBatch", {"inputs": inputs(1000, rng)})
        # disk usage is re-measured at most every few seconds: wait for the grown figure
        full = wait_for(lambda: (m := measure())["points"] == 20_000
                        and m["segments"] > empty["segments"] + 5 * MiB and m,
                        what="saves applied and on disk")
        assert client.result("memory.deleteWhere", {"namespace": "default"}) == {
            "deleted": 20_000}
    after = wait_for(lambda: (m := measure())["reclaims"] >= 1 and m["reclaimable"] == 0 and m,
                     what="reclaim pass")

    assert full["segments"] > empty["segments"] + 5 * MiB  # the churn was real
    assert after["points"] == 0
    assert after["segments"] <= empty["segments"] + MiB
    assert after["wal"] <= WAL_BOUND
    assert after["dataDir"] <= empty["dataDir"] + after["wal"] + 4 * MiB
    assert after["rss"] <= empty["rss"] + 32 * MiB, (empty["rss"], full["rss"], after["rss"])
    assert after["pid"] == empty["pid"] and after["restarts"] == 0


def test_health_and_stats_show_live_and_reclaimable(memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", str(DIM), env=NO_EMBEDDER)
    rng = random.Random(3)
    with server.connect() as client:
        client.result("memory.saveBatch", {"inputs": inputs(500, rng, category="note")})
        client.result("memory.saveBatch", {"inputs": inputs(1000, rng, category="fact")})
        wait_for(lambda: store_check(server)["points"] == 1500, what="saves applied")
        # 500 deleted: under the engine's vacuum minimum (1,000), so they stay reclaimable
        assert client.result("memory.deleteWhere", {"category": "note"}) == {"deleted": 500}
        check = wait_for(lambda: (c := store_check(server))["points"] == 1000 and c)
        assert check["detail"]["reclaimablePoints"] == 500
        assert 0 < check["detail"]["reclaimableBytes"] < check["detail"]["diskBytes"]
        storage = client.result("system.stats")["storage"]
    assert storage["livePoints"] == 1000 and storage["reclaimablePoints"] == 500
    assert storage["reclaimableBytes"] > 0 and storage["diskBytes"] > storage["walBytes"] > 0


def test_engine_error_reaches_the_client_in_memoryds_words(memoryd_factory: Any,
                                                           short_tmp: Path) -> None:
    # A record the engine cannot decode, as an older memoryd could store it (no depth check).
    shard = short_tmp / "data" / "edge" / "agent_memory"
    shard.parent.mkdir(parents=True)
    record = str(uuid.uuid4())
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(140):
        node["a"] = node = {}
    engine = qe.EdgeShard.create(str(shard), qe.EdgeConfig(
        vectors=_config(DIM).vectors, wal_enabled=False))  # the WAL would refuse to replay it
    for index in PAYLOAD_INDEXES:  # as memoryd makes them (building one later reads payloads)
        engine.update(qe.UpdateOperation.create_field_index(index.key, _index_schema(index)))
    engine.update(qe.UpdateOperation.upsert_points([qe.Point(
        record, [0.5] * DIM, {"type": "memory", "content": "x", "metadata": deep})]))
    engine.flush()
    engine.close()

    server = memoryd_factory("--dimension", str(DIM), env=NO_EMBEDDER)
    with server.connect() as client:
        reply = client.request("memory.get", {"id": record})
        assert reply["error"]["message"] == (
            "the engine cannot decode a stored record (nested too deeply)")
        assert reply["error"]["data"]["kind"] == "internal"
        raw = json.dumps(reply).lower()
        assert "recursion" not in raw and "deserialize" not in raw and "service" not in raw
        assert client.result("system.health")["live"] is True


def test_store_that_cannot_open_is_explained_at_start_and_by_doctor(
        memoryd_factory: Any, short_tmp: Path) -> None:
    # The shape issue 12 found: a record whose nesting the engine's WAL cannot replay.
    shard = short_tmp / "data" / "edge" / "agent_memory"
    shard.parent.mkdir(parents=True)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(140):
        node["a"] = node = {}
    engine = qe.EdgeShard.create(str(shard), _config(DIM))
    engine.update(qe.UpdateOperation.upsert_points([qe.Point(
        str(uuid.uuid4()), [0.5] * DIM, {"metadata": deep})]))
    engine.close()

    server = memoryd_factory(env=NO_EMBEDDER, check_ready=False)
    error = failed_line(server)
    assert error["message"].startswith("cannot open the store: the embedded store's files "
                                       "cannot be read")
    assert "memoryd doctor" in error["message"] and "WAL" not in error["message"]

    report = doctor(short_tmp)
    assert f"PROBLEM store {shard} cannot open: the embedded store's files cannot be read" \
        in report
    assert "the engine said: " in report and "RecursionLimitExceeded" in report
    assert f"cp -a {shard} " in report and f"mv {shard} " in report and "journal" in report


@pytest.fixture
def tiny_tmpfs(short_tmp: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk with no room for a new store."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = short_tmp / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_new_store_on_a_full_disk_says_no_space(memoryd_factory: Any,
                                                tiny_tmpfs: Path) -> None:
    server = memoryd_factory("--dimension", str(DIM), "--data-dir", str(tiny_tmpfs / "data"),
                             env=NO_EMBEDDER, check_ready=False)
    error = failed_line(server)
    assert error["kind"] == "store"
    assert "no space left on the device holding the data directory" in error["message"]
    assert "MiB free" in error["message"]
