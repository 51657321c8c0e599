"""``memoryd migrate``: a Qdrant server collection (the REST stand-in, a real HTTP server
process) into a real memoryd and back, the CLI run as a real subprocess.

The source is legacy-shaped: memories of every category, conversations and session chains at
the legacy deterministic ids, a persona state record, and a kv namespace, as agent-core wrote
them (CONTRACT §3/§4). Interruptions are real: SIGKILL or SIGINT of the CLI, SIGKILL of
memoryd. The CLI is first stopped (SIGSTOP) once its checkpoint shows a batch done, so the
interruption lands mid-migration whatever the machine's speed.
"""

from __future__ import annotations

import json
import random
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from sidecar.domain import kv, legacy_ids
from sidecar.transfer.digest import Digest
from tests.fakes.qdrant_rest import FakeQdrantProcess
from tests.support import Memoryd

DIM = 8
NO_MODEL = {"MEMORYD_EMBEDDING__PROVIDER": "none"}
CATEGORIES = ("conversation", "fact", "preference", "task", "decision", "relationship", "note",
              "pattern", "custom")
SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "legacy-ids.json"
DEADLINE = 60.0


# -- the legacy-shaped source -------------------------------------------------------------

def legacy_records(n: int, seed: int = 7) -> list[models.PointStruct]:
    """``n`` records as legacy agent-core wrote them: one persona state, a conversation and
    a session chain per session (at the legacy ids; the spec's sessions among them), the
    rest memories of every category."""
    rng = random.Random(seed)
    now = 1_760_000_000_000

    def vector() -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(DIM)]

    spec_sessions = [e["input"][len("conversation-"):] for e in json.loads(SPEC.read_text())
                     if e["input"].startswith("conversation-ses_")]
    sessions = spec_sessions + [f"ses_{i:05d}{rng.randrange(10**6)}" for i in range(n // 20)]
    sessions = sessions[:max(1, n // 20)]
    points = [models.PointStruct(
        id=legacy_ids.state_id(legacy_ids.instance_id("devbox", "artur")), vector=vector(),
        payload={"type": "state", "state": json.dumps({"version": "1", "workers": [],
                                                       "tasks": [], "lastSyncAt": now}),
                 "summary": "", "version": "1", "updatedAt": now})]
    for i, sid in enumerate(sessions):
        shared = vector()  # a session chain has its conversation's vector
        points.append(models.PointStruct(
            id=legacy_ids.legacy_id("conversation-" + sid), vector=shared, payload={
                "type": "conversation", "sessionId": sid, "leadPersona": "zee",
                "summary": f"session {i}", "plan": "", "objectives": ["ship it"],
                "keyFacts": [f"fact {i}"], "sessionChain": sessions[max(0, i - 2):i],
                "updatedAt": now + i}))
        points.append(models.PointStruct(
            id=legacy_ids.legacy_id("session-chain-" + sid), vector=shared, payload={
                "type": "session_chain", "sessionId": sid, "previousSessions": sessions[:i][-3:],
                "updatedAt": now + i}))
    while len(points) < n:
        i = len(points)
        created = now - i * 1000
        ttl = rng.choice([0, 0, 86_400_000 * 3650])
        payload: dict[str, Any] = {
            "type": "memory", "category": CATEGORIES[i % len(CATEGORIES)],
            "content": f"memory {i}: the user likes {rng.choice(['tea', 'coffee', 'maté'])}",
            "summary": None if i % 3 else f"summary {i}",
            "metadata": {"surface": "cli", "sessionId": rng.choice(sessions), "agent": "zee",
                         "importance": round(rng.random(), 3), "entities": ["user"],
                         "tags": ["t" + str(i % 5)], "extra": {"n": i, "nested": {"ok": True}}},
            "createdAt": created, "accessedAt": created, "ttl": ttl,
            "expiresAt": created + ttl if ttl else 0, "namespace": "default"}
        if i % 10 == 0:
            payload["media"] = {"mediaType": "image", "sourceUrl": f"https://x.test/{i}.png",
                                "sizeBytes": 1000 + i}
        points.append(models.PointStruct(id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                         vector=vector(), payload=payload))
    assert len({p.id for p in points}) == len(points) == n
    return points


def kv_records(namespace: str, n: int) -> list[models.PointStruct]:
    out = []
    for i in range(n):
        point = kv.make_point(namespace, f"key-{i}", {"value": i, "list": [i, str(i)]},
                              now=1_760_000_000_000, dimension=1, created_at=None,
                              ttl_ms=None, expires_at=None)
        out.append(models.PointStruct(id=point.id, vector=point.vector, payload=point.payload))
    return out


def expected_counts(points: list[models.PointStruct]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for p in points:
        payload = p.payload or {}
        kind = payload["type"]
        counts[f"memory:{payload['category']}" if kind == "memory" else kind] += 1
    return dict(counts)


def seed(url: str, points: list[models.PointStruct], collection: str = "agent_memory",
         dimension: int = DIM) -> None:
    client = QdrantClient(url=url, check_compatibility=False, timeout=60)
    client.create_collection(collection, vectors_config=models.VectorParams(
        size=dimension, distance=models.Distance.COSINE))
    for i in range(0, len(points), 1000):
        client.upsert(collection, points=points[i:i + 1000], wait=True)
    client.close()


# -- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture
def fake(short_tmp: Path) -> Iterator[FakeQdrantProcess]:
    server = FakeQdrantProcess(short_tmp / "qdrant")
    yield server
    server.stop()


def seed_legacy(fake: FakeQdrantProcess, n: int) -> list[models.PointStruct]:
    """``n`` legacy records in ``agent_memory`` and 40 kv entries in ``persist-cache``."""
    points = legacy_records(n)
    seed(fake.url, points)
    seed(fake.url, kv_records("persist", 40), "persist-cache", 1)
    return points


@pytest.fixture
def legacy(fake: FakeQdrantProcess) -> list[models.PointStruct]:
    return seed_legacy(fake, 5000)


def start(factory: Any, root: Path, *args: str, env: dict[str, str] = NO_MODEL) -> Memoryd:
    return factory("--sweep-interval", "0", *args, root=root, env=env)


def migrate_cmd(server: Memoryd, state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", "migrate", "--socket", str(server.socket),
            "--state", str(state), "--json", *args]


def run(server: Memoryd, state: Path, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    """(exit status, the JSON report or None, stderr)."""
    proc = subprocess.run(migrate_cmd(server, state, *args), capture_output=True,
                          timeout=120, env=_env(server))
    out = proc.stdout.decode().strip()
    return proc.returncode, (json.loads(out) if out else None), proc.stderr.decode()


def run_all(server: Memoryd, state: Path, *arglists: list[str]
            ) -> list[tuple[int, dict[str, Any] | None, str]]:
    """``run`` of each argument list, all at once (each CLI spends seconds importing)."""
    procs = [subprocess.Popen(migrate_cmd(server, state, *args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=_env(server)) for args in arglists]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        text = stdout.decode().strip()
        out.append((proc.returncode, json.loads(text) if text else None, stderr.decode()))
    return out


def _env(server: Memoryd) -> dict[str, str]:
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")},
            "XDG_CONFIG_HOME": str(server.root / "config")}


def stop_midway(cli: subprocess.Popen[bytes], state: Path, records: int) -> None:
    """Freeze the CLI once its checkpoint counts ``records`` copied."""
    deadline = time.monotonic() + DEADLINE
    while copied_so_far(state) < records:
        assert cli.poll() is None, cli.communicate()
        assert time.monotonic() < deadline, "timed out waiting for the checkpoint"
        time.sleep(0.005)
    cli.send_signal(signal.SIGSTOP)


def copied_so_far(state: Path) -> int:
    try:
        return sum(s["copied"] for s in json.loads(state.read_text())["spaces"].values())
    except (OSError, ValueError, KeyError):
        return 0


def count(server: Memoryd) -> dict[str, int]:
    spaces = server.call("transfer.describe", {})["result"]["spaces"]
    return {s["space"]: s["count"] for s in spaces}


def assert_verified(report: dict[str, Any] | None, points: list[models.PointStruct],
                    kv_count: int) -> None:
    assert report is not None and report["ok"], report
    spaces = {s["space"]: s for s in report["spaces"]}
    assert set(spaces) == {"memories", "kv:persist"}
    memories = spaces["memories"]
    assert memories["source"]["count"] == memories["target"]["count"] == len(points)
    assert memories["target"]["countsByType"] == expected_counts(points)
    assert memories["source"]["digest"] == memories["target"]["digest"]
    assert spaces["kv:persist"]["target"] == {**spaces["kv:persist"]["source"]}
    assert spaces["kv:persist"]["target"]["countsByType"] == {"kv": kv_count}


# -- tests ----------------------------------------------------------------------------------

def test_a_legacy_collection_migrates_with_equal_counts_and_digests(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess,
        legacy: list[models.PointStruct]) -> None:
    server = start(memoryd_factory, short_tmp)
    state = short_tmp / "state.json"
    status, report, err = run(server, state, "--from-url", fake.url)
    assert status == 0, err
    assert_verified(report, legacy, 40)
    assert report is not None and report["copied"] == 5040 and not report["resumed"]
    assert not state.exists()  # done: nothing to resume
    # Served as legacy data: a conversation at its legacy id, a memory by id, kv by key.
    sid = legacy[1].payload["sessionId"]  # type: ignore[index]
    loaded = server.call("conversation.load", {"sessionId": sid})["result"]
    assert loaded["sessionId"] == sid and loaded["keyFacts"] == ["fact 0"]
    memory = legacy[-1]
    got = server.call("memory.get", {"id": memory.id})["result"]
    assert got["content"] == memory.payload["content"]  # type: ignore[index]
    assert server.call("kv.get", {"namespace": "persist", "key": "key-3"})["result"][
        "value"] == {"value": 3, "list": [3, "3"]}


def test_the_cli_killed_midway_then_rerun_ends_the_same_without_duplicates(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess,
        legacy: list[models.PointStruct]) -> None:
    server = start(memoryd_factory, short_tmp)
    (short_tmp / "cfg").mkdir()
    config = short_tmp / "cfg" / "config.toml"
    config.write_text("")
    state = short_tmp / "cfg" / "migrate-state.json"  # the default: next to the config
    cmd = [sys.executable, "-m", "sidecar", "migrate", "--socket", str(server.socket),
           "--config", str(config), "--json", "--from-url", fake.url]
    cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=_env(server))
    stop_midway(cli, state, 1000)
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=30)
    done = copied_so_far(state)
    assert 1000 <= done < 5000
    assert done <= count(server)["memories"] < 5000  # midway
    rerun = subprocess.run(cmd, capture_output=True, timeout=120, env=_env(server))
    assert rerun.returncode == 0, rerun.stderr.decode()
    report = json.loads(rerun.stdout)
    assert_verified(report, legacy, 40)
    assert report["resumed"] and report["copied"] == 5040 - done  # skipped what was done
    assert count(server) == {"memories": 5000, "kv:persist": 40}  # no duplicates


def test_sigint_stops_cleanly_and_the_rerun_resumes(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess) -> None:
    points = seed_legacy(fake, 2200)
    server = start(memoryd_factory, short_tmp)
    state = short_tmp / "state.json"
    cli = subprocess.Popen(migrate_cmd(server, state, "--from-url", fake.url),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(server))
    stop_midway(cli, state, 1000)
    cli.send_signal(signal.SIGINT)  # delivered when it goes on, in the middle of its work
    cli.send_signal(signal.SIGCONT)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert b"run the same command again" in err
    assert count(server)["memories"] < 2200
    status, report, err2 = run(server, state, "--from-url", fake.url)
    assert status == 0, err2
    assert_verified(report, points, 40)
    assert report is not None and report["resumed"] and report["copied"] <= 1240


def test_memoryd_killed_midway_then_restarted_and_rerun_ends_the_same(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess) -> None:
    legacy = seed_legacy(fake, 3000)
    root = short_tmp / "md"
    server = start(memoryd_factory, root)
    state = short_tmp / "state.json"
    cli = subprocess.Popen(migrate_cmd(server, state, "--from-url", fake.url),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(server))
    stop_midway(cli, state, 1000)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)
    cli.send_signal(signal.SIGCONT)  # it reads on, then finds memoryd gone
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert str(server.socket).encode() in err and b"`memoryd serve`" in err
    server = start(memoryd_factory, root)  # replays its journal: every acknowledged import
    assert count(server)["memories"] >= 1000
    status, report, err2 = run(server, state, "--from-url", fake.url)
    assert status == 0, err2
    assert_verified(report, legacy, 40)
    assert report is not None and report["resumed"]
    assert count(server) == {"memories": 3000, "kv:persist": 40}


def test_to_url_round_trip(memoryd_factory: Any, short_tmp: Path) -> None:
    """memoryd's own records (lexical vectors included) onto a server and into a second
    memoryd: both memoryd digests equal."""
    fake = FakeQdrantProcess(short_tmp / "qdrant", lexical=True)
    try:
        round_trip(memoryd_factory, short_tmp, fake)
    finally:
        fake.stop()


def round_trip(memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess) -> None:
    first = start(memoryd_factory, short_tmp / "a")
    rng = random.Random(5)
    inputs = [{"category": CATEGORIES[i % 9], "content": f"the user said thing number {i}",
               "vector": [rng.uniform(-1, 1) for _ in range(DIM)], "metadata": {"tags": ["x"]}}
              for i in range(300)]
    assert "error" not in first.call("memory.saveBatch", {"inputs": inputs})
    assert "error" not in first.call("conversation.save", {"state": {
        "sessionId": "ses_round", "leadPersona": "stanley", "summary": "s", "plan": "p",
        "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": 1},
        "vector": [0.1] * DIM})
    assert "error" not in first.call("kv.set", {"namespace": "cache", "key": "k",
                                                "value": [1, 2]})
    state = short_tmp / "state.json"
    status, report, err = run(first, state, "--to-url", fake.url, "--to-collection", "moved")
    assert status == 0, err
    assert report is not None and report["ok"]
    spaces = {s["space"]: s for s in report["spaces"]}
    assert spaces["memories"]["collection"] == "moved"
    assert spaces["kv:cache"]["collection"] == "cache-cache"
    assert spaces["memories"]["target"]["count"] == 302  # 300 + conversation + session chain

    second = start(memoryd_factory, short_tmp / "b")
    status, back, err = run(second, state, "--from-url", fake.url, "--from-collection", "moved")
    assert status == 0, err
    assert back is not None and back["ok"]
    for space in ("memories", "kv:cache"):
        a = first.call("transfer.digest", {"space": space})["result"]
        b = second.call("transfer.digest", {"space": space})["result"]
        assert a == b and a["count"] > 0
    # the second memoryd serves them, a word search (hybrid) included
    found = second.call("memory.search", {"query": "number 17", "vector": inputs[17]["vector"],
                                          "mode": "hybrid", "threshold": 0, "limit": 3})
    assert found["result"][0]["entry"]["content"] == inputs[17]["content"]


def test_the_embedding_model_travels_and_another_model_is_refused(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess) -> None:
    """Memories embedded by memoryd carry their model to the server (memoryd's companion
    collection) and from there into a memoryd that has none; a memoryd that embeds with
    another model refuses them, naming both, before writing anything."""
    mock = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}
    first = start(memoryd_factory, short_tmp / "a", env=mock)
    for text in ("the user likes tea", "the user lives in Lisbon", "the dog is called Rex"):
        assert "error" not in first.call("memory.save", {"category": "fact", "content": text})
    state = short_tmp / "state.json"
    status, _, err = run(first, state, "--to-url", fake.url)
    assert status == 0, err
    first.stop()

    other = start(memoryd_factory, short_tmp / "c",
                  env={"MEMORYD_EMBEDDING__PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"})
    status, _, err = run(other, state, "--from-url", fake.url)
    assert status == 1
    assert "legacy-mock 'mock-embedding'" in err and "memoryd reembed" in err
    assert count(other)["memories"] == 0
    other.stop()

    second = start(memoryd_factory, short_tmp / "b")
    status, report, err = run(second, state, "--from-url", fake.url)
    assert status == 0 and report is not None and report["ok"], err
    memories = second.call("transfer.describe", {})["result"]["spaces"][0]
    assert memories["count"] == 3
    assert (memories["model"]["provider"], memories["model"]["model"]) == (
        "legacy-mock", "mock-embedding")


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_wrong_api_key_unreachable_server_and_absent_memoryd_are_precise(
        memoryd_factory: Any, short_tmp: Path) -> None:
    fake = FakeQdrantProcess(short_tmp / "qdrant", api_key="the-right-key")
    server = start(memoryd_factory, short_tmp)
    state = short_tmp / "state.json"
    try:
        client = QdrantClient(url=fake.url, api_key="the-right-key", https=False,
                              check_compatibility=False)
        client.create_collection("agent_memory", vectors_config=models.VectorParams(
            size=DIM, distance=models.Distance.COSINE))
        client.close()
        wrong, none, absent = run_all(
            server, state, ["--from-url", fake.url, "--api-key", "wrong-key"],
            ["--from-url", fake.url],
            ["--from-url", fake.url, "--api-key", "the-right-key", "--from-collection", "no"])
    finally:
        fake.stop()
    assert wrong[0] == 1
    assert f"the Qdrant server at {fake.url} refused the API key given (HTTP 401" in wrong[2]
    assert "wrong-key" not in wrong[2]
    assert none[0] == 1 and "needs an API key: pass it with --api-key" in none[2]
    assert absent[0] == 1 and "has no collection 'no' (it has: agent_memory)" in absent[2]
    (down,) = run_all(server, state, ["--from-url", fake.url])
    assert down[0] == 1
    assert f"cannot reach a Qdrant server at {fake.url}" in down[2] and "ConnectError" in down[2]
    assert count(server) == {"memories": 0}  # nothing was written
    server.stop()
    (gone,) = run_all(server, state, ["--from-url", fake.url])
    assert gone[0] == 1
    assert f"memoryd is not running at {server.socket}" in gone[2]
    assert "`memoryd serve`" in gone[2]


def test_a_dimension_mismatch_is_refused_before_writing(
        memoryd_factory: Any, short_tmp: Path, fake: FakeQdrantProcess) -> None:
    seed(fake.url, legacy_records(50))
    server = start(memoryd_factory, short_tmp, "--dimension", "4")
    status, _, err = run(server, short_tmp / "state.json", "--from-url", fake.url)
    assert status == 1
    assert f"collection 'agent_memory' at {fake.url} has {DIM}-d vectors" in err
    assert "has 4-d" in err and "memoryd reembed" in err
    assert count(server)["memories"] == 0
    bad = server.call("transfer.digest", {"space": "memory"})["error"]
    assert bad["data"]["kind"] == "validation" and "kv:<namespace>" in bad["message"]


def test_the_digest_is_order_free_and_compares_vectors_as_float32() -> None:
    rng = random.Random(1)
    records = [{"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "vector": [rng.uniform(-1, 1) for _ in range(DIM)],
                "payload": {"type": "memory", "category": "fact", "n": i, "x": {"b": 1, "a": 2}}}
               for i in range(50)]

    def digest_of(items: list[dict[str, Any]]) -> dict[str, Any]:
        d = Digest()
        d.add_all(items)
        return d.result()

    base = digest_of(records)
    assert base["count"] == 50 and base["countsByType"] == {"memory:fact": 50}
    assert digest_of(list(reversed(records))) == base  # any page order
    reordered = [{**r, "payload": dict(reversed(list(r["payload"].items())))} for r in records]
    assert digest_of(reordered) == base  # payload key order is not content
    first = records[0]
    below_float32 = [{**first, "vector": [first["vector"][0] * (1 + 1e-12), *first["vector"][1:]]},
                     *records[1:]]
    assert digest_of(below_float32) == base  # what the engines store is the same
    one_bit = struct.unpack("<f", struct.pack("<f", first["vector"][0]))[0]
    one_bit = struct.unpack("<f", (struct.unpack("<I", struct.pack("<f", one_bit))[0] ^ 1)
                            .to_bytes(4, "little"))[0]
    changed = [{**first, "vector": [one_bit, *first["vector"][1:]]}, *records[1:]]
    assert digest_of(changed)["digest"] != base["digest"]
    assert digest_of(records[1:])["digest"] != base["digest"]
