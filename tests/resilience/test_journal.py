"""The journal on its own: group commit, torn tails, damage, old segments, the size cap,
trimming."""

from __future__ import annotations

import resource
import signal
import struct
import zlib
from pathlib import Path

import anyio
import pytest

from sidecar import errors
from sidecar.journal.log import (
    FILE_MAGIC,
    RECORD,
    RECORD_MAGIC,
    SEGMENT_HEADER,
    Journal,
    JournalError,
    frame,
)

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
    torn = frame(11, body(10))[: RECORD.size + len(body(10)) // 2]
    append_bytes(segment, torn)

    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    assert [seq for seq, _ in records] == list(range(1, 11))
    assert [b for _, b in records] == [body(i) for i in range(10)]
    assert journal.torn_bytes == len(torn)
    assert journal.damaged_records == 0 and not (directory / "damaged").exists()
    assert segment.stat().st_size == whole  # cut on disk, not just skipped
    # New records follow the intact ones.
    seq = journal.append(body(99))
    await journal.commit(seq)
    assert seq == 11
    journal.close()


async def write_records(directory: Path, n: int, **kwargs: int) -> None:
    journal = Journal(directory, max_bytes=1 << 20, **kwargs)
    journal.open()
    for i in range(n):
        await journal.commit(journal.append(body(i)))
    journal.close()


async def test_a_damaged_record_costs_only_itself(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    await write_records(directory, 5)
    [segment] = segments(directory)
    original = segment.read_bytes()
    data = bytearray(original)
    record = RECORD.size + len(body(0))
    data[SEGMENT_HEADER + 3 * record + RECORD.size + 2] ^= 0xFF  # a byte of record 4's body
    segment.write_bytes(bytes(data))

    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    # Record 5 keeps its seq: seqs are in the records, not implied by their position.
    assert records == [(1, body(0)), (2, body(1)), (3, body(2)), (5, body(4))]
    assert (journal.damaged_records, journal.damaged_bytes, journal.torn_bytes) == (1, record, 0)
    [copy] = (directory / "damaged").iterdir()
    assert copy.name.startswith(segment.name + ".")
    assert copy.read_bytes() == bytes(data)  # the evidence, as found
    assert journal.stats()["damagedCopies"] == [str(copy)]
    assert journal.append(body(9)) == 6
    journal.close()

    # Seen again at the next start (not yet applied): reported again, copied once.
    again = Journal(directory, max_bytes=1 << 20)
    assert [seq for seq, _ in again.open()] == [1, 2, 3, 5, 6]
    assert again.damaged_records == 1
    assert len(list((directory / "damaged").iterdir())) == 1
    again.applied(6)
    again.close()
    assert segments(directory) == []


async def test_eight_flipped_bytes_mid_segment_lose_only_the_records_they_touch(
        tmp_path: Path) -> None:
    directory = tmp_path / "j"
    await write_records(directory, 40)
    [segment] = segments(directory)
    data = bytearray(segment.read_bytes())
    record = RECORD.size + len(body(0))
    # 8 bytes straddling the end of record 20 and the start of record 21
    middle = SEGMENT_HEADER + 20 * record - 4
    data[middle:middle + 8] = bytes(b ^ 0x5A for b in data[middle:middle + 8])
    segment.write_bytes(bytes(data))
    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    assert [seq for seq, _ in records] == [*range(1, 20), *range(22, 41)]
    assert all(b == body(seq - 1) for seq, b in records)
    assert journal.damaged_records == 2 and journal.damaged_bytes == 2 * record
    journal.close()


async def test_damage_across_segments_is_counted_from_the_seq_gap(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    await write_records(directory, 150, segment_bytes=4096)
    paths = segments(directory)
    assert len(paths) > 3
    # the second segment entirely overwritten, the third's tail zeroed
    paths[1].write_bytes(b"\x00" * paths[1].stat().st_size)
    third = bytearray(paths[2].read_bytes())
    third[-40:] = b"\x00" * 40
    paths[2].write_bytes(bytes(third))
    first_of = [int(p.name[:-4]) for p in paths]
    journal = Journal(directory, max_bytes=1 << 20, segment_bytes=4096)
    records = journal.open()
    seqs = [seq for seq, _ in records]
    # everything in segment 2 and the last record of segment 3 are gone, nothing else
    lost = set(range(first_of[1], first_of[2])) | {first_of[3] - 1}
    assert seqs == [s for s in range(1, 151) if s not in lost]
    assert journal.damaged_records == len(lost)
    assert len(list((directory / "damaged").iterdir())) == 2
    assert not paths[1].exists()  # nothing valid left in it (the copy is kept)
    journal.close()


async def test_damage_and_a_torn_tail_in_the_last_segment(tmp_path: Path) -> None:
    """The copy aside is taken before the torn tail is cut: it holds the file as found."""
    directory = tmp_path / "j"
    await write_records(directory, 6)
    [segment] = segments(directory)
    data = bytearray(segment.read_bytes())
    data[SEGMENT_HEADER + 10] ^= 0xFF  # record 1's header
    torn = frame(7, body(6))[:-5]
    found = bytes(data) + torn
    segment.write_bytes(found)
    journal = Journal(directory, max_bytes=1 << 20)
    assert [seq for seq, _ in journal.open()] == [2, 3, 4, 5, 6]
    assert (journal.damaged_records, journal.torn_bytes) == (1, len(torn))
    [copy] = (directory / "damaged").iterdir()
    assert copy.read_bytes() == found
    assert segment.read_bytes() == bytes(data)  # only the torn tail was cut
    journal.close()


async def test_a_failed_append_is_cut_back_off_and_the_next_one_retries(
        tmp_path: Path) -> None:
    """A write the file system refuses part-way (here: RLIMIT_FSIZE, the one limit a test
    can lower without root; the tmpfs test in test_journal_faults.py fills a real disk)."""
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 24)
    journal.open()
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    seqs = []
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024 + 50, hard))
        with pytest.raises(errors.BackendUnavailable) as caught:
            while True:
                seqs.append(journal.append(b"z" * 1000))
        assert "cannot write" in caught.value.message
        assert journal.stats()["writeError"] is not None
        [segment] = segments(directory)
        assert segment.stat().st_size == SEGMENT_HEADER + len(seqs) * (RECORD.size + 1000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    seqs.append(journal.append(b"after"))
    await journal.commit(seqs[-1])
    assert journal.stats()["writeError"] is None
    journal.close()
    reopened = Journal(directory, max_bytes=1 << 24)
    records = reopened.open()
    assert [seq for seq, _ in records] == seqs and records[-1][1] == b"after"
    assert reopened.torn_bytes == 0 and reopened.damaged_records == 0
    reopened.close()


@pytest.mark.parametrize("legacy", [False, True])
async def test_a_damaged_last_record_is_not_taken_for_a_torn_tail(tmp_path: Path,
                                                                  legacy: bool) -> None:
    """Whole (as long as its header says) but failing its checksum: a bit flipped after the
    write completed, so possibly acknowledged — reported as damage, not cut silently."""
    directory = tmp_path / "j"
    if legacy:
        directory.mkdir()
        (directory / f"{1:020d}.wal").write_bytes(legacy_segment([body(i) for i in range(3)]))
    else:
        await write_records(directory, 3)
    [segment] = segments(directory)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    journal = Journal(directory, max_bytes=1 << 20)
    assert [seq for seq, _ in journal.open()] == [1, 2]
    assert (journal.damaged_records, journal.torn_bytes) == (1, 0)
    assert len(list((directory / "damaged").iterdir())) == 1
    journal.close()


@pytest.mark.parametrize("inner_seq", [1, 2], ids=["old-seq", "next-seq"])
async def test_a_record_inside_a_body_is_never_replayed(tmp_path: Path, inner_seq: int) -> None:
    """A body holding a whole framed record (content is the client's) is never taken for a
    record after damage: not with an old seq (seqs only grow), nor with the next one (a
    client can read ``lastSeq`` from system.stats): its checksum lacks the segment's salt."""
    directory = tmp_path / "j"
    journal = Journal(directory, max_bytes=1 << 20)
    journal.open()
    inner = frame(inner_seq, b"forged")
    for payload in (b"a" * 50, b"x" + inner + b"y", b"b" * 50):
        await journal.commit(journal.append(payload))
    journal.close()
    [segment] = segments(directory)
    data = bytearray(segment.read_bytes())
    data[SEGMENT_HEADER + RECORD.size + 50 + 2] ^= 0xFF  # damage the second record's header
    segment.write_bytes(bytes(data))
    reopened = Journal(directory, max_bytes=1 << 20)
    assert reopened.open() == [(1, b"a" * 50), (3, b"b" * 50)]
    assert reopened.damaged_records == 1
    reopened.close()


def legacy_segment(bodies: list[bytes]) -> bytes:
    """What memoryd wrote before format 2: ``length · crc32(body) · body``, no file header."""
    return b"".join(struct.pack("<II", len(b), zlib.crc32(b)) + b for b in bodies)


async def test_old_format_segments_are_replayed(tmp_path: Path) -> None:
    """Segments written before format 2 (seqs implicit) are read as they are; new records go
    to a new-format segment after them."""
    directory = tmp_path / "j"
    directory.mkdir()
    old = [body(i) for i in range(7)]
    (directory / f"{5:020d}.wal").write_bytes(legacy_segment(old[:4]))
    torn = struct.pack("<II", 100, 0) + b"half"  # the old version's crash, at the very end
    (directory / f"{9:020d}.wal").write_bytes(legacy_segment(old[4:]) + torn)
    journal = Journal(directory, max_bytes=1 << 20)
    records = journal.open()
    assert records == [(5 + i, b) for i, b in enumerate(old)]
    assert (journal.damaged_records, journal.torn_bytes) == (0, len(torn))
    seq = journal.append(b"new")
    assert seq == 12
    await journal.commit(seq)
    journal.close()
    reopened = Journal(directory, max_bytes=1 << 20)
    assert reopened.open() == [*records, (12, b"new")]
    assert segments(directory)[-1].read_bytes().startswith(FILE_MAGIC)
    reopened.close()


async def test_damage_in_an_old_format_segment_keeps_the_later_segments(
        tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    old = [body(i) for i in range(8)]
    first = bytearray(legacy_segment(old[:4]))
    first[len(first) // 2] ^= 0xFF  # in record 2 or 3: nothing marks where 3 starts
    (directory / f"{1:020d}.wal").write_bytes(bytes(first))
    (directory / f"{5:020d}.wal").write_bytes(legacy_segment(old[4:]))
    journal = Journal(directory, max_bytes=1 << 20)
    seqs = [seq for seq, _ in journal.open()]
    kept = len([s for s in seqs if s < 5])
    assert seqs == [*range(1, kept + 1), 5, 6, 7, 8]
    assert journal.damaged_records == 4 - kept >= 1
    assert len(list((directory / "damaged").iterdir())) == 1
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


def test_record_layout() -> None:
    # magic, crc32 over length · seq · body, length, seq (little-endian): the format other
    # tools (and this test) can read.
    assert RECORD.format == "<4sIIQ" and RECORD.size == 20
    record = frame(7, b"hello")
    magic, crc, length, seq = RECORD.unpack_from(record)
    assert (magic, length, seq) == (RECORD_MAGIC, 5, 7)
    assert crc == zlib.crc32(record[8:])
