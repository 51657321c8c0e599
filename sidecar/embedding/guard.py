"""The model identity guard: a collection is embedded by one model only.

Vectors from two models live in unrelated spaces, so a search embedded by one model finds
nothing sensible among vectors written by another, silently. memoryd therefore records the
provider, model and dimension that embedded each collection and refuses to embed into it
with another model unless told to (``--allow-model-change`` / ``embedding.allow_model_change``).
Vectors that callers supply are not checked here, only against the collection's dimension.

Where the record lives:
- ``ManifestGuard``: a JSON manifest in the data directory, for the embedded store.
- ``QdrantGuard``: a small companion collection on the Qdrant server, so every memoryd that
  uses the server sees the same record.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
from loguru import logger

from sidecar import errors

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

MANIFEST_NAME = "embedding-models.json"
COMPANION_COLLECTION = "memoryd_models"
_ID_NAMESPACE = uuid.UUID("6f1c2a7e-3b54-4d0e-9a51-8c3f0e2d7b19")


class ModelRecord(msgspec.Struct, rename="camel"):
    provider: str
    model: str
    dimension: int
    recorded_at: int = 0  # ms since the epoch
    previous: list[dict[str, Any]] = []  # earlier identities, when a change was allowed

    def same_model(self, provider: str, model: str) -> bool:
        return self.provider == provider and self.model == model


class Manifest(msgspec.Struct):
    version: int = 1
    collections: dict[str, ModelRecord] = {}


class ModelMismatch(errors.Conflict):
    """The collection was embedded with another model."""


def mismatch(collection: str, recorded: ModelRecord, provider: str, model: str,
             dimension: int) -> ModelMismatch:
    return ModelMismatch(
        f"collection {collection!r} was embedded with {recorded.provider} {recorded.model!r} "
        f"({recorded.dimension}-d), but memoryd is configured for {provider} {model!r} "
        f"({dimension}-d). Set embedding.provider = {recorded.provider!r} and "
        f"embedding.model = {recorded.model!r} to keep using it, use another collection, or "
        f"start memoryd with --allow-model-change to embed with the new model anyway "
        f"(old and new vectors will not compare well).",
        collection=collection,
        recorded={"provider": recorded.provider, "model": recorded.model,
                  "dimension": recorded.dimension},
        configured={"provider": provider, "model": model, "dimension": dimension},
    )


class ModelGuard(ABC):
    def __init__(self, allow_change: bool = False) -> None:
        self.allow_change = allow_change
        self._lock = anyio.Lock()

    @abstractmethod
    async def recorded(self, collection: str) -> ModelRecord | None:
        """The identity recorded for ``collection``, if any."""

    @abstractmethod
    async def _write(self, collection: str, record: ModelRecord) -> None: ...

    async def check(self, collection: str, provider: str, model: str, dimension: int) -> None:
        """Raise ``ModelMismatch`` (kind ``conflict``) when ``collection`` was embedded by
        another model and changes are not allowed, ``DimensionMismatch`` when the dimension
        differs (no setting can mix dimensions in one collection)."""
        record = await self.recorded(collection)
        if record is None:
            return
        if not record.same_model(provider, model) and not self.allow_change:
            raise mismatch(collection, record, provider, model, dimension)
        if record.dimension != dimension:
            raise errors.DimensionMismatch(
                record.dimension, dimension,
                f"collection {collection!r} holds {record.dimension}-d vectors from "
                f"{record.provider} {record.model!r}; {provider} {model!r} makes "
                f"{dimension}-d vectors")

    async def record(self, collection: str, provider: str, model: str, dimension: int) -> None:
        """Record the identity that embeds ``collection`` from now on (kept if unchanged)."""
        async with self._lock:
            old = await self.recorded(collection)
            if old is not None and old.same_model(provider, model) and old.dimension == dimension:
                return
            previous = []
            if old is not None:
                previous = [*old.previous, {"provider": old.provider, "model": old.model,
                                            "dimension": old.dimension,
                                            "recordedAt": old.recorded_at}]
                logger.warning("collection {} now embedded with {} {} (was {} {})",
                               collection, provider, model, old.provider, old.model)
            await self._write(collection, ModelRecord(
                provider, model, dimension, int(time.time() * 1000), previous))

    async def ensure(self, collection: str, provider: str, model: str, dimension: int) -> None:
        """``check`` then ``record``: call before the first embedded write."""
        await self.check(collection, provider, model, dimension)
        await self.record(collection, provider, model, dimension)


class ManifestGuard(ModelGuard):
    """The record as ``<data_dir>/embedding-models.json``, replaced atomically."""

    def __init__(self, data_dir: str | Path, allow_change: bool = False) -> None:
        super().__init__(allow_change)
        self.path = Path(data_dir) / MANIFEST_NAME
        self._manifest: Manifest | None = None

    def _read(self) -> Manifest:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=Manifest)
        except FileNotFoundError:
            return Manifest()
        except (OSError, msgspec.DecodeError) as exc:
            raise errors.InternalError(
                f"the embedding model manifest {self.path} is unreadable ({exc}); "
                f"fix or remove it") from None

    async def recorded(self, collection: str) -> ModelRecord | None:
        if self._manifest is None:
            self._manifest = await anyio.to_thread.run_sync(self._read)
        return self._manifest.collections.get(collection)

    async def _write(self, collection: str, record: ModelRecord) -> None:
        manifest = await anyio.to_thread.run_sync(self._read)
        manifest.collections[collection] = record
        data = msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
        await anyio.to_thread.run_sync(atomic_write, self.path, data)
        self._manifest = manifest


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file, never a
    mix: a temporary file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class QdrantGuard(ModelGuard):
    """The record as one point per collection in a companion collection on the server
    (a 1-d vector, since Qdrant has no payload-only collections)."""

    def __init__(self, client: AsyncQdrantClient, allow_change: bool = False,
                 companion: str = COMPANION_COLLECTION) -> None:
        super().__init__(allow_change)
        self.client = client
        self.companion = companion

    def _point_id(self, collection: str) -> str:
        return model_point_id(collection)

    async def recorded(self, collection: str) -> ModelRecord | None:
        try:
            if not await self.client.collection_exists(self.companion):
                return None
            points = await self.client.retrieve(self.companion, [self._point_id(collection)],
                                                with_payload=True)
        except Exception as exc:
            raise _unavailable(exc) from None
        if not points:
            return None
        payload = dict(points[0].payload or {})
        payload.pop("collection", None)
        try:
            return msgspec.convert(payload, ModelRecord)
        except msgspec.ValidationError as exc:
            raise errors.InternalError(
                f"the model record for {collection!r} in {self.companion!r} is invalid "
                f"({exc}); fix or delete that point") from None

    async def _write(self, collection: str, record: ModelRecord) -> None:
        try:
            await self._upsert(collection, record)
        except Exception as exc:
            raise _unavailable(exc) from None

    async def _upsert(self, collection: str, record: ModelRecord) -> None:
        from qdrant_client import models

        if not await self.client.collection_exists(self.companion):
            try:
                await self.client.create_collection(
                    self.companion,
                    vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT))
            except Exception:
                # Another memoryd may have created it meanwhile; anything else recurs below.
                if not await self.client.collection_exists(self.companion):
                    raise
        payload = {"collection": collection, **msgspec.to_builtins(record)}
        await self.client.upsert(self.companion, wait=True, points=[
            models.PointStruct(id=self._point_id(collection), vector=[1.0], payload=payload)])


def model_point_id(collection: str) -> str:
    """Where the companion collection holds ``collection``'s record (also read and written
    by ``memoryd migrate``)."""
    return str(uuid.uuid5(_ID_NAMESPACE, collection))


def _unavailable(exc: Exception) -> errors.BackendUnavailable:
    return errors.BackendUnavailable(
        f"cannot read or write the embedding model record on Qdrant: {type(exc).__name__}")
