"""legacy-mock reproduces legacy agent-core's character-code vectors exactly."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import anyio
import pytest

from sidecar.config import EmbeddingConfig
from sidecar.embedding import build_embedder, legacy_mock_vector


def test_single_character_is_a_unit_vector() -> None:
    vector = legacy_mock_vector("A")  # 65 % 100 / 100 = 0.65, alone: normalised to 1
    assert len(vector) == 384
    assert vector[0] == 1.0 and not any(vector[1:])


def test_two_characters() -> None:
    # "ab": 97 -> 0.97, 98 -> 0.98, norm sqrt(0.97^2 + 0.98^2) = 1.3788764
    vector = legacy_mock_vector("ab")
    norm = math.sqrt(0.97 * 0.97 + 0.98 * 0.98)
    assert vector[:2] == [0.97 / norm, 0.98 / norm]
    assert abs(vector[0] - 0.7034713) < 1e-7 and abs(vector[1] - 0.7107236) < 1e-7
    assert not any(vector[2:])


def test_all_zero_components_divide_by_one() -> None:
    # "d" is 100 and "\u00c8" is 200: both are 0 mod 100, so the norm is 0.
    assert legacy_mock_vector("d\u00c8d") == [0.0] * 384
    assert legacy_mock_vector("") == [0.0] * 384


def test_utf16_code_units_not_code_points() -> None:
    # U+1F600 is the surrogate pair D83D DE00 = 55357, 56832 -> 0.57, 0.32.
    vector = legacy_mock_vector("\U0001F600")
    norm = math.sqrt(0.57 * 0.57 + 0.32 * 0.32)
    assert vector[:3] == [0.57 / norm, 0.32 / norm, 0.0]


def test_only_the_first_384_units_count() -> None:
    text = "A" * 384
    longer = legacy_mock_vector(text + "zzzz")
    assert longer == legacy_mock_vector(text)
    assert all(abs(v - 1 / math.sqrt(384)) < 1e-12 for v in longer)


@pytest.mark.anyio
async def test_built_from_config() -> None:
    emb = build_embedder(EmbeddingConfig(provider="legacy-mock"), None, environ={})
    assert emb is not None
    assert (emb.provider, emb.model, emb.dimension, emb.state) == (
        "legacy-mock", "mock-embedding", 384, "ready")
    vectors = await emb.embed(["A", "ab"], deadline=anyio.current_time() + 5)
    assert vectors == [legacy_mock_vector("A"), legacy_mock_vector("ab")]


# The rule as JavaScript evaluates it (written from the description above), to compare
# floating-point results bit for bit when node is available.
_JS = """
const texts = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = texts.map((t) => {
  const v = new Array(384).fill(0);
  for (let i = 0; i < Math.min(t.length, 384); i++) v[i] = (t.charCodeAt(i) % 100) / 100;
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  return v.map((x) => x / n);
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_matches_javascript_bit_for_bit() -> None:
    texts = ["The user prefers dark mode", "caf\u00e9 \U0001F600 \u4e2d\u6587", "x" * 500,
             "Personas state v1\nWorkers: {\"zee\":1}", ""]
    run = subprocess.run(["node", "-e", _JS], input=json.dumps(texts), capture_output=True,
                         text=True, check=True, timeout=30)
    assert [legacy_mock_vector(t) for t in texts] == json.loads(run.stdout)
