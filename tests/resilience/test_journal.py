"""The journal on its own: group commit, torn tails, the size cap, trimming."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import anyio
import pytest

from sidecar import errors
from sidecar.journal import HEADER, Journal, JournalError

pytestmark = pytest.mark.anyio


def body(i: int) -> bytes:
    return f"record-{i:05d}-".encode() * 8


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=1 << 26)
    journal.open()
    committed: list[int] = []

    async def writer(i: int) -> None:
        seq = journal.append(body(i))
        await journal.commit(seq)
        committed.append(seq)

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(writer, i)
    print(f"300 commits, {journal.fsyncs} fsyncs")
    assert sorted(committed) == list(range(1, 301))
    assert journal.appends == 300
    # Writers that arrive while a flush runs share the next one.
    assert journal.fsyncs < 300 // 2
    journal.close()

    reopened = Journal(tmp_path / "j", max_bytes=1 << 26)
    records = reopened.open()
    assert [b for _, b in records] == [body(i) for i in range(300)]
    reopened.close()


async def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 20)
    journal.open()
    for i in range(10):
        await journal.commit(journal.append(body(i)))
    journal.close()
    [segment] = segments(directory)
    whole = segment.stat().st_size
    # A crash in the middle of writing record 11: its header and half its body.
    torn = body(10)
    append_bytes(segment, HEADER.pack(len(torn), zlib.crc32(torn)) + torn[: len(torn) // 2])

    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    assert [seq for seq, _ in records] == list(range(1, 11))
    assert [b for _, b in records] == [body(i) for i in range(10)]
    assert journal.torn_bytes == HEADER.size + len(torn) // 2
    assert segment.stat().st_size == whole  # cut on disk, not just skipped
    # New records follow the intact ones.
    seq = journal.append(body(99))
    await journal.commit(seq)
    assert seq == 11
    journal.close()


async def test_checksum_mismatch_cuts_from_there(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 20)
    journal.open()
    for i in range(5):
        await journal.commit(journal.append(body(i)))
    journal.close()
    [segment] = segments(directory)
    data = bytearray(segment.read_bytes())
    record = HEADER.size + len(body(0))
    data[3 * record + HEADER.size + 2] ^= 0xFF  # flip a byte in record 4's body
    segment.write_bytes(bytes(data))
    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    assert [b for _, b in records] == [body(i) for i in range(3)]
    assert journal.torn_bytes == 2 * record
    journal.close()


async def test_zeroed_tail_is_not_a_record(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 20)
    journal.open()
    await journal.commit(journal.append(body(0)))
    journal.close()
    [segment] = segments(directory)
    append_bytes(segment, b"\0" * 64)  # some filesystems leave zeros after a crash
    journal = Journal(directory, max_bytes=1 << 20)
    assert [b for _, b in journal.open()] == [body(0)]
    journal.close()


async def test_cap_refuses_with_backend_unavailable_and_trim_frees(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=64 * 1024, segment_bytes=4096)
    journal.open()
    seqs = []
    with pytest.raises(errors.BackendUnavailable) as caught:
        while True:
            seqs.append(journal.append(b"x" * 1000))
    assert "full" in caught.value.message
    assert journal.size <= 64 * 1024
    assert len(segments(tmp_path / "j")) > 2
    await journal.commit(seqs[-1])
    journal.applied(seqs[-1])  # all applied: old segments go
    assert len(segments(tmp_path / "j")) == 1
    await journal.commit(journal.append(b"y" * 1000))
    journal.close()


async def test_segments_are_trimmed_only_once_applied(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 20, segment_bytes=4096)
    journal.open()
    seqs = [journal.append(body(i) * 2) for i in range(100)]
    await journal.commit(seqs[-1])
    before = len(segments(directory))
    assert before > 3
    journal.applied(seqs[49])
    after = segments(directory)
    assert 1 < len(after) < before
    journal.close()  # not all applied: the rest stays for replay
    reopened = Journal(directory, max_bytes=1 << 20, segment_bytes=4096)
    replay = [seq for seq, _ in reopened.open()]
    # Whole segments only: some applied records may be replayed again (idempotent), none of
    # the unapplied ones may be missing.
    assert set(range(51, 101)) <= set(replay)
    assert replay == sorted(replay) and replay[-1] == 100
    reopened.applied(100)
    reopened.close()
    assert segments(directory) == []  # everything applied: a clean close leaves nothing


def test_second_opener_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j", max_bytes=1 << 20)
    first.open()
    with pytest.raises(JournalError, match="in use"):
        Journal(tmp_path / "j", max_bytes=1 << 20).open()
    first.close()


def test_header_layout() -> None:
    # length and crc32, little-endian: the format other tools (and this test) can read.
    assert HEADER.format == "<II" and HEADER.size == struct.calcsize("<II") == 8
