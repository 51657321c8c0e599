"""An adversarial pass over the issue-12 bounds: hostile clients over real sockets against a
real memoryd, each test a defect that was found (and failed) before its fix."""

from __future__ import annotations

import socket
import time
from typing import Any

import msgspec
import psutil

from tests.server.test_bounds import NO_MODEL, MiB, closed_with_error, outq, wait_for


def _raw(server: Any) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(server.socket))
    return sock


def test_stalled_unfinished_lines_do_not_lock_out_other_clients(memoryd_factory: Any) -> None:
    """4 clients each send ~1 MiB of a line and then nothing, filling a 4 MiB budget. Before:
    every other client was refused `overloaded` forever, even for a 50-byte request. Now a
    whole line is never charged to the budget, and a line left unfinished for line_timeout
    seconds closes its connection (with an error line), which gives its share back."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(MiB),
                                  "MEMORYD_MAX_BUFFERED_BYTES": str(4 * MiB),
                                  "MEMORYD_LINE_TIMEOUT": "1"})
    partial = b'{"jsonrpc":"2.0","id":7,"method":"system.hello","params":{"pad":"'
    partial += b"a" * (MiB - len(partial) - 8)
    stalled = [_raw(server) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(partial)
            wait_for(lambda sock=sock: outq(sock) == 0, "memoryd to read the partial line")
        with server.connect() as small:  # a whole line needs no budget
            assert small.result("system.hello")["protocol"] == 1
        # the stalled lines expire and their connections are closed with a reason
        for sock in stalled:
            holder: list[Any] = [None]

            def closed(sock: socket.socket = sock, holder: list[Any] = holder) -> bool:
                holder[0] = closed_with_error(sock)
                return holder[0] is not None

            wait_for(closed, "the stalled connection to be closed", timeout=30)
            assert holder[0]["error"]["data"]["kind"] == "invalid_request"
            assert "line_timeout" in holder[0]["error"]["message"]
        with server.connect() as big:  # the budget is free again for a large line
            big.send_raw(partial + b'"}}\n')
            assert big.read()["error"]["data"]["kind"] == "validation"
    finally:
        for sock in stalled:
            sock.close()
    assert server.proc.poll() is None


def test_a_client_streaming_lines_is_not_timed_out(memoryd_factory: Any) -> None:
    """The line timeout is about one line making no progress, not about a busy connection:
    a client whose reads always end mid-line for longer than line_timeout is served."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_LINE_TIMEOUT": "1"})
    line = b'{"jsonrpc":"2.0","id":1,"method":"system.hello"}\n'
    with server.connect() as client:
        client.send_raw(line[:20])
        answered = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            client.send_raw(line[20:] + line[:20])  # ends one line, starts the next
            assert client.read()["result"]["protocol"] == 1
            answered += 1
        client.send_raw(line[20:])
        assert client.read()["result"]["protocol"] == 1
    assert answered > 10


def test_kv_get_many_of_one_key_repeated_is_bounded(memoryd_factory: Any) -> None:
    """kv.getMany takes 1,000 keys and repeats a key's value once per mention: 1,000 times
    one 1 MiB value made a ~1 GB reply from a 10 KB request (and a batch of 1,000 of them,
    1 TB). The values a reply carries are now capped; beyond: a validation error."""
    server = memoryd_factory(env=NO_MODEL)
    value = "v" * (MiB - 16)
    with server.connect() as client:
        assert "result" in client.request("kv.set", {"namespace": "big", "key": "k",
                                                     "value": value})
        before = psutil.Process(server.proc.pid).memory_info().rss
        reply = client.request("kv.getMany", {"namespace": "big", "keys": ["k"] * 1000})
        growth = psutil.Process(server.proc.pid).memory_info().rss - before
        err = reply["error"]
        assert err["data"]["kind"] == "validation"
        assert err["data"]["errors"][0]["path"] == "$.keys"
        assert growth < 200 * MiB, f"RSS grew {growth / MiB:.0f} MiB"
        few = client.result("kv.getMany", {"namespace": "big", "keys": ["k", "k", "x"]})
        assert [e and len(e["value"]) for e in few] == [len(value), len(value), None]


def test_a_batch_reply_is_bounded(memoryd_factory: Any) -> None:
    """A batch's replies add up: 200 kv.get of a 1 MiB value were one 200 MiB reply line.
    Once the replies of a batch pass max_line_bytes, its items not yet started are answered
    `overloaded` without running (notifications still run)."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(8 * MiB),
                                  "MEMORYD_MAX_BUFFERED_BYTES": str(8 * MiB)})
    value = "v" * (MiB - 16)
    with server.connect() as client:
        assert "result" in client.request("kv.set", {"namespace": "big", "key": "k",
                                                     "value": value})
        batch = [{"jsonrpc": "2.0", "id": i, "method": "kv.get",
                  "params": {"namespace": "big", "key": "k"}} for i in range(200)]
        # a notification adds nothing to the reply: it runs even past the cap
        batch.append({"jsonrpc": "2.0", "method": "kv.set",
                      "params": {"namespace": "big", "key": "n", "value": 1}})
        client.send(batch)
        line = client.read_line()
        assert line is not None
        replies = msgspec.json.decode(line)
        assert len(replies) == 200 and {r["id"] for r in replies} == set(range(200))
        served = [r for r in replies if "result" in r]
        refused = [r for r in replies if "error" in r]
        assert 8 <= len(served) < 8 + 64 + 1
        assert all(r["error"]["data"] == {"kind": "overloaded", "retryable": True}
                   for r in refused)
        assert len(line) < 8 * MiB + 65 * MiB
        assert client.result("kv.get", {"namespace": "big", "key": "n"})["value"] == 1


def _closed_by_peer(sock: socket.socket) -> bool:
    """Drain what memoryd sent; True once it closed the connection."""
    import select

    while select.select([sock], [], [], 0)[0]:
        try:
            if not sock.recv(1 << 20):
                return True
        except ConnectionResetError:
            return True
    return False


def test_unread_replies_are_capped_in_total(memoryd_factory: Any) -> None:
    """Pausing a client that does not read stops new requests, but the 64 it already sent
    still make their replies: 64 kv.get of a 1 MiB value held 65 MiB per such client (8
    clients: +266 MiB RSS, 512 of them 32 GiB). Replies unread in total are now capped
    (max_unsent_bytes): past it a connection holding over 1 MiB of them is closed, its
    memory freed, while a reading client is served."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_UNSENT_BYTES": str(8 * MiB)})
    value = "v" * (MiB - 16)
    with server.connect() as client:
        assert "result" in client.request("kv.set", {"namespace": "big", "key": "k",
                                                     "value": value})
        before = psutil.Process(server.proc.pid).memory_info().rss
        line = b'{"jsonrpc":"2.0","id":1,"method":"kv.get","params":{"namespace":"big",' \
               b'"key":"k"}}\n'
        flood = []
        try:
            for _ in range(4):
                sock = _raw(server)
                sock.sendall(line * 100)  # 8 KB: fits the socket buffer, never read back
                flood.append(sock)
            for sock in flood:
                wait_for(lambda sock=sock: _closed_by_peer(sock), "memoryd to close a "
                         "connection that does not read its replies", timeout=30)
        finally:
            for sock in flood:
                sock.close()
        assert client.result("kv.get", {"namespace": "big", "key": "k"})["value"] == value
        wait_for(lambda: client.result("system.stats")["connections"] == 1,
                 "the closed connections to go")
        growth = psutil.Process(server.proc.pid).memory_info().rss - before
        assert growth < 64 * MiB, f"RSS grew {growth / MiB:.0f} MiB"
    assert server.stop() == 0
    assert b"max_unsent_bytes" in server.log()


def test_reads_of_invented_kv_namespaces_keep_nothing_open(memoryd_factory: Any,
                                                         short_tmp: Any) -> None:
    """On a Qdrant store (here qdrant-client's local mode) every kv read of a namespace that
    does not exist opened and kept a space for it: a client inventing names grew memoryd
    without end. Now nothing is kept; a namespace that exists is still read."""
    server = memoryd_factory("--dimension", "8", env={
        **NO_MODEL, "MEMORYD_QDRANT_PATH": str(short_tmp / "qdrant")})
    with server.connect() as client:
        assert "result" in client.request("kv.set", {"namespace": "real", "key": "k",
                                                     "value": 1})
        for i in range(50):
            assert client.result("kv.get", {"namespace": f"ghost{i}", "key": "k"}) is None
        assert client.result("kv.getMany", {"namespace": "ghost", "keys": ["k"]}) == [None]
        assert client.result("kv.get", {"namespace": "real", "key": "k"})["value"] == 1
    assert server.stop() == 0
    log = server.log()
    assert b"kv namespace real open" in log
    assert b"kv namespace ghost" not in log


def test_replies_already_read_do_not_count_as_unsent(memoryd_factory: Any) -> None:
    """What a transport holds is measured when a reply is written (and when a transport over
    1 MiB drains), so clients that had read replies just under 1 MiB still counted as holding
    them: another client's big reply then passed the total and was closed although nobody was
    behind. Past the cap it is measured again."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_UNSENT_BYTES": str(8 * MiB)})
    value = "v" * (MiB - 16)
    keys = [f"k{i}" for i in range(3)]
    readers = [server.connect() for _ in range(16)]
    try:
        first = readers[0]
        assert "result" in first.request("kv.setMany", {"namespace": "big", "entries": [
            *({"key": k, "value": value} for k in keys),
            {"key": "small", "value": "s" * (900 * 1024)}]})
        for client in readers:  # each reads a reply just under 1 MiB
            assert len(client.result("kv.get", {"namespace": "big", "key": "small"})["value"]) \
                == 900 * 1024
        got = first.result("kv.getMany", {"namespace": "big", "keys": keys})
        assert [len(e["value"]) for e in got] == [len(value)] * 3
        assert first.result("system.hello")["protocol"] == 1
    finally:
        for client in readers:
            client.close()
    assert server.stop() == 0
    assert b"max_unsent_bytes" not in server.log()
