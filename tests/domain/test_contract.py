from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from sidecar import contract as c
from sidecar import errors

UUID = "0f833580-0f83-4f83-80f8-0f8335800000"
CONV = {"sessionId": "s", "leadPersona": "zee", "summary": "", "plan": "", "objectives": [],
        "keyFacts": [], "sessionChain": [], "updatedAt": 1}
STATE = {"version": "1", "workers": [], "tasks": [], "lastSyncAt": 0,
         "stats": {"totalTasksCompleted": 0, "totalDronesSpawned": 0, "totalTokensUsed": 0}}


def path_of(raw: dict[str, Any], t: type) -> str:
    """The failing path msgspec reports (or "$" for a whole-object rule)."""
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(raw, t)
    text = str(info.value)
    return text.partition(" - at `")[2].rstrip("`") or "$"


@pytest.mark.parametrize(("t", "raw", "path"), [
    (c.MemoryInput, {"category": "fact", "content": ""}, "$.content"),
    (c.MemoryInput, {"category": "facts", "content": "x"}, "$.category"),
    (c.MemoryInput, {"category": "fact", "content": "x", "bogus": 1}, "$"),
    (c.MemoryInput, {"category": "fact", "content": "x", "ttl": -1}, "$.ttl"),
    (c.MemoryInput, {"category": "fact", "content": "x", "metadata": {"importance": 1.5}},
     "$.metadata.importance"),
    (c.MemoryInput, {"category": "fact", "content": "x", "metadata": {"other": 1}}, "$.metadata"),
    (c.MemoryInput, {"category": "fact", "content": "x", "vector": [1, float("inf")]},
     "$.vector[1]"),
    (c.MemoryInput, {"category": "fact", "content": "x", "vector": [float("nan")]},
     "$.vector[0]"),
    (c.MemoryInput, {"category": "fact", "content": "x", "vector": []}, "$.vector"),
    (c.MemoryInput, {"category": "fact", "content": "x", "media": {"mediaType": "audio"}},
     "$.media.mediaType"),
    (c.MemoryInput, {"category": "fact", "content": "x",
                     "multimodal": {"contents": [{"type": "pdf"}]}},
     "$.multimodal.contents[0].type"),
    (c.MemorySaveBatchParams, {"inputs": [{"category": "fact", "content": "x"},
                                          {"category": "fact", "content": ""}]},
     "$.inputs[1].content"),
    (c.MemorySearchParams, {"query": "q", "limit": 0}, "$.limit"),
    (c.MemorySearchParams, {"query": "q", "limit": 101}, "$.limit"),
    (c.MemorySearchParams, {"query": "q", "threshold": 1.1}, "$.threshold"),
    (c.MemorySearchParams, {"query": "q", "category": ["fact", "x"]}, "$.category[1]"),
    (c.MemorySearchParams, {"query": "q", "namespace": 3}, "$.namespace"),
    (c.MemorySearchParams, {"query": "q", "mediaType": "pdf"}, "$.mediaType"),
    (c.MemorySearchParams, {}, "$"),
    (c.MemorySearchWithRerankParams, {"query": "q", "recallMultiplier": 0}, "$.recallMultiplier"),
    (c.MemoryGetParams, {"id": "not-a-uuid"}, "$.id"),
    (c.MemoryGetManyParams, {"ids": [UUID, "x"]}, "$.ids[1]"),
    (c.MemoryListParams, {"limit": 1001}, "$.limit"),
    (c.MemoryListParams, {"offset": -1}, "$.offset"),
    (c.MemoryListParams, {"before": {"createdAt": 1, "id": "x"}}, "$.before.id"),
    (c.DeleteWhereParams, {"namespace": None}, "$.namespace"),
    (c.PersonaSearchParams, {"query": "q", "persona": "bob"}, "$.persona"),
    (c.PersonaSearchParams, {"query": "q", "persona": "zee", "categories": "fact"},
     "$.categories"),
    (c.TaskContextParams, {"description": "d"}, "$"),
    (c.ConversationSaveParams, {"state": {**CONV, "leadPersona": "x"}}, "$.state.leadPersona"),
    (c.ConversationSaveParams, {"state": {**CONV, "extra": 1}}, "$.state"),
    (c.ConversationSaveParams, {"state": {**CONV, "sessionId": ""}}, "$.state.sessionId"),
    (c.ConversationStartParams, {"sessionId": "s"}, "$"),
    (c.FormatContextParams, {}, "$"),
    (c.FormatContextParams, {"sessionId": "s", "state": CONV}, "$"),
    (c.StoreFactsParams, {"facts": ["a", ""], "sessionId": "s", "persona": "zee"}, "$.facts[1]"),
    (c.StoreFactsParams, {"facts": ["a"], "sessionId": "s", "persona": "zee", "vectors": []},
     "$"),
    (c.RemoveObjectiveParams, {"sessionId": "s", "index": "1"}, "$.index"),
])
def test_invalid_params(t: type, raw: dict[str, Any], path: str) -> None:
    assert path_of(raw, t) == path


def test_search_defaults_and_namespace_tristate() -> None:
    absent = msgspec.convert({"query": "q"}, c.MemorySearchParams)
    assert (absent.limit, absent.threshold, absent.namespace) == (10, 0.5, UNSET)
    assert msgspec.convert({"query": "q", "namespace": None}, c.MemorySearchParams).namespace \
        is None
    one = msgspec.convert({"query": "q", "category": "fact"}, c.MemorySearchParams)
    many = msgspec.convert({"query": "q", "category": ["fact", "note"]}, c.MemorySearchParams)
    assert (one.category, many.category) == ("fact", ["fact", "note"])
    mm = msgspec.convert({"query": {"contents": [
        {"type": "text", "content": "a"}, {"type": "image", "url": "u"},
        {"type": "text", "content": "b"}, {"type": "video", "url": "v", "startTime": 1}]}},
        c.MemorySearchParams)
    assert isinstance(mm.query, c.MultimodalContent) and mm.query.text() == "a b"


def test_list_defaults() -> None:
    p = msgspec.convert({}, c.MemoryListParams)
    assert (p.limit, p.offset, p.before, p.namespace) == (100, 0, UNSET, UNSET)
    assert msgspec.convert({"limit": 1000}, c.MemoryListParams).limit == 1000


def test_defaults_of_persona_methods() -> None:
    assert msgspec.convert({"query": "q", "persona": "zee"}, c.PersonaSearchParams).limit == 5
    assert msgspec.convert({"query": "q"}, c.PersonaSearchAllParams).limit == 10
    assert msgspec.convert({"query": "q"}, c.RelatedContextParams).limit == 5
    assert msgspec.convert({"taskDescription": "d"}, c.TaskContextParams).limit == 5


def test_ints_are_accepted_as_floats() -> None:
    p = msgspec.convert({"category": "fact", "content": "x", "vector": [1, 0, -2]}, c.MemoryInput)
    assert p.vector == [1.0, 0.0, -2.0]


@pytest.mark.parametrize(("state", "path"), [
    ({**STATE, "version": 1}, "$.state.version"),
    ({k: v for k, v in STATE.items() if k != "workers"}, "$.state"),
    ({**STATE, "tasks": [1]}, "$.state.tasks[0]"),
    ({**STATE, "stats": {"totalTasksCompleted": 0}}, "$.state.stats"),
    ({**STATE, "conversation": {**CONV, "leadPersona": "x"}}, "$.state.conversation.leadPersona"),
])
def test_personas_state_validation(state: dict[str, Any], path: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        c.validate_personas_state(state)
    assert info.value.data()["errors"][0]["path"] == path


def test_personas_state_keeps_unknown_fields() -> None:
    state = {**STATE, "tiaraSwarmId": "t", "conversation": CONV, "future": [1]}
    params = msgspec.convert({"state": state}, c.StateSaveParams)
    core = c.validate_personas_state(params.state)
    assert params.state == state  # kept whole
    assert isinstance(core.conversation, c.ConversationState)


def test_results_omit_unset_fields() -> None:
    entry = c.SavedEntry(id="i", category="fact", content="x", metadata={}, createdAt=1,
                         accessedAt=1)
    assert msgspec.json.decode(msgspec.json.encode(entry)) == {
        "id": "i", "category": "fact", "content": "x", "metadata": {}, "createdAt": 1,
        "accessedAt": 1}
    entry.queued = True
    assert msgspec.json.decode(msgspec.json.encode(entry))["queued"] is True


# -- limits and messages -------------------------------------------------------------------------

def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(("value", "path", "predicate"), [
    (nested(c.MAX_JSON_DEPTH + 1), "$.v", f"nests more than {c.MAX_JSON_DEPTH} levels"),
    (nested(5000), "$.v", "nests more than"),  # iterative: no RecursionError
    ({"a": [1, {"b": 2**63}]}, "$.v.a[1].b", "within 64 bits"),
    ({"a": -(2**63) - 1}, "$.v.a", "within 64 bits"),
    ([float("inf")], "$.v[0]", "finite"),
    ({"x": float("nan")}, "$.v.x", "finite"),
])
def test_check_json_refuses(value: Any, path: str, predicate: str) -> None:
    with pytest.raises(c.FieldError) as info:
        c.check_json(value, "$.v")
    assert info.value.subpath == path and predicate in info.value.predicate


def test_check_json_accepts_the_limits() -> None:
    c.check_json(nested(c.MAX_JSON_DEPTH), "$.v")
    c.check_json({"max": 2**63 - 1, "min": -(2**63), "f": 1.7976931348623157e308,
                  "s": "😀", "b": True, "n": None}, "$.v")


def test_a_structs_own_rule_keeps_the_full_path() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"inputs": [{"category": "fact", "content": "x"},
                                    {"category": "fact", "content": "x",
                                     "metadata": {"extra": {"n": [2**64]}}}]},
                        c.MemorySaveBatchParams)
    error = c.validation_error(info.value, c.MemorySaveBatchParams)
    assert error.data()["errors"][0]["path"] == "$.inputs[1].metadata.extra.n[0]"
    assert error.message.startswith("inputs[1].metadata.extra.n[0] must be an integer")


@pytest.mark.parametrize(("text", "path", "message"), [
    ("Expected `str` matching regex '^x$'", "$.id", "id has the wrong format"),
    ("Expected `int` > 0", "$.n", "n must be greater than 0"),
    ("Expected `array` of length >= 2", "$.xs", "xs must have at least 2 items"),
    ("Expected `str` of length <= 5", "$.s", "s must be at most 5 characters long"),
    ("Expected `float` <= 1000000000000000.0", "$.v[0]", "v[0] must be at most 1e+15"),
    ("Expected `object | null`, got `array`", "$", "params must be an object or null, "
                                                   "not an array"),
    ("Invalid enum value 'x'", "$.q", "q is not one of the allowed values"),
    ("some rule of a Struct's own", "$", "some rule of a Struct's own"),
])
def test_humanize(text: str, path: str, message: str) -> None:
    assert c.humanize(text, path) == message
