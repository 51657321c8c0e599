"""Stores: the ``Store`` interface (``base``) and its two engines.

``open_store`` picks one from the config: a Qdrant server/cluster when ``qdrant_url`` is set
(qdrant-client local mode when ``qdrant_path`` is: tests and development), else the embedded
engine under ``<data dir>/edge/<collection>``. Both modules are imported only when chosen
(qdrant-client alone takes over a second to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sidecar.config import Config
    from sidecar.store.base import Store


def open_store(config: Config) -> Store:
    """Build the configured store (not yet opened: call ``await store.open()``)."""
    if config.qdrant_url or config.qdrant_path:
        from sidecar.store.qdrant import QdrantStore

        return QdrantStore(config)
    from sidecar.store.edge import EdgeStore

    return EdgeStore(config.data_path() / "edge" / config.collection,
                     collection=config.collection)
