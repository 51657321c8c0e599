"""Stores: the ``Store`` interface (``base``) and its two engines.

``make_store`` builds the one the config names: a Qdrant server/cluster when ``qdrant_url``
is set (qdrant-client local mode when ``qdrant_path`` is: tests and development), else the
embedded engine under ``<data dir>/edge/<collection>``. Both modules are imported only when chosen
(qdrant-client alone takes over a second to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sidecar.config import Config
    from sidecar.store.base import Store


def make_store(config: Config) -> Store:
    """Build the configured store (not yet opened: call ``await store.open()``). First makes
    the data directory private (0700), whichever store: it holds the journal too."""
    from loguru import logger

    from sidecar.store.files import private_dir

    if warning := private_dir(config.data_path()):
        logger.warning(warning)
    if config.qdrant_url or config.qdrant_path:
        from sidecar.store.qdrant import QdrantStore

        return QdrantStore(config, lexical=True)
    from sidecar.store.edge import EdgeStore

    return EdgeStore(config.data_path() / "edge" / config.collection,
                     collection=config.collection, lexical=True)


def make_collection_store(config: Config, name: str, *, beside: Store | None = None,
                          lexical: bool = False) -> Store:
    """Another collection ``name`` on the same engine as ``make_store`` (not yet opened).

    Embedded engine: another shard, ``<data dir>/edge/<name>``, served by a worker process of
    its own. Qdrant: the same client as ``beside`` (the already open main store) when given;
    qdrant-client local mode locks its directory, so a second client there would fail. The
    caller must not close a store that shares ``beside``'s client (closing it would close the
    shared client): only ``beside`` closes it. ``name`` must already be validated as a safe
    directory name. ``lexical``: the collection has the BM25 sparse vector (a memory collection)."""
    if config.qdrant_url or config.qdrant_path:
        import msgspec

        from sidecar.store.qdrant import QdrantStore

        store = QdrantStore(msgspec.structs.replace(config, collection=name), lexical=lexical)
        if isinstance(beside, QdrantStore):
            store._client = beside.client  # open() keeps a client it already has
        return store
    from sidecar.store.edge import EdgeStore

    return EdgeStore(config.data_path() / "edge" / name, collection=name, lexical=lexical)
