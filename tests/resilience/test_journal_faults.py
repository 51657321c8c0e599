"""The journal under faults, through real memoryd processes: a full disk that is freed again,
bytes flipped in the middle of a segment, a torn tail, segments of the previous format, and
records the store refuses (or this version cannot decode) at replay.

Writes are kept in the journal the way test_outage.py does it: the Qdrant server (the fake
behind a cuttable proxy) refuses connections, so saves are acknowledged ``queued``, then
memoryd is killed with SIGKILL before it could apply them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.journal.entry import Entry, decode_entry, encode_entry
from sidecar.journal.log import RECORD, Journal, scan
from sidecar.store.base import Point
from tests.fakes.proxy import CutProxy
from tests.resilience.test_outage import journal_depth, memory, start, wait_for
from tests.support import Memoryd


def journal_dir(server: Memoryd) -> Path:
    return server.data_dir / "journal"


def queue_and_kill(factory: Any, proxy: CutProxy, n: int) -> tuple[Memoryd, list[dict[str, Any]]]:
    """``n`` saves acknowledged as queued (the store refuses), then kill -9: they are only in
    the journal."""
    server = start(factory, proxy)
    with server.connect() as c:
        c.result("memory.save", memory(1000))  # creates the collection (needs the store)
        proxy.set_mode("refuse")
        acked = [c.result("memory.save", memory(i)) for i in range(n)]
    assert all(e["queued"] for e in acked)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    proxy.set_mode("open")
    return server, acked


def stop_and_log(server: Memoryd) -> str:
    server.stop()
    return server.log().decode(errors="replace")


def record_ids(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, memory id) of each upsert record in a format-2 segment."""
    records, bad = scan(data)
    assert bad == []
    out = []
    for _, body, offset in records:
        entry = decode_entry(body)
        if entry.op == "upsert":
            out.append((offset, offset + RECORD.size + len(body), entry.points[0].id))
    return out


def test_flipped_bytes_mid_segment_cost_only_the_records_they_touch(
        memoryd_factory: Any, proxy: CutProxy) -> None:
    server, acked = queue_and_kill(memoryd_factory, proxy, 40)
    [segment] = sorted(journal_dir(server).glob("*.wal"))
    data = bytearray(segment.read_bytes())
    layout = record_ids(bytes(data))
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xA5 for b in data[middle:middle + 8])
    segment.write_bytes(bytes(data))
    hit = {i for start_, end, i in layout if start_ < middle + 8 and middle < end}
    assert 1 <= len(hit) <= 2
    intact = [e for e in acked if e["id"] not in hit]
    assert len(intact) >= 38

    restarted = start(memoryd_factory, proxy)  # replays before it reports ready
    with restarted.connect() as c:
        assert journal_depth(c) == 0
        for entry in intact:  # every acknowledged write the flip did not touch
            got = c.result("memory.get", {"id": entry["id"]})
            assert got is not None and got["content"] == entry["content"], entry["id"]
        journal = c.result("system.stats")["journal"]
        assert journal["damagedRecords"] == len(hit)
        assert journal["damagedBytes"] > 0 and journal["tornBytesDiscarded"] == 0
        [copy] = journal["damagedCopies"]
        health = c.result("system.health")["checks"]["journal"]
        assert health["damagedRecords"] == len(hit)
    assert Path(copy).parent == journal_dir(server) / "damaged"
    assert Path(copy).read_bytes() == bytes(data)  # the evidence, as found
    log = stop_and_log(restarted)
    assert "ERROR" in log and f"{segment.name} is damaged" in log
    assert "never acknowledged" not in log


def test_torn_tail_is_cut_with_a_warning(memoryd_factory: Any, proxy: CutProxy) -> None:
    server, acked = queue_and_kill(memoryd_factory, proxy, 5)
    [segment] = sorted(journal_dir(server).glob("*.wal"))
    torn = segment.read_bytes()[-(RECORD.size + 30):]  # a record cut short by the crash
    with open(segment, "ab") as fh:
        fh.write(torn)
    restarted = start(memoryd_factory, proxy)
    with restarted.connect() as c:
        for entry in acked:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == entry["content"]
        journal = c.result("system.stats")["journal"]
        assert journal["tornBytesDiscarded"] == len(torn)
        assert journal["damagedRecords"] == 0 and journal["damagedCopies"] == []
    assert not (journal_dir(server) / "damaged").exists()
    log = stop_and_log(restarted)
    assert "WARNING" in log and "never acknowledged" in log
    assert "is damaged" not in log


def test_segments_of_the_previous_format_are_replayed(memoryd_factory: Any,
                                                      proxy: CutProxy) -> None:
    """A journal the previous version left (``length · crc32(body) · body``, seqs implicit,
    no file header) is replayed after the upgrade."""
    server, acked = queue_and_kill(memoryd_factory, proxy, 12)
    [segment] = sorted(journal_dir(server).glob("*.wal"))
    records, _ = scan(segment.read_bytes())
    segment.unlink()
    bodies = [body for _, body, _ in records]
    first = records[0][0]
    cut = len(bodies) // 2
    for seq, part in ((first, bodies[:cut]), (first + cut, bodies[cut:])):
        legacy = b"".join(struct.pack("<II", len(b), zlib.crc32(b)) + b for b in part)
        (journal_dir(server) / f"{seq:020d}.wal").write_bytes(legacy)

    restarted = start(memoryd_factory, proxy)
    with restarted.connect() as c:
        assert journal_depth(c) == 0
        for entry in acked:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == entry["content"]
        journal = c.result("system.stats")["journal"]
        assert journal["replayedAtStart"] == len(bodies)
        assert journal["damagedRecords"] == 0
        after = c.result("memory.save", memory(77))
        assert c.result("memory.get", {"id": after["id"]})["content"] == "memory 77"
    restarted.stop()


def test_records_replay_cannot_apply_are_kept_aside_and_start_up_completes(
        memoryd_factory: Any, proxy: CutProxy) -> None:
    server, acked = queue_and_kill(memoryd_factory, proxy, 3)
    [segment] = sorted(journal_dir(server).glob("*.wal"))
    records, _ = scan(segment.read_bytes())
    template = decode_entry(records[-1][1])  # the last queued save
    later = Point(str(uuid.uuid4()), template.points[0].vector,
                  {**template.points[0].payload, "content": "after the bad ones"})
    journal = Journal(journal_dir(server), max_bytes=1 << 20)
    journal.open()
    for body in (
        b"\xc1 not msgpack",  # passes the checksum, cannot be decoded
        msgspec.msgpack.encode(["agent_memory", "compact", 1]),  # an op from a newer version
        encode_entry(Entry("agent_memory", "upsert", 1, points=[  # the store refuses it
            Point(str(uuid.uuid4()), [0.5] * 9, {"content": "nine dimensions"})])),
        encode_entry(msgspec.structs.replace(template, points=[later])),
    ):
        seq = journal.append(body)
    anyio.run(journal.commit, seq)
    journal.close()

    restarted = start(memoryd_factory, proxy)  # ready, whatever replay met
    with restarted.connect() as c:
        assert journal_depth(c) == 0
        for entry in acked:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == entry["content"]
        assert c.result("memory.get", {"id": later.id})["content"] == "after the bad ones"
        stats = c.result("system.stats")["journal"]
        assert stats["setAside"] == 3 and stats["rejected"] == 3
        health = c.result("system.health")
        assert health["checks"]["journal"]["setAside"] == 3
    kept = [msgspec.json.decode(line) for line in
            (journal_dir(server) / "rejected.jsonl").read_bytes().splitlines()]
    assert [k["seq"] for k in kept] == [seq - 3, seq - 2, seq - 1]
    assert "body" in kept[0] and "body" in kept[1]  # undecodable: kept as journaled
    assert kept[2]["op"] == "upsert" and "dimensions" in kept[2]["error"]
    assert b"nine dimensions" in msgspec.json.encode(kept[2]["entry"])
    restarted.stop()


# -- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def tmpfs_journal(short_tmp: Path) -> Iterator[Path]:
    """``<root>/data/journal`` on an 8 MiB tmpfs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root (CI runs as root)")
    target = short_tmp / "data" / "journal"
    target.mkdir(parents=True, mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs",
                              str(target)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield target
    for _ in range(50):  # memoryd may still be closing its files
        if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(target)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def test_a_full_disk_recovers_without_a_restart(tmpfs_journal: Path, memoryd_factory: Any,
                                                short_tmp: Path) -> None:
    server = memoryd_factory("--dimension", "4")
    try:
        with server.connect() as c:
            acked = [c.result("memory.save", memory(i)) for i in range(3)]
            filler = tmpfs_journal / "filler"
            fill(filler)
            for i in range(3, 400):
                reply = c.request("memory.save", memory(i, content=f"{i} " + "x" * 2000))
                if "error" in reply:
                    break
                acked.append(reply["result"])  # fitted in the segment's last page
            assert "error" in reply, "the journal never ran out of space"
            assert reply["error"]["data"]["kind"] == "backend_unavailable"
            assert reply["error"]["data"]["retryable"] is True
            assert "disk full" in reply["error"]["message"]
            health = c.result("system.health")
            assert health["live"] is True and health["status"] == "degraded"
            journal = health["checks"]["journal"]
            assert journal["ok"] is False
            assert journal["writeError"].startswith(f"disk full at {tmpfs_journal} (")
            assert "bytes free" in journal["writeError"]
            assert any("disk full" in r for r in health["reasons"])

            filler.unlink()  # space is back: no restart
            after = c.result("memory.save", memory(500))
            assert "queued" not in after
            acked.append(after)
            acked += [c.result("memory.save", memory(i)) for i in range(501, 504)]
            wait_for(lambda: c.result("system.health")["status"] == "ok", "health ok")
            assert c.result("system.health")["checks"]["journal"]["writeError"] is None
            for entry in acked:
                assert c.result("memory.get", {"id": entry["id"]})["content"] == (
                    entry["content"])
    finally:
        server.stop()
    with contextlib.suppress(FileNotFoundError):
        (tmpfs_journal / "filler").unlink()

