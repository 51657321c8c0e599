"""RPC tests talk to real memoryd processes over their socket, on both stores.

``rpc`` is one memoryd per test module and store, shared by the module's tests (each test
keeps to its own namespaces, session ids and vector axes). A module may define ``SEED``, a
list of raw points written with the engine itself before that memoryd starts (records as
legacy code left them), and ``MEMORYD_ARGS``. ``fresh`` starts a memoryd of the test's own,
for the few tests that look at the whole collection.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.rpc import engines
from tests.support import Memoryd


class Rpc:
    """One connection to one memoryd."""

    def __init__(self, server: Memoryd, kind: str, root: Path) -> None:
        self.server = server
        self.kind = kind
        self.root = root
        self.client = server.connect()

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        return self.client.request(method, params)

    def result(self, method: str, params: Any = None) -> Any:
        reply = self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """The error object of a call that must fail."""
        reply = self.call(method, params)
        assert "error" in reply, reply
        return reply["error"]

    def stop(self) -> None:
        """Stop memoryd (the engine's files are then free to open directly)."""
        self.client.close()
        assert self.server.stop() == 0, self.server.stderr_tail()

    def collection(self) -> engines.Collection:
        """The collection as the engine holds it (stops memoryd first)."""
        if self.server.proc.poll() is None:
            self.stop()
        return engines.read(self.kind, self.root)


def start(kind: str, root: Path, *args: str, seed: Sequence[engines.RawPoint] | None = None,
          dimension: int | None = None, env: dict[str, str] | None = None) -> Rpc:
    if seed is not None:
        assert dimension is not None
        engines.seed(kind, root, dimension, seed)
    full_env = {**engines.memoryd_env(kind, root), **(env or {})}
    return Rpc(Memoryd(root, *args, env=full_env), kind, root)


@pytest.fixture(scope="module", params=engines.STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def rpc(request: pytest.FixtureRequest, store_kind: str) -> Iterator[Rpc]:
    root = Path(tempfile.mkdtemp(prefix="md-", dir="/tmp"))
    module = request.module
    points = getattr(module, "SEED", None)
    client = start(store_kind, root, *getattr(module, "MEMORYD_ARGS", ()),
                   seed=points, dimension=getattr(module, "DIM", None) if points else None)
    yield client
    client.client.close()
    client.server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh(store_kind: str, short_tmp: Path) -> Iterator[Callable[..., Rpc]]:
    """``fresh(*args, seed=None, dimension=None, env=None)``: a memoryd of this test's own
    (``seed`` is written with the engine first; ``env`` adds MEMORYD_* settings)."""
    started: list[Rpc] = []

    def make(*args: str, seed: Sequence[engines.RawPoint] | None = None,
             dimension: int | None = None, env: dict[str, str] | None = None) -> Rpc:
        root = short_tmp / f"m{len(started)}"
        root.mkdir()
        client = start(store_kind, root, *args, seed=seed, dimension=dimension, env=env)
        started.append(client)
        return client

    yield make
    for client in started:
        client.client.close()
        client.server.stop()
