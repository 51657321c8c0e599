"""`memoryd reembed`: real memoryd processes, the CLI as a real subprocess.

From `legacy-mock` to the local model while a writer keeps saving and a reader keeps
searching: every memory, those saved during the run included, is then found by a paraphrase,
the guard names the new model, and a restart serves the new collection (degraded, naming both
models, when the old provider is still configured). Stopped by Ctrl-C, then killed with
kill -9, then rerun, a re-embedding ends as one run would; `--drop-old` removes the old
collection. (The second test re-embeds to `legacy-mock`, whose vectors are known exactly, with
a pause between pages so that it can be interrupted midway.)
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.embedding import local_model_installed
from sidecar.embedding.legacy_mock import legacy_mock_vector
from tests.embedding.test_embedding_local import MEMORIES, PARAPHRASES
from tests.support import Memoryd, RawClient

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}
LOCAL = {"MEMORYD_EMBEDDING__PROVIDER": "local"}
DEADLINE = 60.0
RUN_TIMEOUT = 300.0  # the local model loads within the run (seconds on a busy machine)


def reembed(server: Memoryd, *args: str, timeout: float = RUN_TIMEOUT
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(server, *args), capture_output=True, text=True,
                          timeout=timeout, env=cli_env())


def command(server: Memoryd, *args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", "reembed", *args, "--socket", str(server.socket)]


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}


def status(server: Memoryd) -> dict[str, Any]:
    return server.call("transfer.reembedStatus", {})["result"]


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def retrying(client: RawClient, method: str, params: Any) -> Any:
    """A client's retry of retryable errors (the switch pauses writes for a moment)."""
    end = time.monotonic() + DEADLINE
    while True:
        reply = client.request(method, params)
        if "result" in reply:
            return reply["result"]
        assert reply["error"]["data"]["retryable"], reply
        assert time.monotonic() < end, reply
        time.sleep(0.05)


class Writer(threading.Thread):
    """Saves ``contents`` one by one, then fillers until told to stop (retrying retryable
    errors, as clients do); records every id saved with its content."""

    def __init__(self, server: Memoryd, contents: list[str]) -> None:
        super().__init__(daemon=True)
        self.server, self.contents = server, contents
        self.saved: dict[str, str] = {}
        self.times: list[float] = []  # when each save was acknowledged
        self.done_contents = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.server.connect() as client:
                for content in self.contents:
                    self._save(client, content)
                    time.sleep(0.2)
                self.done_contents.set()
                n = 0
                while not self.stop.is_set():
                    self._save(client, f"zz during-run filler record {n}")
                    n += 1
                    time.sleep(0.5)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _save(self, client: RawClient, content: str) -> None:
        entry = retrying(client, "memory.save", {"category": "fact", "content": content})
        self.saved[entry["id"]] = content
        self.times.append(time.monotonic())


class Reader(threading.Thread):
    """Searches all along; counts answers and anything but a result."""

    def __init__(self, server: Memoryd) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.answers = 0
        self.failures: list[Any] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.server.connect() as client:
            while not self.stop.is_set():
                reply = client.request("memory.search", {"query": "deployment", "limit": 3,
                                                          "threshold": 0})
                if "result" in reply:
                    self.answers += 1
                elif not reply["error"]["data"]["retryable"]:
                    self.failures.append(reply["error"])
                time.sleep(0.05)


@pytest.mark.skipif(not local_model_installed(), reason="the local model is not installed")
def test_reembed_to_the_local_model_while_writing(memoryd_factory: Any, short_tmp: Path
                                                  ) -> None:
    server = memoryd_factory(env=MOCK)
    fillers = [f"zz filler record {i}: nothing to see here" for i in range(100)]
    before, during = MEMORIES[:15], MEMORIES[15:]
    with server.connect() as c:
        for start in range(0, len(fillers), 100):
            c.result("memory.saveBatch", {"inputs": [
                {"category": "note", "content": text} for text in fillers[start:start + 100]]})
        saved = {e["id"]: e["content"] for e in c.result("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": text} for text in before]})["entries"]}
        c.result("conversation.save", {"state": {
            "sessionId": "s-1", "leadPersona": "zee", "summary": "We planned the release",
            "plan": "ship it", "objectives": ["test"], "keyFacts": ["Tuesday"],
            "sessionChain": [], "updatedAt": 7}})
    writer, reader = Writer(server, during), Reader(server)
    writer.start()
    reader.start()
    try:
        run = subprocess.Popen(command(server, "--provider", "local", "--json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env())
        wait_for(lambda: status(server)["state"] == "running", "the job to run")
        running_since, answers_at_start = time.monotonic(), reader.answers
        out, err = run.communicate(timeout=RUN_TIMEOUT)
        assert run.returncode == 0, err
        switched_at = time.monotonic()
        assert len([t for t in writer.times if running_since < t < switched_at]) >= 3
        writer.done_contents.wait(DEADLINE)  # the rest of them (if any) after the switch
    finally:
        writer.stop.set()
        reader.stop.set()
        writer.join(30)
        reader.join(30)
    assert writer.error is None, writer.error
    assert reader.answers > answers_at_start, "searches stopped during the run"
    assert reader.failures == []
    result = msgspec.json.decode(out.strip().splitlines()[-1])
    target = result["collection"]
    assert result["servedModel"] == {"provider": "local", "model": "all-MiniLM-L6-v2",
                                     "dimension": 384}
    assert target.startswith("agent_memory-local-") and result["old"] == ["agent_memory"]
    assert "loading the local model" in err
    progress = [msgspec.json.decode(line) for line in err.splitlines() if line.startswith("{")]
    assert progress[-1]["progress"] == "reembed" and progress[-1]["state"] == "done"
    assert progress[-1]["done"] == progress[-1]["total"] >= len(fillers) + len(before)

    saved.update(writer.saved)
    with server.connect() as c:
        # every memory is there, embedded with the new model (not legacy-mock's vector)
        for memory_id, content in saved.items():
            entry = c.result("memory.get", {"id": memory_id})
            assert entry is not None and entry["content"] == content
            assert f32(entry["embedding"]) != f32(legacy_mock_vector(content))
        # and found by a paraphrase: those saved before and during the run
        texts = {content: memory_id for memory_id, content in saved.items()}
        for question, index in PARAPHRASES.items():
            hits = c.result("memory.search", {"query": question, "limit": 1, "threshold": 0})
            assert hits and hits[0]["entry"]["id"] == texts[MEMORIES[index]], question
        assert c.result("conversation.load", {"sessionId": "s-1"})["plan"] == "ship it"
        assert c.result("system.hello")["collection"] == target
        total = c.result("memory.stats", {})["total"]
    manifest = msgspec.json.decode((server.data_dir / "embedding-models.json").read_bytes())
    assert manifest["collections"][target]["provider"] == "local"
    assert manifest["collections"][target]["model"] == "all-MiniLM-L6-v2"

    # a restart with the old provider still configured: degraded, naming both models
    server.stop()
    server = memoryd_factory(env=MOCK, root=short_tmp)
    health = server.call("system.health")["result"]
    assert health["status"] == "degraded"
    reason = " ".join(health["reasons"])
    assert "legacy-mock" in reason and "all-MiniLM-L6-v2" in reason
    assert "embedding.provider = 'local'" in reason
    refused = server.call("memory.save", {"category": "fact", "content": "x"})["error"]
    assert refused["data"]["kind"] == "embedding_unavailable"
    assert server.call("system.hello")["result"]["collection"] == target

    # with the new provider configured it serves the new collection as it was
    server.stop()
    server = memoryd_factory(env=LOCAL, root=short_tmp)
    assert server.call("system.health")["result"]["checks"]["embedder"]["ok"]
    with server.connect() as c:
        assert c.result("system.hello")["collection"] == target
        assert c.result("memory.stats", {})["total"] == total
        some_id = next(iter(writer.saved))
        vector = c.result("memory.get", {"id": some_id})["embedding"]
        hits = c.result("memory.search", {"query": "x", "vector": vector, "limit": 1})
        assert hits[0]["entry"]["id"] == some_id


def test_reembed_stopped_killed_and_rerun_ends_the_same(memoryd_factory: Any, short_tmp: Path
                                                         ) -> None:
    slow = {"MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_REEMBED_PAUSE_MS": "150"}
    server = memoryd_factory(env=slow)
    contents = [f"record {i:04d} of the archive" for i in range(700)]
    saved: dict[str, str] = {}
    with server.connect() as c:
        for start in range(0, len(contents), 100):
            entries = c.result("memory.saveBatch", {"inputs": [
                {"category": "task" if start == 0 else "note", "content": text,
                 "vector": [1.0] + [0.0] * 383}
                for text in contents[start:start + 100]]})["entries"]
            saved.update((e["id"], e["content"]) for e in entries)
    tasks = set(list(saved)[:100])

    # Ctrl-C of the CLI stops the job at a page; nothing is switched
    run = subprocess.Popen(command(server, "--provider", "legacy-mock", "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cli_env())
    wait_for(lambda: status(server)["scanned"] >= 128, "a first page")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 130, err
    assert "run the same command again to resume" in err
    stopped = status(server)
    assert stopped["state"] == "stopped" and stopped["unfinished"]
    assert stopped["scanned"] < len(contents)
    assert stopped["collection"] == "agent_memory"

    # the rerun resumes; kill -9 of memoryd midway
    run = subprocess.Popen(command(server, "--provider", "legacy-mock", "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cli_env())
    wait_for(lambda: status(server)["embedded"] > 0, "new pages in the rerun")
    server.proc.kill()
    server.proc.wait(30)
    _, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 1, err

    server = memoryd_factory(env=slow, root=short_tmp)
    assert status(server)["unfinished"]
    with server.connect() as c:  # saved while no job runs: the rerun picks them up
        more = [f"record {i:04d} of the archive" for i in range(len(contents), len(contents) + 5)]
        entries = c.result("memory.saveBatch", {"inputs": [
            {"category": "note", "content": text, "vector": [1.0] + [0.0] * 383}
            for text in more]})["entries"]
        saved.update((e["id"], e["content"]) for e in entries)
        contents += more
    run = subprocess.Popen(command(server, "--provider", "legacy-mock", "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cli_env())
    wait_for(lambda: status(server)["scanned"] >= 128, "the rerun's first pass")
    with server.connect() as c:  # writes while it runs: deletes, a filtered delete, saves
        gone = [i for i in saved if i not in tasks][:3]
        for memory_id in gone:
            c.result("memory.delete", {"id": memory_id})
        assert c.result("memory.deleteWhere", {"category": "task"})["deleted"] == len(tasks)
        entries = c.result("memory.saveBatch", {"inputs": [
            {"category": "note", "content": f"written during the rerun {i}",
             "vector": [1.0] + [0.0] * 383} for i in range(40)]})["entries"]
        during_run = status(server)["state"]
    out, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 0, err
    assert during_run == "running"
    for memory_id in [*gone, *tasks]:
        del saved[memory_id]
    saved.update((e["id"], e["content"]) for e in entries)
    result = msgspec.json.decode(out.strip().splitlines()[-1])
    target = result["collection"]
    assert result["old"] == ["agent_memory"]
    with server.connect() as c:
        assert c.result("system.hello")["collection"] == target
        assert c.result("memory.stats", {})["total"] == len(saved)
        assert c.result("memory.getMany", {"ids": [*gone, *tasks]}) == []
        for memory_id, content in saved.items():
            entry = c.result("memory.get", {"id": memory_id})
            assert entry["content"] == content
            assert f32(entry["embedding"]) == f32(legacy_mock_vector(content))

    # SIGHUP: the configured collection stands for the one served, not a change to restart for
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"SIGHUP: reloaded" in server.log(), "the reload")
    reload_line = next(line for line in server.log().splitlines() if b"SIGHUP: reloaded" in line)
    assert reload_line.endswith(b"needs a restart to change: nothing"), reload_line

    # --drop-old removes the old collection; memoryd serves on
    old_dir = server.data_dir / "edge" / "agent_memory"
    assert old_dir.is_dir()
    dropped = reembed(server, "--drop-old")
    assert dropped.returncode == 0, dropped.stderr
    assert not old_dir.exists()
    assert status(server)["old"] == []
    assert server.call("memory.stats", {})["result"]["total"] == len(saved)

    # a crash now: the journal may still hold (applied) writes to the old collection; replayed
    # at start they change nothing, and nothing waits for a store that is gone
    server.proc.kill()
    server.proc.wait(30)
    server = memoryd_factory(env=slow, root=short_tmp)
    stats = server.call("system.stats")["result"]["journal"]
    assert stats["replayedAtStart"] > 0  # the 5 saves, to the old collection
    wait_for(lambda: server.call("system.stats")["result"]["journal"]["depth"] == 0,
             "the journal to be applied")
    journal = server.call("system.health")["result"]["checks"]["journal"]
    assert journal["ok"] and journal["setAside"] == 0
    assert server.call("memory.stats", {})["result"]["total"] == len(saved)
    assert not old_dir.exists()


def test_reembed_refusals(memoryd_factory: Any, short_tmp: Path) -> None:
    server = memoryd_factory(env={**MOCK, "OPENAI_API_KEY": "", "MEMORYD_DIMENSION": "384"})
    server.call("memory.save", {"category": "fact", "content": "kept as it is"})
    with server.connect() as c:
        for params, message in (
                ({"provider": "legacy-mock"}, "already embedded with legacy-mock"),
                ({"provider": "openai"}, "no API key"),
                ({"provider": "word2vec"}, "$.provider"),
                ({}, "provider is required"),
                ({"provider": "local", "colour": 1}, "colour"),
                ({"provider": "vllm", "dimensions": 512}, "configured as 384")):
            error = c.request("transfer.reembed", params)["error"]
            assert error["data"]["kind"] == "validation", error
            assert message in msgspec.json.encode(error).decode(), error
        assert c.result("transfer.reembedStatus", {})["state"] == "idle"
    assert not (server.data_dir / "reembed.json").exists()
    server.stop()
    gone = reembed(server, "--provider", "local", timeout=DEADLINE)
    assert gone.returncode == 1 and "memoryd serve" in gone.stderr


def test_reembed_on_a_qdrant_client_store(memoryd_factory: Any, short_tmp: Path) -> None:
    """The same job through qdrant-client (its local mode standing in for a server): the new
    collection beside the old one on the same client, the old one deleted by --drop-old."""
    env = {"MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_QDRANT_PATH": str(short_tmp / "q")}
    server = memoryd_factory(env=env)
    contents = [f"note {i} on the shelf" for i in range(150)]
    with server.connect() as c:
        c.result("memory.saveBatch", {"inputs": [
            {"category": "note", "content": text, "vector": [0.0, 1.0] + [0.0] * 382}
            for text in contents]})
    done = reembed(server, "--provider", "legacy-mock", "--drop-old", "--json")
    assert done.returncode == 0, done.stderr
    target = msgspec.json.decode(done.stdout.strip().splitlines()[-1])["collection"]
    assert status(server)["old"] == []
    server.stop()
    collections = sorted(p.name for p in (short_tmp / "q" / "collection").iterdir())
    assert collections == [target]
    server = memoryd_factory(env={**env, "MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"},
                             root=short_tmp)
    with server.connect() as c:
        assert c.result("system.hello")["collection"] == target
        hits = c.result("memory.search", {"query": contents[42], "limit": 1})
        assert hits[0]["entry"]["content"] == contents[42] and hits[0]["score"] > 0.999
