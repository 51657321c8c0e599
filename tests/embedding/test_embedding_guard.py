"""The model identity guard: the manifest file and the Qdrant companion collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar import errors
from sidecar.embedding import ManifestGuard, ModelGuard, ModelMismatch, QdrantGuard

pytestmark = pytest.mark.anyio


async def test_manifest_records_atomically_and_survives_reopen(tmp_path: Path) -> None:
    guard = ManifestGuard(tmp_path)
    assert await guard.recorded("agent_memory") is None
    await guard.ensure("agent_memory", "local", "all-MiniLM-L6-v2", 384)
    data = json.loads((tmp_path / "embedding-models.json").read_text())
    entry = data["collections"]["agent_memory"]
    assert (entry["provider"], entry["model"], entry["dimension"]) == (
        "local", "all-MiniLM-L6-v2", 384)
    assert entry["recordedAt"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedding-models.json"]  # noqa: ASYNC240 - no temp file left
    reopened = ManifestGuard(tmp_path)
    record = await reopened.recorded("agent_memory")
    assert record is not None and record.model == "all-MiniLM-L6-v2"
    await reopened.check("agent_memory", "local", "all-MiniLM-L6-v2", 384)  # same model: fine


async def check_refusals(guard: ModelGuard) -> None:
    await guard.record("agent_memory", "openai", "text-embedding-3-small", 1536)
    with pytest.raises(ModelMismatch) as caught:
        await guard.check("agent_memory", "voyage", "voyage-3-large", 1024)
    assert caught.value.data()["kind"] == "conflict"
    assert "--allow-model-change" in caught.value.message
    assert "text-embedding-3-small" in caught.value.message
    assert caught.value.extra["recorded"]["model"] == "text-embedding-3-small"
    # Same provider, another model of the same dimension: still refused.
    with pytest.raises(ModelMismatch):
        await guard.check("agent_memory", "openai", "text-embedding-ada-002", 1536)
    # The same model with another dimension can never share the collection.
    with pytest.raises(errors.DimensionMismatch):
        await guard.check("agent_memory", "openai", "text-embedding-3-small", 256)
    # Other collections are independent.
    await guard.check("other", "voyage", "voyage-3-large", 1024)


async def test_manifest_refuses_another_model(tmp_path: Path) -> None:
    await check_refusals(ManifestGuard(tmp_path))


async def test_allow_model_change_overrides_and_keeps_history(tmp_path: Path) -> None:
    guard = ManifestGuard(tmp_path, allow_change=True)
    await guard.ensure("c", "openai", "text-embedding-3-small", 1536)
    await guard.ensure("c", "openai", "text-embedding-3-large", 1536)
    with pytest.raises(errors.DimensionMismatch):  # allowed models, but not dimensions
        await guard.check("c", "voyage", "voyage-3-large", 1024)
    record = await ManifestGuard(tmp_path).recorded("c")
    assert record is not None and record.model == "text-embedding-3-large"
    assert [p["model"] for p in record.previous] == ["text-embedding-3-small"]
    with pytest.raises(ModelMismatch):  # a guard without the override refuses the old one
        await ManifestGuard(tmp_path).check("c", "openai", "text-embedding-3-small", 1536)


async def test_unreadable_manifest_is_reported(tmp_path: Path) -> None:
    (tmp_path / "embedding-models.json").write_text("{not json")
    with pytest.raises(errors.InternalError, match=r"embedding-models\.json"):
        await ManifestGuard(tmp_path).check("c", "local", "all-MiniLM-L6-v2", 384)


async def test_qdrant_companion_collection() -> None:
    from qdrant_client import AsyncQdrantClient

    client = AsyncQdrantClient(":memory:")
    try:
        await check_refusals(QdrantGuard(client))
        assert await client.collection_exists("memoryd_models")
        # A second memoryd on the same server sees the record.
        again = QdrantGuard(client)
        with pytest.raises(ModelMismatch):
            await again.check("agent_memory", "local", "all-MiniLM-L6-v2", 384)
        assert (await client.count("memoryd_models")).count == 1
    finally:
        await client.close()
