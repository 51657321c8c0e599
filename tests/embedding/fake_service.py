"""A real HTTP server on 127.0.0.1 that stands in for a remote model service.

It records every request exactly as it arrived (method, path with query, headers, body) and
answers from a script: queued replies first, then a responder that answers like the real
service. Tests then assert on both the request and how memoryd handled the answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes as is; anything else is sent as JSON
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer only once this is set

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


Responder = Callable[[Seen], Reply]


class FakeService:
    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder or (lambda seen: Reply(404, {"error": "no responder"}))
        self.script: deque[Reply | Responder] = deque()
        self.requests: list[Seen] = []
        self._holds: list[threading.Event] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen("POST", self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
                service.requests.append(seen)
                step = service.script.popleft() if service.script else service.responder
                reply = step if isinstance(step, Reply) else step(seen)
                if reply.hold is not None:
                    service._holds.append(reply.hold)
                    reply.hold.wait(30)
                body = reply.encoded()
                self.send_response(reply.status)
                headers = {"content-type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (deadline tests)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for hold in self._holds:
            hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def fake_vector(text: str, dimension: int) -> list[float]:
    """A deterministic vector for ``text`` (what the fake service 'embeds')."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] + i) / 512 for i in range(dimension)]


def openai_responder(dimension: int, *, reverse: bool = True) -> Responder:
    """Answers ``/embeddings`` like OpenAI (and Voyage, vLLM): ``data`` items carrying their
    ``index``, here deliberately in reverse order."""

    def respond(seen: Seen) -> Reply:
        body = seen.json()
        dim = body.get("dimensions") or body.get("output_dimension") or dimension
        items = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dim)}
                 for i, t in enumerate(body["input"])]
        if reverse:
            items.reverse()
        return Reply(200, {"object": "list", "data": items, "model": body["model"],
                           "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    return respond


def google_responder(dimension: int) -> Responder:
    def respond(seen: Seen) -> Reply:
        requests = seen.json()["requests"]
        return Reply(200, {"embeddings": [
            {"values": fake_vector(r["content"]["parts"][0]["text"],
                                   r.get("outputDimensionality") or dimension)}
            for r in requests]})

    return respond
