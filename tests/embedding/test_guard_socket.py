"""The model identity guard through real memoryd processes: a collection embedded by one
model refuses another, unless --allow-model-change; caller vectors are never refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.embedding.fake_service import FakeService, openai_responder


def env(url: str, model: str) -> dict[str, str]:
    return {"MEMORYD_EMBEDDING__PROVIDER": "vllm", "MEMORYD_EMBEDDING__MODEL": model,
            "MEMORYD_EMBEDDING__DIMENSIONS": "8", "MEMORYD_EMBEDDING__BASE_URL": url + "/v1"}


def test_other_model_is_refused_until_allowed(memoryd_factory: Any, short_tmp: Path) -> None:
    with FakeService(openai_responder(8)) as service:
        first = memoryd_factory(env=env(service.url, "model-a"))
        assert first.call("memory.save", {"category": "fact", "content": "one"})["result"]
        first.stop()

        second = memoryd_factory(env=env(service.url, "model-b"))
        reply = second.call("memory.save", {"category": "fact", "content": "two"})
        error = reply["error"]
        assert error["data"]["kind"] == "conflict"
        assert "model-a" in error["message"] and "--allow-model-change" in error["message"]
        # a caller-supplied vector of the right dimension is not checked against a model
        ok = second.call("memory.save", {"category": "fact", "content": "three",
                                         "vector": [0.1] * 8})
        assert "result" in ok
        stats = second.call("memory.stats")["result"]
        assert stats["total"] == 2  # "two" was not written
        second.stop()

        third = memoryd_factory("--allow-model-change", env=env(service.url, "model-b"))
        assert "result" in third.call("memory.save", {"category": "fact", "content": "four"})
        manifest = (third.data_dir / "embedding-models.json").read_text()
        assert "model-b" in manifest and "model-a" in manifest  # the old one kept as history
