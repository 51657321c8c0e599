"""`memoryd export` and `memoryd import`: real memoryd processes, the CLI as a real subprocess.

Export then import into a fresh data directory gives the same records (ids, payloads, dense
and lexical vectors compared as float32, kv included); a write acknowledged before the export
is in it and memoryd answers requests while an export is under way; a rerun of an import adds
nothing; a file that does not fit (dimension, model, kv namespaces) is refused before any
write; bad lines are named by number; Ctrl-C of an import, then a rerun, ends the same.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tests.support import Memoryd

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}  # embeds offline, recorded by the guard
NO_EMBEDDER = {"MEMORYD_EMBEDDING__PROVIDER": "none"}
DEADLINE = 30.0


def cli(server: Memoryd, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run([sys.executable, "-m", "sidecar", *args, "--socket", str(server.socket)],
                          capture_output=True, text=True, timeout=120, env=env, **popen)


def export_lines(server: Memoryd, path: Path) -> list[dict[str, Any]]:
    done = cli(server, "export", "--out", str(path), "--json")
    assert done.returncode == 0, done.stderr
    progress = [msgspec.json.decode(line) for line in done.stderr.splitlines()
                if line.startswith("{")]
    assert progress and progress[-1]["state"] == "done" and progress[-1]["progress"] == "export"
    *lines, trailer = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
    assert trailer == {"end": "memoryd-export", "records": dict(Counter(
        r["space"] for r in lines[1:]))}
    return lines


def f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def comparable(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record with its vectors as the engines hold them: float32 bytes."""
    sparse = record["sparse"]
    return (record["space"], record["id"], f32(record["vector"]),
            None if sparse is None else (sparse["indices"], f32(sparse["values"])),
            msgspec.json.encode(record["payload"], order="sorted"))


def counts(server: Memoryd) -> dict[str, int]:
    described = server.call("transfer.describe", {})["result"]
    return {s["space"]: s["count"] for s in described["spaces"]}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def conv(session: str, **kw: Any) -> dict[str, Any]:
    return {"sessionId": session, "leadPersona": "zee", "summary": "s", "plan": "p",
            "objectives": ["o"], "keyFacts": ["k"], "sessionChain": [], "updatedAt": 7, **kw}


def populate(server: Memoryd) -> None:
    """Every kind of record agent-core keeps, embedded by memoryd (legacy-mock)."""
    with server.connect() as c:
        for category in ("fact", "preference", "task", "decision", "note"):
            c.result("memory.save", {
                "category": category, "content": f"the user's {category}: dark roast coffee",
                "metadata": {"tags": ["coffee", category],
                             "extra": {"nested": {"list": [1, 2.5, "x", None, True]}}}})
        c.result("memory.save", {"category": "fact", "content": "expires later", "ttl": 10**9})
        c.result("conversation.save", {"state": conv("ses-1", summary="first")})
        c.result("conversation.start", {"sessionId": "ses-2", "leadPersona": "zee",
                                        "previousSessionId": "ses-1"})
        c.result("state.save", {"state": {
            "version": "1.2", "workers": [{"id": "w"}], "tasks": [], "lastSyncAt": 5,
            "stats": {"totalTasksCompleted": 1, "totalDronesSpawned": 0, "totalTokensUsed": 2},
            "conversation": conv("ses-2", sessionChain=["ses-1"])}})
        for namespace in ("cache-a", "cache-b"):
            c.result("kv.setMany", {"namespace": namespace, "entries": [
                {"key": f"k{i}", "value": {"n": i, "s": "é" * i}} for i in range(5)]})
        c.result("kv.set", {"namespace": "cache-a", "key": "ttl", "value": 1, "ttlMs": 10**9})


def test_export_then_import_into_a_fresh_memoryd_gives_identical_records(
        memoryd_factory: Any, short_tmp: Path) -> None:
    source = memoryd_factory(root=short_tmp / "a", env=MOCK)
    populate(source)
    exported = export_lines(source, short_tmp / "a.jsonl")
    header, records = exported[0], exported[1:]
    assert header["format"] == "memoryd-export" and header["version"] == 2
    spaces = {s["space"]: s for s in header["spaces"]}
    assert set(spaces) == {"memories", "kv:cache-a", "kv:cache-b"}
    assert spaces["memories"]["model"]["provider"] == "legacy-mock"
    assert spaces["memories"]["dimension"] == 384 and spaces["kv:cache-a"]["count"] == 6
    types = [r["payload"].get("type") for r in records if r["space"] == "memories"]
    assert {"memory", "conversation", "session_chain", "state"} <= set(types)
    # memories carry their lexical vector, other records none
    assert all((r["sparse"] is not None) == (r["payload"].get("type") == "memory")
               for r in records if r["space"] == "memories")
    assert len(records) == sum(s["count"] for s in header["spaces"])

    target = memoryd_factory(root=short_tmp / "b", env=MOCK)
    done = cli(target, "import", str(short_tmp / "a.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    progress = [msgspec.json.decode(line) for line in done.stderr.splitlines()
                if line.startswith("{")]
    assert progress[-1] == {**progress[-1], "progress": "import", "state": "done",
                            "done": len(records), "total": len(records)}

    again = export_lines(target, short_tmp / "b.jsonl")
    assert sorted(map(comparable, again[1:])) == sorted(map(comparable, records))
    assert again[0]["spaces"][0]["model"]["model"] == spaces["memories"]["model"]["model"]
    # and memoryd serves them: by text (embedded with the same model), kv, state
    with target.connect() as c:
        hits = c.result("memory.search", {"query": "the user's preference: dark roast coffee",
                                          "limit": 1})
        assert hits[0]["entry"]["category"] == "preference"
        assert c.result("kv.get", {"namespace": "cache-b", "key": "k3"})["value"] == {
            "n": 3, "s": "ééé"}
        assert c.result("conversation.load", {"sessionId": "ses-2"})["sessionChain"] == ["ses-1"]

    # a rerun adds nothing
    before = counts(target)
    done = cli(target, "import", str(short_tmp / "a.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    assert counts(target) == before == counts(source)


def save_many(server: Memoryd, n: int, dimension: int = 8) -> None:
    with server.connect() as c:
        for start in range(0, n, 500):
            c.result("memory.saveBatch", {"inputs": [
                {"category": "note", "content": f"note {i}",
                 "vector": [float(i % 7 + 1)] + [0.5] * (dimension - 1)}
                for i in range(start, min(n, start + 500))]})


def test_acknowledged_write_is_exported_and_memoryd_serves_during_an_export(
        memoryd_factory: Any) -> None:
    server = memoryd_factory(env=NO_EMBEDDER)
    save_many(server, 2500)
    with server.connect() as c:
        saved = c.result("memory.save", {"category": "fact", "content": "acked just now",
                                         "vector": [0.1] * 8})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    export = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "export", "--socket", str(server.socket), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert export.stdout is not None
        header = msgspec.json.decode(export.stdout.readline())
        first = msgspec.json.decode(export.stdout.readline())
        assert header["spaces"][0]["count"] == 2501 and first["space"] == "memories"
        # the export blocks on its full pipe with pages to go: memoryd still answers
        assert export.poll() is None
        with server.connect() as c:
            assert c.result("memory.get", {"id": saved["id"]})["content"] == "acked just now"
            assert c.result("system.health")["ready"] is True
        rest = export.stdout.read().splitlines()
        assert export.wait(timeout=60) == 0
    finally:
        if export.poll() is None:
            export.kill()
            export.wait()
    *rest, end = rest
    assert msgspec.json.decode(end) == {"end": "memoryd-export", "records": {"memories": 2501}}
    ids = [first["id"]] + [msgspec.json.decode(line)["id"] for line in rest]
    assert len(ids) == 2501 and len(set(ids)) == 2501 and saved["id"] in ids
    assert ids == sorted(ids)  # id order, pages joined without a gap or a repeat


def test_import_refuses_a_dimension_or_model_mismatch_before_writing(
        memoryd_factory: Any, short_tmp: Path) -> None:
    source = memoryd_factory(root=short_tmp / "a", env=MOCK)
    with source.connect() as c:
        c.result("memory.save", {"category": "fact", "content": "one memory"})
        for namespace in ("cache-a", "cache-b"):
            c.result("kv.set", {"namespace": namespace, "key": "k", "value": 1})
    path = short_tmp / "a.jsonl"
    records = export_lines(source, path)[1:]

    # a memoryd whose collection holds 8-d vectors
    small = memoryd_factory(root=short_tmp / "dim", env=NO_EMBEDDER)
    save_many(small, 1)
    done = cli(small, "import", str(path))
    assert done.returncode == 1
    assert "384 dimensions" in done.stderr and "have 8" in done.stderr
    assert "memoryd reembed" in done.stderr and "nothing imported" in done.stderr
    assert counts(small) == {"memories": 1}
    # memoryd itself refuses the records too (another client than the CLI)
    memory = next(r for r in records if r["space"] == "memories")
    error = small.call("transfer.import", {"space": "memories", "records": [
        {k: memory[k] for k in ("id", "vector", "sparse", "payload")}]})["error"]
    assert error["data"]["kind"] == "dimension_mismatch" and "reembed" in error["message"]

    # a memoryd whose collection another model embedded
    other = short_tmp / "model"
    (other / "data").mkdir(parents=True)
    (other / "data" / "embedding-models.json").write_text(msgspec.json.encode({
        "version": 1, "collections": {"agent_memory": {
            "provider": "openai", "model": "text-embedding-3-small", "dimension": 384}}}
    ).decode())
    modeled = memoryd_factory(root=other, env=NO_EMBEDDER)
    done = cli(modeled, "import", str(path))
    assert done.returncode == 1
    for name in ("legacy-mock", "mock-embedding", "openai", "text-embedding-3-small",
                 "memoryd reembed"):
        assert name in done.stderr
    error = modeled.call("transfer.import", {
        "space": "memories", "model": {"provider": "legacy-mock", "model": "mock-embedding",
                                       "dimension": 384},
        "records": [{k: memory[k] for k in ("id", "vector", "sparse", "payload")}]})["error"]
    assert error["data"]["kind"] == "conflict" and "reembed" in error["message"]
    assert counts(modeled) == {"memories": 0}  # no record, no kv namespace made

    # more kv namespaces than the target allows
    capped = memoryd_factory(root=short_tmp / "cap",
                             env={**MOCK, "MEMORYD_KV_MAX_NAMESPACES": "1"})
    done = cli(capped, "import", str(path))
    assert done.returncode == 1
    assert "kv_max_namespaces" in done.stderr and "kv:cache-a" in done.stderr
    assert counts(capped) == {"memories": 0}
    # memoryd refuses the one namespace too many itself
    entries = {r["space"]: {k: r[k] for k in ("id", "vector", "sparse", "payload")}
               for r in records}
    assert capped.call("transfer.import", {"space": "kv:cache-a",
                                           "records": [entries["kv:cache-a"]]})["result"] == {
        "written": 1, "queued": False}
    error = capped.call("transfer.import", {"space": "kv:cache-b",
                                            "records": [entries["kv:cache-b"]]})["error"]
    assert error["data"]["errors"][0]["path"] == "$.space"
    assert "kv_max_namespaces" in error["message"]


def test_bad_lines_are_named_by_their_number(memoryd_factory: Any, short_tmp: Path) -> None:
    server = memoryd_factory(env=NO_EMBEDDER)
    save_many(server, 3)
    exported = (short_tmp / "ok.jsonl")
    export_lines(server, exported)
    header, first, second = exported.read_bytes().splitlines()[:3]
    record = msgspec.json.decode(second)

    def attempt(*lines: bytes) -> str:
        path = short_tmp / "bad.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        done = cli(server, "import", str(path))
        assert done.returncode == 1, done.stderr
        return done.stderr

    assert "line 1 is not a memoryd export header" in attempt(b'{"format": "other"}', first)
    assert "line 3 is not JSON" in attempt(header, first, b"{not json")
    wrong = attempt(header, first, msgspec.json.encode({**record, "vector": "x"}))
    assert "line 3 is not an export record" in wrong and "$.vector" in wrong
    assert "line 2 is longer than 16777216 bytes" in attempt(header, b"x" * (17 << 20))
    # a record memoryd would refuse (its vector is not of the space's dimension) is named by
    # its line before anything is sent
    short = attempt(header, first, b"", msgspec.json.encode({**record, "vector": [1.0] * 3}))
    assert "line 4:" in short and "3 dimensions" in short
    assert "the file is empty" in attempt(b"")
    assert counts(server) == {"memories": 3}


def test_ctrl_c_mid_import_then_a_rerun_ends_identical(
        memoryd_factory: Any, short_tmp: Path) -> None:
    source = memoryd_factory(root=short_tmp / "a", env=NO_EMBEDDER)
    save_many(source, 600)
    with source.connect() as c:
        c.result("kv.set", {"namespace": "cache-a", "key": "k", "value": [1, 2]})
    path = short_tmp / "a.jsonl"
    exported = export_lines(source, path)
    lines = path.read_bytes().splitlines(keepends=True)

    target = memoryd_factory(root=short_tmp / "b", env=NO_EMBEDDER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    importer = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "import", "-", "--json", "--batch", "100",
         "--socket", str(target.socket)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert importer.stdin is not None
        importer.stdin.write(b"".join(lines[:301]))  # the header and 300 records
        importer.stdin.flush()
        # stopped for real in the middle: 300 records in, the rest still to come
        wait_for(lambda: counts(target).get("memories") == 300, "the first 300 records")
        importer.send_signal(signal.SIGINT)
        _out, err = importer.communicate(timeout=30)
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.wait()
    assert importer.returncode == 130, err
    assert b"rerun" in err and b"Traceback" not in err
    assert msgspec.json.decode(err.splitlines()[-2])["state"] == "stopped"

    done = cli(target, "import", str(path), "--json")
    assert done.returncode == 0, done.stderr
    again = export_lines(target, short_tmp / "b.jsonl")
    assert sorted(map(comparable, again[1:])) == sorted(map(comparable, exported[1:]))
    assert counts(target) == counts(source) == {"memories": 600, "kv:cache-a": 1}


def test_without_a_memoryd_the_cli_says_how_to_start_one(short_tmp: Path) -> None:
    path = short_tmp / "x.jsonl"
    path.write_text("")
    nowhere = ["--socket", str(short_tmp / "none.sock")]
    for command in (["export"], ["import", str(path)]):
        done = subprocess.run([sys.executable, "-m", "sidecar", *command, *nowhere],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "start it with `memoryd serve`" in done.stderr
    for bad in ("0", "1001"):
        done = subprocess.run([sys.executable, "-m", "sidecar", "import", str(path),
                               "--batch", bad, *nowhere], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and "--batch must be 1 to 1000" in done.stderr


def test_records_move_from_the_embedded_engine_to_a_qdrant_collection_and_back(
        memoryd_factory: Any, short_tmp: Path) -> None:
    source = memoryd_factory(root=short_tmp / "a", env=MOCK)
    populate(source)
    exported = export_lines(source, short_tmp / "a.jsonl")
    qdrant = memoryd_factory(root=short_tmp / "q", env={
        **MOCK, "MEMORYD_QDRANT_PATH": str(short_tmp / "q" / "qdrant-local")})
    done = cli(qdrant, "import", str(short_tmp / "a.jsonl"))
    assert done.returncode == 0, done.stderr
    again = export_lines(qdrant, short_tmp / "q.jsonl")
    # qdrant-client's local mode normalizes each vector again (numpy, float32): a component
    # may move by one unit in the last place. Everything else is identical.
    assert sorted(map(without_vector, again[1:])) == sorted(map(without_vector, exported[1:]))
    moved = {r["id"]: r["vector"] for r in again[1:]}
    for record in exported[1:]:
        assert np.allclose(np.float32(record["vector"]), np.float32(moved[record["id"]]),
                           rtol=1e-6, atol=0)
    assert counts(qdrant) == counts(source)


def without_vector(record: dict[str, Any]) -> tuple[Any, ...]:
    space, id_, _vector, sparse, payload = comparable(record)
    return space, id_, sparse, payload
