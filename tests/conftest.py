"""Shared fixtures: real memoryd processes on temporary sockets."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support import Memoryd

# CI runs the property tests on fixed seeds (reproducible, no example database).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (pytest's tmp_path can exceed the 107-byte socket limit)."""
    path = Path(tempfile.mkdtemp(prefix="md-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def memoryd_factory(short_tmp: Path) -> Iterator[Any]:
    started: list[Memoryd] = []

    def start(*args: str, root: Path | None = None, **kwargs: Any) -> Memoryd:
        server = Memoryd(root or short_tmp, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def memoryd(memoryd_factory: Any) -> Memoryd:
    return memoryd_factory()
