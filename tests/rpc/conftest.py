"""Handlers called directly against a real store: ``App(config, store)`` and the registry."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.app import App
from sidecar.config import Config
from sidecar.rpc import REGISTRY, Context, load_all
from sidecar.store.base import Store
from sidecar.store.edge import EdgeStore

KINDS = ["edge"]
if importlib.util.find_spec("sidecar.store.qdrant") is not None:
    KINDS.append("qdrant")


def make_store(kind: str, where: Path) -> Store:
    if kind == "edge":
        return EdgeStore(where / "edge" / "agent_memory")
    from sidecar.store.qdrant import QdrantStore

    return QdrantStore(Config(), client_kwargs={"path": str(where / "qdrant-local")})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=KINDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    store = make_store(str(request.param), tmp_path)
    await store.open()
    application = App(Config(data_dir=str(tmp_path / "data")), store)
    yield application
    await store.close()


class Caller:
    """Calls a method as the protocol layer would: params converted by the method's Struct,
    the result turned into plain JSON values."""

    def __init__(self, app: App, uid: int | None = None) -> None:
        self.app = app
        self.uid = os.getuid() if uid is None else uid
        load_all()

    async def __call__(self, method: str, params: dict[str, Any] | None = None) -> Any:
        entry = REGISTRY[method]
        converted = msgspec.convert(params or {}, entry.params)
        result = await entry.handler(Context(self.app, self.uid, os.getpid()), converted)
        return msgspec.to_builtins(result)


@pytest.fixture
def call(app: App) -> Caller:
    return Caller(app)
