"""JSON-RPC framing and dispatch over a real socket to a real memoryd process."""

from __future__ import annotations

import socket
from typing import Any

import msgspec
import pytest

from tests.support import RawClient


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    err = reply["error"]
    assert {"code", "message", "data"} <= set(err)
    assert isinstance(err["data"]["retryable"], bool)
    return err


def test_hello(memoryd: Any) -> None:
    with memoryd.connect() as c:
        hello = c.result("system.hello")
    assert hello["protocol"] == 1
    assert hello["pid"] == memoryd.proc.pid
    assert hello["collection"] == "agent_memory"
    assert set(hello["capabilities"]) >= {"embedding", "rerank", "multimodal"}


def test_parse_error(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send_raw(b'{"jsonrpc": "2.0", "method": \n')
        err = error_of(c.read())
        assert err["code"] == -32700 and err["data"]["kind"] == "parse"
        # the connection stays usable after a parse error
        assert c.result("system.hello")["protocol"] == 1


@pytest.mark.parametrize("request_obj", [
    {"jsonrpc": "1.0", "method": "system.hello", "id": 1},
    {"method": "system.hello", "id": 1},
    {"jsonrpc": "2.0", "method": 5, "id": 1},
    {"jsonrpc": "2.0", "method": "system.hello", "params": "x", "id": 1},
    {"jsonrpc": "2.0", "method": "system.hello", "id": {"a": 1}},
    "just a string",
])
def test_invalid_request(memoryd: Any, request_obj: Any) -> None:
    with memoryd.connect() as c:
        c.send(request_obj)
        err = error_of(c.read())
    assert err["code"] == -32600 and err["data"]["kind"] == "invalid_request"


def test_unknown_method(memoryd: Any) -> None:
    with memoryd.connect() as c:
        err = error_of(c.request("memory.frobnicate", {}))
    assert err["code"] == -32601
    assert err["data"] == {"kind": "method_not_found", "retryable": False,
                           "method": "memory.frobnicate"}


def test_validation_unknown_field(memoryd: Any) -> None:
    with memoryd.connect() as c:
        err = error_of(c.request("system.hello", {"bogus": 1}))
    assert err["code"] == -32602 and err["data"]["kind"] == "validation"
    assert err["data"]["errors"] == [
        {"path": "$", "message": "params has an unknown field `bogus`"}]


def test_validation_positional_params(memoryd: Any) -> None:
    with memoryd.connect() as c:
        err = error_of(c.request("system.hello", [1, 2]))
    assert err["data"]["kind"] == "validation"
    assert err["data"]["errors"][0]["path"] == "$"


def test_empty_params_forms_are_accepted(memoryd: Any) -> None:
    with memoryd.connect() as c:
        assert c.result("system.hello", {})["protocol"] == 1
        assert c.result("system.hello", [])["protocol"] == 1


def test_batch_with_notification_and_invalid_item(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send([
            {"jsonrpc": "2.0", "id": "a", "method": "system.hello"},
            {"jsonrpc": "2.0", "method": "system.health"},  # notification: no reply
            1,
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        ])
        replies = c.read()
    assert isinstance(replies, list) and len(replies) == 3
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert by_id["a"]["result"]["protocol"] == 1
    assert by_id["b"]["error"]["code"] == -32601
    invalid = [r for r in replies if r["id"] is None]
    assert invalid[0]["error"]["data"]["kind"] == "invalid_request"


def test_empty_batch_is_invalid(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send_raw(b"[]\n")
        assert error_of(c.read())["data"]["kind"] == "invalid_request"


def test_notifications_get_no_reply(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send({"jsonrpc": "2.0", "method": "system.hello"})
        c.send([{"jsonrpc": "2.0", "method": "system.hello"}])
        c.send({"jsonrpc": "2.0", "method": "no.such.method"})
        reply = c.request("system.health")
        # the first line back answers the only request that had an id
        assert reply["id"] == 1 and reply["result"]["live"] is True


def test_u2028_inside_strings_does_not_split_lines(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send_raw(b'{"jsonrpc":"2.0","id":"x\xe2\x80\xa8y","method":"system.hello"}\n')
        reply = c.read()
    assert reply["id"] == "x\u2028y" and "result" in reply


def test_pipelined_requests_all_answered(memoryd: Any) -> None:
    with memoryd.connect() as c:
        payload = b"".join(
            msgspec.json.encode({"jsonrpc": "2.0", "id": i, "method": "system.hello"}) + b"\n"
            for i in range(200))
        c.send_raw(payload)
        ids = {c.read()["id"] for _ in range(200)}
    assert ids == set(range(200))


def test_half_close_still_gets_replies(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"system.hello"}\n'
                   b'{"jsonrpc":"2.0","id":2,"method":"system.stats"}')  # no final newline
        c.sock.shutdown(socket.SHUT_WR)
        replies = [c.read(), c.read()]
        assert c.read_line() is None
    assert sorted(r["id"] for r in replies) == [1, 2]


def test_oversize_line_closes_only_that_connection(memoryd_factory: Any) -> None:
    server = memoryd_factory("--max-line-bytes", "4096")
    other = server.connect()
    with server.connect() as c:
        c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"system.hello","params":{"x":"'
                   + b"a" * 10_000 + b'"}}\n')
        err = error_of(c.read())
        assert err["data"]["kind"] == "invalid_request"
        assert "4096" in err["message"]
        assert c.read_line() is None  # closed by the server
    assert other.result("system.hello")["protocol"] == 1
    with server.connect() as fresh:
        assert fresh.result("system.health")["live"] is True
    other.close()


def test_stats_count_calls_and_errors(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.result("system.hello")
        c.request("system.hello", {"bad": 1})
        stats = c.result("system.stats")
    assert stats["methods"]["system.hello"]["calls"] == 2
    assert stats["methods"]["system.hello"]["errors"] == 1
    assert stats["errorsByKind"]["validation"] == 1
    assert stats["connections"] == 1
    assert stats["process"]["rssBytes"] > 0
    assert stats["methods"]["system.hello"]["p99Ms"] >= stats["methods"]["system.hello"]["p50Ms"]


def test_health_ready(memoryd: Any) -> None:
    health = memoryd.call("system.health")["result"]
    assert health["live"] is True and health["ready"] is True
    assert health["status"] == "ok"
    assert health["checks"]["store"]["ok"] is True


def test_raw_client_is_not_confused_by_many_connections(memoryd: Any) -> None:
    clients = [RawClient(memoryd.socket) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            c.send(c.request_obj("system.hello", id=i))
        assert [c.read()["id"] for c in clients] == list(range(20))
    finally:
        for c in clients:
            c.close()


# Lines that once stopped memoryd (issue 12): each gets an error line, the next request on
# the same connection is served, and memoryd still answers on a new connection.
HOSTILE_LINES = {
    "batch nested deep": b"[" * 5000,
    "batch invalid utf-8": b'["\xff"]',
    "batch lone surrogate bytes": b'["\xed\xa0\x80"]',
    "batch item nested deep": b'[{"jsonrpc":"2.0","id":1,"method":"system.hello","params":'
                              + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}]",
    "single nested deep": b'{"a":' * 5000,
    "single invalid utf-8": b'{"jsonrpc":"2.0","id":"\xff","method":"system.hello"}',
    "single nested deep then closed": b"{" + b'"a":[' * 3000 + b"]" * 3000 + b"}",
}


@pytest.mark.parametrize("line", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_hostile_line_gets_an_error_and_the_connection_goes_on(memoryd: Any,
                                                               line: bytes) -> None:
    with memoryd.connect() as c:
        c.send_raw(line + b"\n")
        err = error_of(c.read())
        assert err["data"]["kind"] in ("parse", "invalid_request")
        assert c.result("system.hello")["protocol"] == 1
    assert memoryd.call("system.health")["result"]["live"] is True
    assert memoryd.proc.poll() is None


def test_batch_over_max_batch_is_one_error(memoryd_factory: Any) -> None:
    server = memoryd_factory(env={"MEMORYD_MAX_BATCH": "10"})
    hello = {"jsonrpc": "2.0", "id": 1, "method": "system.hello"}
    with server.connect() as c:
        c.send([hello] * 11)
        err = error_of(c.read())
        assert err["data"]["kind"] == "invalid_request"
        assert "11" in err["message"] and "10" in err["message"]
        c.send([hello] * 10)
        assert len(c.read()) == 10  # at the cap: served
        assert c.result("system.hello")["protocol"] == 1


def test_batch_items_run_a_few_at_a_time(memoryd_factory: Any) -> None:
    """A batch larger than the per-connection in-flight cap is answered whole, never
    `overloaded` by its own items (they run at most that many at once)."""
    server = memoryd_factory(env={"MEMORYD_MAX_IN_FLIGHT": "4",
                                  "MEMORYD_MAX_CONNECTION_IN_FLIGHT": "4"})
    with server.connect() as c:  # memory.list waits on the store: the items overlap
        c.send([{"jsonrpc": "2.0", "id": i, "method": "memory.list", "params": {"limit": 1}}
                for i in range(200)])
        replies = c.read()
    assert sorted(r["id"] for r in replies) == list(range(200))
    assert all("result" in r for r in replies), [r for r in replies if "error" in r][:3]


def test_ten_thousand_item_batch_is_refused_by_default(memoryd: Any) -> None:
    with memoryd.connect() as c:
        c.send([{"jsonrpc": "2.0", "id": i, "method": "memory.list"} for i in range(10_000)])
        err = error_of(c.read())
        assert err["data"]["kind"] == "invalid_request" and "1000" in err["message"]
        assert c.result("system.hello")["protocol"] == 1
