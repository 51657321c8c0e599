"""Export and import inside memoryd: what ``transfer.describe``, ``transfer.export`` and
``transfer.import`` do (``sidecar/rpc/transfer.py`` holds only the handlers).

Spaces are the memory collection (``memories``) and each kv namespace (``kv:<namespace>``).
Export reads the store in id order, one page per call (stable: a page starts after the last
id of the one before, whatever was written or deleted meanwhile); memoryd serves everything
else between pages. Import writes through each space's journaled Writer, like every write:
durable before the reply, and idempotent (points keep their ids, so a rerun rewrites the same
points and adds none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from sidecar import __version__, errors
from sidecar.domain import kv
from sidecar.store.base import Store
from sidecar.transfer import records as rec

if TYPE_CHECKING:
    from sidecar.app import App
    from sidecar.journal.writer import Writer

# Encoded records of one export page stop growing past this many bytes (at least one record):
# kv values are up to kv_max_value_bytes each.
PAGE_BYTES = 8 * 1024 * 1024
_SETTLE_POLL = 0.01  # seconds between looks at the journal while describe waits for it


async def settle(app: App) -> None:
    """Return once every write journaled before the call is applied to its store, so an
    export started after an acknowledgement contains that write. A store that cannot take
    them now: ``backend_unavailable`` (retry later)."""
    queue = app.journal
    if queue is None or not queue.pending:
        return
    through = queue.pending[-1].seq
    while queue.pending and queue.pending[0].seq <= through:
        if queue.stalled:
            raise errors.BackendUnavailable(
                f"{len(queue.pending)} acknowledged writes wait in the journal for the store "
                f"({queue.last_error}); an export now would miss them: retry when it is back")
        await anyio.sleep(_SETTLE_POLL)


async def describe(app: App) -> rec.Description:
    await settle(app)
    store = app.store
    collection = app.config.collection
    dimension = app.dimension
    model = await app.guard.recorded(collection) if app.guard is not None else None
    spaces = [rec.SpaceInfo(rec.MEMORIES, collection, dimension, rec.DISTANCE, model,
                            await store.count(None) if store.dimension is not None else 0)]
    kv_spaces = app.kv
    names = {s.namespace for s in kv_spaces.spaces.values() if s.exists}
    names.update(kv_spaces.discovered())
    names.update(await kv_spaces.discovered_remote())
    for namespace in sorted(names):
        space = await kv_spaces.get(namespace, create=False)
        if space is None:
            continue
        spaces.append(rec.SpaceInfo(rec.kv_space(namespace), space.collection,
                                    space.store.dimension, rec.DISTANCE, None,
                                    await space.view.count(None)))
    return rec.Description(rec.FORMAT, rec.VERSION, __version__, spaces, _embedding(app),
                           app.config.kv_max_namespaces, app.config.kv_max_value_bytes)


def _embedding(app: App) -> dict[str, str] | None:
    """The provider and model this memoryd embeds with, if any."""
    embedder = app.embedder
    return None if embedder is None else {"provider": embedder.provider,
                                          "model": embedder.model}


async def _read_view(app: App, space: str) -> Store | None:
    namespace = rec.namespace_of(space)
    if namespace is None:
        return app.store if app.store.dimension is not None else None
    found = await app.kv.get(namespace, create=False)
    return None if found is None else found.view


async def export_page(app: App, params: rec.ExportParams) -> rec.ExportPage:
    """Up to ``limit`` records after ``after`` in id order; ``next`` when more follow."""
    store = await _read_view(app, params.space)
    if store is None:
        return rec.ExportPage([])
    after = params.after.lower() if params.after is not None else None
    # The engines start a page at an id (inclusive): one more for ``after`` itself, one to
    # know whether more follow.
    found = await store.scroll(filter=None, limit=params.limit + 2, offset=after,
                               with_vector=True)
    if found and found[0].id == after:
        found = found[1:]
    page = []
    size = 0
    for record in found[:params.limit]:
        page.append(rec.encode_record(record))
        size += len(page[-1])
        if size > PAGE_BYTES:
            break
    more = len(found) > len(page)
    return rec.ExportPage(page, found[len(page) - 1].id if more and page else None)


async def import_records(app: App, params: rec.ImportParams) -> dict[str, int | bool]:
    """Write ``records`` into ``space`` through its journal; refused, with nothing written,
    when their dimension or embedding model does not fit this memoryd."""
    if not params.records:
        rec.namespace_of(params.space)
        return {"written": 0, "queued": False}
    dimension = len(params.records[0].vector)
    namespace = rec.namespace_of(params.space)
    rec.check_model(params.model, dimension)
    # every record is checked before anything is created or recorded (a collection, a kv
    # namespace, the guard's model)
    points = rec.checked_points(params.space, params.records, dimension,
                                app.config.kv_max_value_bytes)
    if namespace is None:
        writer = await _memories_for_import(app, params, dimension)
    else:
        writer = await _kv_for_import(app, params.space, namespace, dimension)
    queued = await writer.upsert(points)
    return {"written": len(points), "queued": queued}


async def _memories_for_import(app: App, params: rec.ImportParams, dimension: int) -> Writer:
    collection = app.config.collection
    recorded = await app.guard.recorded(collection) if app.guard is not None else None
    problem = rec.mismatch(
        rec.MEMORIES, source_dimension=dimension, source_model=params.model,
        target_dimension=app.dimension, target_model=recorded, embedding=_embedding(app))
    if problem is not None:
        raise problem
    await app.ensure_dimension(dimension)
    if params.model is not None and recorded is None and app.guard is not None:
        # The identity moves with the vectors: this collection is now that model's.
        await app.guard.record(collection, params.model.provider, params.model.model,
                               params.model.dimension)
    return app.writer


async def _kv_for_import(app: App, space_name: str, namespace: str, dimension: int) -> Writer:
    spaces = app.kv
    space = await spaces.get(namespace, create=False)
    target = space.store.dimension if space is not None else kv.DIMENSION
    problem = rec.mismatch(space_name, source_dimension=dimension, source_model=None,
                           target_dimension=target, target_model=None, embedding=None)
    if problem is not None:
        raise problem
    if space is None:
        space = await spaces.get(namespace, create=True, path="$.space")  # or: one too many
        assert space is not None
    return space.writer

