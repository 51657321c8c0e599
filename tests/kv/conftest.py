"""kv.* tests talk to real memoryd processes over their socket, on both stores.

``kvd`` is one memoryd per test module and store (tests keep to their own namespaces);
``fresh`` starts one of the test's own (restarts, a smaller value cap, the sweeper).
``read_namespace`` reads a kv collection with the engine itself, after memoryd stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rpc import conftest as rpc_conftest
from tests.rpc import engines
from tests.rpc.conftest import Rpc, start

store_kind = rpc_conftest.store_kind  # the same parametrized fixture: edge, qdrant-local


@pytest.fixture(scope="module")
def kvd(store_kind: str) -> Iterator[Rpc]:
    root = Path(tempfile.mkdtemp(prefix="md-", dir="/tmp"))
    # the module's tests keep to namespaces of their own: more than the default cap
    client = start(store_kind, root, env={"MEMORYD_KV_MAX_NAMESPACES": "64"})
    yield client
    client.client.close()
    client.server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh(store_kind: str, short_tmp: Path) -> Iterator[Callable[..., Rpc]]:
    """``fresh(env=None, root=None)``: a memoryd of this test's own (``root`` again = a
    restart on the same data)."""
    started: list[Rpc] = []

    def make(env: dict[str, str] | None = None, root: Path | None = None) -> Rpc:
        if root is None:
            root = short_tmp / f"m{len(started)}"
            root.mkdir()
        client = start(store_kind, root, env=env)
        started.append(client)
        return client

    yield make
    for client in started:
        client.client.close()
        client.server.stop()


def read_namespace(kind: str, root: Path, namespace: str) -> dict[str, dict[str, Any]]:
    """Every point of ``<namespace>-cache`` as the engine holds it: payload by id, plus the
    vector under ``"_vector"``."""
    collection = f"{namespace}-cache"
    if kind == "edge":
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(str(root / "data" / "edge" / collection))
        try:
            count = shard.info().points_count
            found, _next = shard.scroll(qe.ScrollRequest(
                limit=max(1, count), with_payload=True, with_vector=True))
            return {str(r.id): {**dict(r.payload), "_vector": list(r.vector)} for r in found}
        finally:
            shard.close()
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(engines.qdrant_dir(root)))
    try:
        count = client.count(collection).count
        found, _next = client.scroll(collection, limit=max(1, count), with_payload=True,
                                     with_vectors=True)
        return {str(r.id): {**dict(r.payload or {}), "_vector": list(r.vector)}  # type: ignore[arg-type]
                for r in found}
    finally:
        client.close()
