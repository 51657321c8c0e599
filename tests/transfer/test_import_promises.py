"""What `memoryd import` promises when it stops early, attacked with real memoryd processes,
real files and the CLI as a subprocess: a regular file that passes the checking pass is one
memoryd takes whole (else nothing is imported), and a stop while sending (a stream's bad line,
a file changed between the two readings) says how many records went in, counted once every
batch sent is answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from tests.support import Memoryd, proxy

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}  # embeds offline with 384 dimensions
DIM = 384


def memory(i: int, **payload: Any) -> dict[str, Any]:
    return {"space": "memories", "id": str(uuid.uuid4()), "vector": [0.1] * DIM,
            "sparse": None, "payload": {"type": "memory", "category": "fact",
                                        "content": f"memory {i}", "namespace": "default",
                                        "createdAt": 1_760_000_000_000 + i, **payload}}


def foreign(space: str, dimension: int = 1) -> dict[str, Any]:
    """A kv record without a keyHash (left by other code: kept, never read)."""
    return {"space": space, "id": str(uuid.uuid4()), "vector": [1.0] * dimension,
            "sparse": None, "payload": {"x": 1}}


def space(name: str, count: int, dimension: int | None) -> dict[str, Any]:
    return {"space": name, "collection": "c", "dimension": dimension, "distance": "Cosine",
            "model": None, "count": count}


def export(spaces: list[dict[str, Any]], records: list[dict[str, Any]]) -> bytes:
    """An export file: header, records, the last line counting them."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r["space"]] = counts.get(r["space"], 0) + 1
    header = {"format": "memoryd-export", "version": 2, "memorydVersion": "0", "spaces": spaces}
    lines = [header, *records, {"end": "memoryd-export", "records": counts}]
    return b"".join(msgspec.json.encode(line) + b"\n" for line in lines)


def cli(socket_path: Path, *args: str, **run: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run([sys.executable, "-m", "sidecar", *args, "--socket",
                           str(socket_path)], capture_output=True, text=True, timeout=120,
                          env=env, **run)


def counts(server: Memoryd) -> dict[str, int]:
    spaces = server.call("transfer.describe", {})["result"]["spaces"]
    return {s["space"]: s["count"] for s in spaces if s["count"]}


def message(done: subprocess.CompletedProcess[str]) -> str:
    """The command's one error line (progress lines aside)."""
    lines = [line for line in done.stderr.splitlines() if not line.startswith('{"progress"')]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    return lines[0]


def test_a_file_the_checking_pass_lets_through_memoryd_takes_whole(
        memoryd_factory: Any, short_tmp: Path) -> None:
    """Before: each of these passed the checking pass and memoryd refused it while sending,
    after the batches before it were written (and the message said nothing of them): an id
    with a trailing newline (`$` in the UUID pattern), a header written while a space was
    empty (dimension null: each record checked against its own length), kv namespaces the
    header counts 0 of (the namespace cap and the kv dimension skipped), a header model whose
    dimension is not its vectors' (after a kv space before it)."""
    server = memoryd_factory(env={**MOCK, "MEMORYD_KV_MAX_NAMESPACES": "1"})
    newline_id = memory(9)
    newline_id["id"] += "\n"
    eight = memory(9)
    eight["vector"] = [0.1] * 8
    lying = {"provider": "legacy-mock", "model": "mock-embedding", "dimension": 8}
    cases = [
        ([space("memories", 4, DIM)], [memory(0), memory(1), memory(2), newline_id],
         "line 5 is not an export record: Expected `str` matching regex"),
        ([space("memories", 0, None)], [memory(0), memory(1), memory(2), eight],
         "line 5: the vector has 8 dimensions; the other records of this space have 384"),
        ([space("memories", 0, DIM), space("kv:a", 0, 1), space("kv:b", 0, 1)],
         [memory(0), foreign("kv:a"), foreign("kv:b")],
         "nothing imported: the file has 2 kv namespaces this memoryd does not have"),
        ([space("memories", 1, DIM), space("kv:c", 0, None)], [memory(0), foreign("kv:c", 2)],
         "nothing imported: the export's kv:c vectors have 2 dimensions, this memoryd's have 1"),
        ([space("kv:a", 1, 1), {**space("memories", 1, DIM), "model": lying}],
         [foreign("kv:a"), memory(0)],
         "nothing imported: the header's memories model.dimension is 8 but the records' "
         "vectors have 384 dimensions"),
    ]
    path = short_tmp / "x.jsonl"
    for spaces, records, expected in cases:
        path.write_bytes(export(spaces, records))
        done = cli(server.socket, "import", str(path), "--batch", "1")
        assert expected in message(done), done.stderr
        assert counts(server) == {}, expected


def test_a_stream_stopped_by_a_bad_line_says_how_many_went_in(memoryd: Memoryd) -> None:
    """Before: `line 6: payload.category ...` alone, the batches still unanswered left behind
    (written or not after the command had exited)."""
    server = memoryd
    body = export([space("memories", 5, DIM)], [*(memory(i) for i in range(4)),
                                                memory(4, category="nope")])
    done = cli(server.socket, "import", "-", "--batch", "1", input=body.decode())
    said = message(done)
    assert said.startswith("memoryd import: line 6: payload.category must be one of"), said
    assert "4 records were imported before it stopped: import the whole file" in said, said
    assert counts(server) == {"memories": 4}  # all answered before the command ended


def test_a_file_changed_between_the_readings_says_what_went_in(
        memoryd_factory: Any, short_tmp: Path) -> None:
    """A regular file is checked, then read again to send: one changed meanwhile (a record
    made bad in place, the file cut short) stops the sending pass. memoryd still refuses the
    bad record, and the message says how many records went in. Before: `line 31: ...` or
    `line 21 is not JSON` alone, after 29 or 19 records were written."""
    server = memoryd_factory(env=MOCK)
    path = short_tmp / "x.jsonl"
    via = short_tmp / "p.sock"

    def spoil_last() -> None:  # same length, in place: the reader's open file sees it
        data = path.read_bytes()
        at = data.rindex(b'"category":"fact"')
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(b'"category":"fxct"')

    def cut() -> None:
        with open(path, "r+b") as f:
            f.truncate(sum(map(len, path.read_bytes().splitlines(keepends=True)[:21])) + 7)

    for change, said, imported in [
            (spoil_last, ("line 31: ", "payload.category must be one of"), 29),
            (cut, ("line 22 is not JSON",), 20)]:
        records = [memory(i) for i in range(30)]
        path.write_bytes(export([space("memories", 30, DIM)], records))
        before = counts(server).get("memories", 0)
        via.unlink(missing_ok=True)
        with proxy(server.socket, via, "transfer.import", change):
            done = cli(via, "import", str(path), "--batch", "1")
        text = message(done)
        assert all(part in text for part in said), text
        assert f"{imported} records were imported before it stopped" in text, text
        assert counts(server)["memories"] == before + imported
        assert server.call("memory.get", {"id": records[-1]["id"]})["result"] is None


def test_stdin_a_file_read_from_where_it_stands(memoryd: Memoryd, short_tmp: Path) -> None:
    """`memoryd import - < file` after something read the start of the file (here the shell's
    `read` of one line): both readings start where stdin stood. Before: the second started at
    byte 0, took the line before the export for its header and the header for a record."""
    server = memoryd
    path = short_tmp / "x.jsonl"
    path.write_bytes(b"a line before the export\n" + export(
        [space("memories", 2, DIM)], [memory(0), memory(1)]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    with path.open("rb") as stdin:
        done = subprocess.run(
            ["bash", "-c", 'IFS= read -r _; exec "$0" -m sidecar import - --socket "$1"',
             sys.executable, str(server.socket)], stdin=stdin, capture_output=True, text=True,
            timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert counts(server) == {"memories": 2}


def test_a_memory_longer_than_8_mib_comes_back(memoryd_factory: Any, short_tmp: Path) -> None:
    """memory.save takes a request line up to max_line_bytes (16 MiB): its export line comes
    back in. Before: `line 2 is longer than 8388608 bytes: not a record memoryd exported`."""
    source = memoryd_factory(root=short_tmp / "a", env=MOCK)
    content = " ".join(f"w{i % 5000}" for i in range(1_500_000))  # 8.3 MiB
    with source.connect() as c:
        memory_id = c.result("memory.save", {"category": "fact", "content": content})["id"]
    path = short_tmp / "big.jsonl"
    assert cli(source.socket, "export", "--out", str(path)).returncode == 0
    assert max(map(len, path.read_bytes().splitlines())) > 8 * 1024 * 1024
    target = memoryd_factory(root=short_tmp / "b", env=MOCK)
    done = cli(target.socket, "import", str(path))
    assert done.returncode == 0, done.stderr
    assert target.call("memory.get", {"id": memory_id})["result"]["content"] == content
