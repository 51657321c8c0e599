"""The ``upsert_probed`` journal entry on its own: placed at apply time at the first candidate
id that is free or the session's own, and set aside (never dropped) when every candidate holds
another session's record. Real store (qdrant-client local mode), real journal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest

from sidecar.config import Config
from sidecar.domain.probing import ProbeRule
from sidecar.journal import attach
from sidecar.journal.entry import Probed
from sidecar.journal.queue import WriteQueue
from sidecar.journal.view import JournaledView
from sidecar.journal.writer import Writer
from sidecar.store import make_store
from sidecar.store.base import Point, Store

pytestmark = pytest.mark.anyio

VEC = [1.0, 0.0, 0.5, 0.5]
IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
STATE_ID = "00000000-0000-4000-8000-000000000009"


def conv(session: str, summary: str) -> dict[str, object]:
    return {"type": "conversation", "sessionId": session, "summary": summary}


class Rig(NamedTuple):
    store: Store
    queue: WriteQueue
    writer: Writer
    view: JournaledView


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A real store (qdrant-client local mode) behind a real journal. write_timeout_ms=1 and
    no applier task: every write is acknowledged as queued, then applied by the test's own
    step() calls."""
    config = Config(data_dir=str(tmp_path / "data"), qdrant_path=str(tmp_path / "q"),
                    write_timeout_ms=1)
    store = make_store(config)
    await store.open()
    await store.ensure_collection(len(VEC), [])
    queue = WriteQueue.open(config)
    view, writer = attach(config.collection, store, queue)
    try:
        yield Rig(store, queue, writer, view)
    finally:
        queue.close()
        await store.close()


async def test_placed_at_apply_time_or_set_aside(rig: Rig, tmp_path: Path) -> None:
    store, queue, writer, view = rig
    # candidate 1: another session's; candidate 2: ours (older); candidate 3: free
    await store.upsert([Point(IDS[0], VEC, conv("other", "theirs")),
                        Point(IDS[1], VEC, conv("mine", "old"))])
    rule = ProbeRule("conversation", "mine")
    assert await writer.upsert_probed([Point(STATE_ID, VEC, {"type": "state"})],
                                      [Probed(IDS, rule, VEC, conv("mine", "new"))])
    assert view.queued_probed(rule) == conv("mine", "new")
    assert [r.id for r in await view.retrieve([STATE_ID])] == [STATE_ID]  # plain point
    assert await queue.step() == "applied"
    assert view.queued_probed(rule) is None
    got = {r.id: r.payload for r in await store.retrieve([*IDS, STATE_ID])}
    assert got == {IDS[0]: conv("other", "theirs"), IDS[1]: conv("mine", "new"),
                   STATE_ID: {"type": "state"}}

    # every candidate taken by others: set aside with its entry, nothing written
    await store.upsert([Point(i, VEC, conv("other", "theirs")) for i in IDS])
    lost = ProbeRule("conversation", "late")
    assert await writer.upsert_probed([], [Probed(IDS, lost, VEC, conv("late", "x"))])
    assert await queue.step() == "applied"
    assert queue.set_aside == 1 and queue.depth() == 0
    [line] = (tmp_path / "data" / "journal" / "rejected.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["op"] == "upsert_probed" and "late" in record["error"]
    assert record["entry"][-1][0][3] == conv("late", "x")  # the probed point, kept whole
    assert all(r.payload == conv("other", "theirs") for r in await store.retrieve(IDS))


async def test_load_sees_a_queued_probed_save_until_it_is_applied(rig: Rig) -> None:
    """Right after an outage the store answers again while the applier has not yet applied a
    conversation saved during it: conversation.load must return that save, not the store's
    older record — and a plain save queued after it wins over it."""
    from sidecar.domain.legacy_ids import CONVERSATION, probe_id
    from sidecar.services.conversations import load_conversation

    store, queue, writer, view = rig
    candidates = [probe_id(CONVERSATION, "s1", n) for n in range(1, 4)]

    def state(summary: str) -> dict[str, object]:
        return {"type": "conversation", "sessionId": "s1", "leadPersona": "zee",
                "summary": summary, "plan": "", "objectives": [], "keyFacts": [],
                "sessionChain": [], "updatedAt": 1}

    await store.upsert([Point(candidates[0], VEC, state("old"))])
    rule = ProbeRule("conversation", "s1")
    assert await writer.upsert_probed([], [Probed(candidates, rule, VEC, state("new"))])
    loaded = await load_conversation(view, "s1")
    assert loaded is not None and loaded.summary == "new"
    assert await writer.upsert([Point(candidates[0], VEC, state("newer"))])
    loaded = await load_conversation(view, "s1")
    assert loaded is not None and loaded.summary == "newer"
    assert await queue.step() == "applied"
    assert await queue.step() == "applied"
    loaded = await load_conversation(view, "s1")
    assert loaded is not None and loaded.summary == "newer"
    assert [r.payload["summary"] for r in await store.retrieve(candidates)] == ["newer"]
