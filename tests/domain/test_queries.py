import msgspec
import pytest
from msgspec import UNSET

from sidecar.contract import TimeRange
from sidecar.domain import queries as q
from sidecar.domain.filters import Filter, Match, MatchAny, Range

MEM = Match("type", "memory")
NOW = 99
LIVE = (Range("expiresAt", gt=0, lt=NOW),)  # must_not: expired memories are never read


@pytest.mark.parametrize(("kw", "must"), [
    ({}, (MEM, Match("namespace", "dflt"))),
    ({"namespace": None}, (MEM,)),
    ({"namespace": "personas:zee"}, (MEM, Match("namespace", "personas:zee"))),
    ({"namespace": ""}, (MEM, Match("namespace", ""))),
    ({"namespace": None, "category": "fact"}, (MEM, Match("category", "fact"))),
    ({"namespace": None, "category": ["fact", "note", "fact"]},
     (MEM, MatchAny("category", ("fact", "note")))),
    ({"namespace": None, "category": ["fact"]}, (MEM, Match("category", "fact"))),
    ({"namespace": None, "category": []}, (MEM,)),
    ({"namespace": None, "tags": ["a", "b"]}, (MEM, MatchAny("metadata.tags", ("a", "b")))),
    ({"namespace": None, "tags": []}, (MEM,)),
    ({"namespace": None, "time_range": TimeRange(start=10, end=20)},
     (MEM, Range("createdAt", gte=10, lte=20))),
    ({"namespace": None, "time_range": TimeRange(end=20)}, (MEM, Range("createdAt", lte=20))),
    ({"namespace": None, "time_range": TimeRange()}, (MEM,)),
    ({"namespace": None, "media_type": "image"}, (MEM, Match("media.mediaType", "image"))),
    ({"category": ["fact", "task"], "tags": ["t"], "media_type": "video",
      "time_range": TimeRange(start=1)},
     (MEM, Match("namespace", "dflt"), MatchAny("category", ("fact", "task")),
      MatchAny("metadata.tags", ("t",)), Range("createdAt", gte=1),
      Match("media.mediaType", "video"))),
])
def test_search_filter(kw: dict[str, object], must: tuple[object, ...]) -> None:
    assert q.search_filter("dflt", now=NOW, **kw) == Filter(  # type: ignore[arg-type]
        must=must, must_not=LIVE)


@pytest.mark.parametrize(("kw", "must"), [
    ({}, (MEM, Match("namespace", "dflt"))),
    ({"namespace": None}, (MEM,)),
    ({"namespace": "x", "category": "note"}, (MEM, Match("namespace", "x"),
                                              Match("category", "note"))),
])
def test_list_filter(kw: dict[str, object], must: tuple[object, ...]) -> None:
    assert q.list_filter("dflt", now=NOW, **kw) == Filter(  # type: ignore[arg-type]
        must=must, must_not=LIVE)


@pytest.mark.parametrize(("kw", "must"), [
    ({}, (MEM,)),  # every namespace
    ({"namespace": "n"}, (MEM, Match("namespace", "n"))),
    ({"olderThan": 0}, (MEM, Range("createdAt", lt=0))),  # 0 is a bound, not "no bound"
    ({"category": "fact", "namespace": "n", "olderThan": 1234},
     (MEM, Match("category", "fact"), Match("namespace", "n"), Range("createdAt", lt=1234))),
])
def test_delete_where_filter(kw: dict[str, object], must: tuple[object, ...]) -> None:
    if "olderThan" in kw:
        kw["older_than"] = kw.pop("olderThan")
    assert q.delete_where_filter(**kw) == Filter(must=must)  # type: ignore[arg-type]


def test_expired_filter() -> None:
    assert q.expired_filter(NOW) == Filter(must=(MEM, Range("expiresAt", gt=0, lt=NOW)))
    assert q.live_memories_filter(NOW) == Filter(must=(MEM,), must_not=LIVE)


@pytest.mark.parametrize(("persona", "must"), [
    (UNSET, (Match("type", "conversation"),)),
    ("zee", (Match("type", "conversation"), Match("leadPersona", "zee"))),
])
def test_conversation_filter(persona: object, must: tuple[object, ...]) -> None:
    assert q.conversation_filter(persona) == Filter(must=must)  # type: ignore[arg-type]


def test_created_at_window() -> None:
    base = q.list_filter("d", now=NOW)
    assert q.created_at_window(base) == base
    assert q.created_at_window(base, below=5).must[-1] == Range("createdAt", lt=5)
    assert q.created_at_window(base, below=5).must_not == LIVE
    assert q.created_at_window(base, exactly=5).must[-1] == Range("createdAt", gte=5, lte=5)


def test_filters_serialize() -> None:
    # filters are data: they encode (for logs and the edge worker process) without loss
    f = q.search_filter("d", now=NOW, category=["fact", "note"], tags=["x"])
    assert msgspec.json.decode(msgspec.json.encode(f), type=Filter) == f
