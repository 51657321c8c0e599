"""Hostile inputs to transfer.* and the export/import/migrate commands, over real sockets
against a real memoryd (the commands as real subprocesses, a Qdrant URL as a real local
server). Each test is a defect found by attacking and fixed at the boundary: refused with a
precise ``validation`` (its path), nothing written, memoryd still answering and restartable.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.domain import kv
from tests.support import Memoryd

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}  # embeds offline with 384 dimensions
DIM = 384


def record(vector: list[float] | None = None, **payload: Any) -> dict[str, Any]:
    """A memory record as an export holds it (``createdAt=None``: none)."""
    fields = {"type": "memory", "category": "fact", "content": "c", "namespace": "default",
              "createdAt": 1_760_000_000_000, **payload}
    return {"id": str(uuid.uuid4()), "vector": vector or [0.1] * DIM, "sparse": None,
            "payload": {k: v for k, v in fields.items() if v is not None}}


def refused(reply: dict[str, Any], path: str) -> str:
    """The refusal's message, after checking it is a `validation` at ``path``."""
    assert "error" in reply, reply
    data = reply["error"]["data"]
    assert data["kind"] == "validation", reply
    assert [e["path"] for e in data["errors"]] == [path], reply
    return str(reply["error"]["message"])


def described(server: Memoryd) -> dict[str, dict[str, Any]]:
    spaces = server.call("transfer.describe", {})["result"]["spaces"]
    return {s["space"]: s for s in spaces}


def cli(server: Memoryd, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.run([sys.executable, "-m", "sidecar", *args, "--socket",
                           str(server.socket)], text=True, timeout=120, env=env, **streams)


def test_an_import_whose_model_dimension_lies_is_refused_and_saves_still_work(
        memoryd_factory: Any, short_tmp: Path) -> None:
    """Before: 8-d vectors under a header model of 384 dimensions made an empty memoryd's
    collection 8-d and recorded the 384-d model: every later memory.save failed."""
    server = memoryd_factory(env=MOCK)
    model = {"provider": "legacy-mock", "model": "mock-embedding", "dimension": DIM}
    reply = server.call("transfer.import", {"space": "memories", "records": [record([0.1] * 8)],
                                            "model": model})
    assert "384" in refused(reply, "$.model.dimension")
    assert described(server)["memories"]["dimension"] is None  # nothing created
    server.stop()
    server = memoryd_factory(env=MOCK)  # and it opens again
    with server.connect() as c:
        c.result("memory.save", {"category": "fact", "content": "still embeds"})
    assert described(server)["memories"]["dimension"] == DIM


def test_kv_records_must_be_what_kv_set_writes(memoryd_factory: Any) -> None:
    """Before: a kv record with a key hash past 48 bits made kv.list's next page `internal`;
    one whose id is not its key's was read under another key; values skipped the cap."""
    server = memoryd_factory(env={**MOCK, "MEMORYD_KV_MAX_VALUE_BYTES": "64"})
    good = kv.make_point("ns", "k", 1, now=5, dimension=1, created_at=None, ttl_ms=None,
                         expires_at=None)

    def attempt(id: str = good.id, **changes: Any) -> dict[str, Any]:
        payload = {**good.payload, **changes}
        return server.call("transfer.import", {"space": "kv:ns", "records": [
            {"id": id, "vector": [1.0], "payload": payload}]})

    refused(attempt(keyHash=2**63 - 1), "$.records[0].payload.keyHash")
    refused(attempt(keyHash=float(good.payload["keyHash"])), "$.records[0].payload.keyHash")
    refused(attempt(key=5), "$.records[0].payload.key")
    refused(attempt(key=""), "$.records[0].payload.key")
    refused(attempt(id=kv.point_id("ns", "other")), "$.records[0].id")
    refused(attempt(value="x" * 100), "$.records[0].payload.value")
    refused(attempt(expiresAt="soon"), "$.records[0].payload.expiresAt")
    refused(attempt(createdAt=-1), "$.records[0].payload.createdAt")
    assert "kv:ns" not in described(server)  # nothing written, no namespace created
    # a record as kv.set writes it goes in, and so does a foreign one (no keyHash: never read)
    foreign = {"id": str(uuid.uuid4()), "vector": [1.0], "payload": {"legacy": True}}
    with server.connect() as c:
        assert c.result("transfer.import", {"space": "kv:ns", "records": [
            {"id": good.id, "vector": [1.0], "payload": good.payload}, foreign]})["written"] == 2
        page = c.result("kv.list", {"namespace": "ns", "limit": 1})
        assert [e["key"] for e in page["entries"]] == ["k"] and "nextCursor" not in page
        assert c.result("kv.get", {"namespace": "ns", "key": "k"})["value"] == 1


def test_a_memory_created_at_must_be_a_cursor_a_client_can_send_back(
        memoryd_factory: Any) -> None:
    """Before: createdAt 2^63-1 was stored, and memory.list then handed out a ``before``
    cursor that memory.list itself refuses (paging stopped there); a memory with a float,
    string or no createdAt was never listed at all."""
    server = memoryd_factory(env=MOCK)
    for bad in (2**63 - 1, 2**53, 1.5, "yesterday", True, [1], None):
        reply = server.call("transfer.import", {"space": "memories", "records": [
            record(createdAt=5), record(createdAt=bad)]})
        refused(reply, "$.records[1].payload.createdAt")
    assert described(server)["memories"]["count"] == 0
    ok = [record(createdAt=t) for t in (-5, 0, 7, 2**53 - 1)]
    with server.connect() as c:
        assert c.result("transfer.import", {"space": "memories", "records": ok})["written"] == 4
        seen, before = [], None
        while True:  # page one by one through every memory with the cursor handed out
            params: dict[str, Any] = {"limit": 1, **({"before": before} if before else {})}
            page = c.result("memory.list", params)
            if not page:
                break
            seen.append(page[0]["id"])
            before = {"createdAt": page[0]["createdAt"], "id": page[0]["id"]}
    assert sorted(seen) == sorted(r["id"] for r in ok)


def test_reembed_refuses_a_base_url_that_is_not_http(memoryd: Memoryd) -> None:
    """Before: the job started, then failed (a traceback in the log for ``http://[::1``)."""
    for url in ("file:///etc/passwd", "http://[::1", "http://host:port", "localhost:8000",
                "http://"):
        reply = memoryd.call("transfer.reembed", {"provider": "vllm", "model": "m",
                                                  "baseUrl": url})
        assert "http://" in refused(reply, "$.baseUrl")
    assert memoryd.call("transfer.reembedStatus", {})["result"]["state"] == "idle"


def test_a_deeply_nested_import_line_is_named_not_a_traceback(
        memoryd_factory: Any, short_tmp: Path) -> None:
    server = memoryd_factory(env=MOCK)
    header = {"format": "memoryd-export", "version": 1, "memorydVersion": "0", "spaces": [
        {"space": "memories", "collection": "agent_memory", "dimension": DIM,
         "distance": "Cosine", "model": None, "count": 1}]}
    line = (b'{"space":"memories","id":"' + str(uuid.uuid4()).encode() + b'","vector":[0.1],'
            b'"payload":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}")
    path = short_tmp / "deep.jsonl"
    path.write_bytes(msgspec.json.encode(header) + b"\n" + line + b"\n")
    done = cli(server, "import", str(path))
    assert done.returncode == 1
    assert "line 2 nests too deeply" in done.stderr and "Traceback" not in done.stderr


def test_export_to_a_device_writes_to_it_and_never_replaces_it(
        memoryd_factory: Any, short_tmp: Path) -> None:
    """Before: ``--out /dev/null`` wrote /dev/null.partial and renamed it over the device
    node (as root, /dev/null became a file of memories); a full disk or a missing directory
    ended in a traceback."""
    server = memoryd_factory(env=MOCK)
    server.call("memory.save", {"category": "fact", "content": "private"})
    fifo = short_tmp / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done = cli(server, "export", "--out", str(fifo))
    reader.join(60)
    assert done.returncode == 0, done.stderr
    assert fifo.is_fifo() and not (short_tmp / "fifo.partial").exists()
    assert b'"private"' in got[0]
    done = cli(server, "export", "--out", str(short_tmp / "no" / "such"))
    assert done.returncode == 1 and "No such file or directory" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with open("/dev/full", "wb") as full:  # stdout on a full disk (no rename: safe to try)
        done = cli(server, "export", stdout=full)
    assert done.returncode == 1 and "No space left on device" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_export_and_import_with_the_standard_stream_closed(memoryd: Memoryd) -> None:
    """Before: `memoryd export >&-` (or `import - <&-`) ended in an AttributeError."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    command = f"{shlex.quote(sys.executable)} -m sidecar {{}} --socket {memoryd.socket}"
    for args, message in (("export >&-", "stdout is closed"), ("import - <&-", "stdin is closed")):
        done = subprocess.run(["bash", "-c", command.format(args)], capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode == 1 and message in done.stderr, done.stderr


class _Garbage:
    """A local HTTP server answering every request with ``body`` (200, JSON type)."""

    def __init__(self, body: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass


@pytest.fixture(params=[b"{garbage!", b"<h1>hi", b'{"result":{"collections":[{"name":5}]}}'])
def garbage(request: Any) -> Iterator[_Garbage]:
    server = _Garbage(request.param)
    yield server
    server.sock.close()


def test_migrate_from_a_url_that_answers_garbage_says_so(
        memoryd: Memoryd, garbage: _Garbage, short_tmp: Path) -> None:
    """Before: a reply that was not JSON ended migrate in a JSONDecodeError traceback."""
    done = cli(memoryd, "migrate", "--from-url", garbage.url, "--state",
               str(short_tmp / "state"))
    assert done.returncode == 1
    assert "answered, but not as a Qdrant server does" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- hostile files for `memoryd import` ---------------------------------------------------------

def export_file(server: Memoryd, path: Path, memories: int) -> list[bytes]:
    """``memories`` saved and exported to ``path``: its lines (header, records, last line)."""
    with server.connect() as c:
        c.result("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": f"memory {i}"} for i in range(memories)]})
    done = cli(server, "export", "--out", str(path))
    assert done.returncode == 0, done.stderr
    return path.read_bytes().splitlines(keepends=True)


def stats_total(server: Memoryd) -> int:
    return int(server.call("memory.stats", {})["result"]["total"])


def test_an_export_cut_short_or_with_a_bad_late_line_imports_nothing(
        memoryd_factory: Any, short_tmp: Path) -> None:
    """Before: a file cut at the end of a line was imported as if whole (exit 0); a bad line
    after the first batch, invalid UTF-8 (a traceback) or a record of a space the header does
    not list stopped the import with the batches before it written."""
    source = memoryd_factory(root=short_tmp / "a", env=MOCK)
    lines = export_file(source, short_tmp / "a.jsonl", 5)
    header, records, end = lines[0], lines[1:-1], lines[-1]
    assert msgspec.json.decode(end) == {"end": "memoryd-export", "records": {"memories": 5}}
    bad = msgspec.json.decode(records[3])
    bad["payload"]["category"] = 5
    kv_record = {"space": "kv:ns", "id": str(uuid.uuid4()), "vector": [1.0], "payload": {}}
    target = memoryd_factory(root=short_tmp / "b", env=MOCK)
    cases = [
        (records[:4], "the file ends at line 5 without the export's last line: it was cut short"),
        ([*records[:3], msgspec.json.encode(bad) + b"\n", *records[4:], end],
         "line 5: payload.category must be a string, not an integer"),
        ([*records[:3], records[3].replace(b'"content":"', b'"content":"\xff'), *records[4:], end],
         "line 5 is not UTF-8 text"),
        ([*records, msgspec.json.encode(kv_record) + b"\n", end],
         "line 7 is a record of space 'kv:ns', which the header does not list (memories)"),
        ([*records, end, records[0]], "line 8 follows the export's last line (line 7)"),
        ([*records[:4], b'{"end":"memoryd-export","records":{"memories":5}}\n'],
         "the file's last line counts {'memories': 5} records, its lines hold "
         "{'memories': 4}"),
    ]
    path = short_tmp / "bad.jsonl"
    for body, message in cases:
        path.write_bytes(header + b"".join(body))
        done = cli(target, "import", str(path), "--batch", "1")
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no trace
        assert stats_total(target) == 0
    # a stream cannot be read twice: what came before is imported, and the message says so
    cut = (header + b"".join(records[:4])).decode()
    done = cli(target, "import", "-", "--batch", "1", input=cut)
    assert done.returncode == 1
    assert ("cut short (copy it again); 4 records were imported before it stopped: import "
            "the whole file") in done.stderr, done.stderr
    # and the whole file, from a pipe too, goes in
    done = cli(target, "import", "-", input=b"".join(lines).decode())
    assert done.returncode == 0, done.stderr
    assert stats_total(target) == 5


def test_an_id_in_two_batches_ends_as_its_later_line(memoryd_factory: Any,
                                                     short_tmp: Path) -> None:
    """Batches are sent four at a time: a batch holding an id of one still unanswered waits
    for it, so the later line wins across batches as it does within one (before, either
    could end stored)."""
    server = memoryd_factory(env=MOCK)
    header = {"format": "memoryd-export", "version": 1, "memorydVersion": "0", "spaces": [
        {"space": "memories", "collection": "agent_memory", "dimension": DIM,
         "distance": "Cosine", "model": None, "count": 40}]}
    lines = [msgspec.json.encode(header)]
    ids = [str(uuid.uuid4()) for _ in range(20)]
    for i, memory_id in enumerate(ids):
        for version in ("first", "later"):
            line = {"space": "memories", **record(content=f"{version} {i}"), "id": memory_id}
            lines.append(msgspec.json.encode(line))
    path = short_tmp / "twice.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = cli(server, "import", str(path), "--batch", "1")
    assert done.returncode == 0, done.stderr
    with server.connect() as c:
        for i, memory_id in enumerate(ids):
            assert c.result("memory.get", {"id": memory_id})["content"] == f"later {i}"
