"""Fixtures for the outage tests: a Qdrant REST stand-in behind a cuttable TCP proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess


@pytest.fixture
def fake_qdrant(short_tmp: Path) -> Iterator[FakeQdrantProcess]:
    fake = FakeQdrantProcess(short_tmp / "fake-qdrant")
    yield fake
    fake.stop()


@pytest.fixture
def proxy(fake_qdrant: FakeQdrantProcess) -> Iterator[CutProxy]:
    cut = CutProxy(fake_qdrant.port)
    yield cut
    cut.close()
