"""JSON-RPC 2.0 dispatch: one request line in, one response line (or nothing) out.

jsonrpcserver finds the method, binds params and shapes responses; this module adds what it
lacks: params validated by msgspec Structs, the error taxonomy of CONTRACT §2 in every error's
``data``, per-item errors inside batches, a batch-size cap, an in-flight cap, draining, and
the guarantees that no line stops memoryd (every decode failure is an error reply) and that
no exception text reaches a client (jsonrpcserver copies it into ``data`` by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NamedTuple

import anyio
import msgspec
from jsonrpcserver import Error, Success
from jsonrpcserver.async_main import dispatch_to_response
from jsonrpcserver.response import ErrorResponse, SuccessResponse
from loguru import logger
from oslash.either import Left, Right  # jsonrpcserver's result type

from sidecar import contract, errors
from sidecar.resilience import request_timeout
from sidecar.rpc import Context, Method

_CODE_KINDS = {cls.code: cls for cls in errors.ALL_ERRORS}
_GENERIC_INTERNAL = "internal error (see memoryd's log)"


class Parsed(NamedTuple):
    """One line, decoded: its requests (one, or a batch's items), or the error ``reply`` to
    send instead when the line is not JSON-RPC at all."""

    items: list[Any]
    batch: bool = False
    reply: bytes | None = None


class Dispatcher:
    """Turns decoded lines into responses using the method registry."""

    def __init__(self, methods: dict[str, Method], app: Any) -> None:
        self.app = app
        self.max_in_flight = app.config.max_in_flight
        self.draining = False
        # jsonrpcserver calls fn(context, *args, **kwargs); one wrapper per registered method
        self._methods = {name: self._wrap(method) for name, method in methods.items()}

    # -- entry points -------------------------------------------------------------------
    def parse(self, line: bytes) -> Parsed:
        """Decode one line. Never raises: whatever a client sends, a bad line becomes an error
        reply (``parse`` or ``invalid_request``) and the connection goes on."""
        line = line.strip()
        if not line:
            return Parsed([])
        try:
            value = msgspec.json.decode(line)
        # DecodeError and UnicodeDecodeError (invalid UTF-8 inside a string) are ValueErrors;
        # RecursionError is msgspec's answer to nesting deeper than the interpreter's stack.
        except (ValueError, RecursionError) as exc:
            detail = "nested too deeply" if isinstance(exc, RecursionError) else (
                "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc))
            return Parsed([], reply=error_line(errors.ParseError("Parse error", detail=detail)))
        if not isinstance(value, list):
            return Parsed([value])
        if not value:
            return Parsed([], reply=error_line(errors.InvalidRequest("empty batch")))
        limit = self.app.config.max_batch
        if len(value) > limit:
            return Parsed([], reply=error_line(errors.InvalidRequest(
                f"batch of {len(value)} requests exceeds the maximum of {limit} (max_batch)")))
        return Parsed(value, batch=True)

    async def answer(self, parsed: Parsed, peer: tuple[int, int]) -> bytes | None:
        """The reply line for a parsed line; None for notifications (and batches of only
        notifications)."""
        if parsed.reply is not None or not parsed.items:
            return parsed.reply
        if not parsed.batch:
            reply = await self._dispatch(parsed.items[0], peer)
            return None if reply is None else encode(reply)
        replies: list[Any] = [None] * len(parsed.items)
        pending = iter(enumerate(parsed.items))

        # A few workers take the items in turn: a batch runs at most as many requests at once
        # as a connection may have in flight, not one task per item.
        async def worker() -> None:
            for index, item in pending:
                replies[index] = await self._dispatch(item, peer)

        workers = min(len(parsed.items), self.app.config.max_connection_in_flight)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        answered = [r for r in replies if r is not None]
        return encode(answered) if answered else None

    async def handle_line(self, line: bytes, peer: tuple[int, int]) -> bytes | None:
        return await self.answer(self.parse(line), peer)

    async def _dispatch(self, request: Any, peer: tuple[int, int]) -> Any:
        response = await dispatch_to_response(
            request,
            self._methods,
            context=peer,
            deserializer=_note_id,  # decoded already, by parse()
            validator=_validate_envelope,
        )
        return None if response is None else _serializable(response)

    # -- per method ------------------------------------------------------------------
    def _wrap(self, method: Method) -> Callable[..., Any]:
        async def call(peer: tuple[int, int], *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            kind: str | None = None
            try:
                result = await self._call(method, peer, args, kwargs)
                return Success(result)
            except errors.MemorydError as exc:
                kind = exc.kind
                return Error(exc.code, exc.message, exc.data())
            except Exception:
                kind = "internal"
                logger.opt(exception=True).error("unexpected error in {}", method.name)
                err = errors.InternalError(_GENERIC_INTERNAL)
                return Error(err.code, err.message, err.data())
            finally:
                seconds = time.perf_counter() - started
                self.app.stats.record(method.name, seconds, kind)
                # DEBUG only, and never params: they may carry memory content or secrets
                logger.bind(method=method.name, request_id=_request_id.get(),
                            duration_ms=round(seconds * 1000, 3), peer_uid=peer[0],
                            kind=kind).debug("{} {}", method.name, kind or "ok")

        return call

    async def _call(self, method: Method, peer: tuple[int, int],
                    args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.draining and method.name != "system.health":
            raise errors.ShuttingDown("memoryd is shutting down; retry against the next instance")
        if args:
            raise errors.ValidationError.at("$", "params must be an object (by-name), not an array")
        timeout_ms = pop_timeout(kwargs)
        params = convert_params(kwargs, method.params)
        stats = self.app.stats
        # health stays answerable under load: supervisors must tell busy from dead
        if stats.in_flight >= self.max_in_flight and method.name != "system.health":
            raise errors.Overloaded(f"more than {self.max_in_flight} requests in flight; back off")
        stats.in_flight += 1
        try:
            ctx = Context(self.app, peer_uid=peer[0], peer_pid=peer[1],
                          request_id=_request_id.get())
            with request_timeout(timeout_ms):
                return await method.handler(ctx, params)
        finally:
            stats.in_flight -= 1


def pop_timeout(kwargs: dict[str, Any]) -> int | None:
    """Take the optional ``timeoutMs`` (any method): a deadline for this request's store
    calls, tighter than the configured one for its operation class."""
    if "timeoutMs" not in kwargs:
        return None
    try:
        return msgspec.convert(kwargs.pop("timeoutMs"), contract.TimeoutMs)
    except msgspec.ValidationError as exc:
        raise contract.validation_error(exc, root="$.timeoutMs") from None


def convert_params(raw: dict[str, Any], params_type: type[msgspec.Struct]) -> Any:
    """msgspec-validate params; every failure becomes ``validation`` with its path and a
    message for people."""
    try:
        return msgspec.convert(raw, params_type)
    except msgspec.ValidationError as exc:
        raise contract.validation_error(exc, params_type) from None


# The id of the request being dispatched, for logs and handlers: set when jsonrpcserver
# decodes the request, in the task that then runs the method (batch items: one task each).
_request_id: ContextVar[Any] = ContextVar("request_id", default=None)


def _note_id(request: Any) -> Any:
    if isinstance(request, dict):
        _request_id.set(request.get("id"))
    return request


def _validate_envelope(request: Any) -> Any:
    """A JSON-RPC 2.0 request object (batches are split before this is called)."""
    if not isinstance(request, dict):
        raise ValueError("not an object")
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        raise ValueError("missing jsonrpc 2.0 / method")
    if "params" in request and not isinstance(request["params"], dict | list):
        raise ValueError("params must be an object or array")
    if "id" in request and (isinstance(request["id"], bool)
                            or not isinstance(request["id"], str | int | float | None)):
        raise ValueError("bad id")
    if set(request) - {"jsonrpc", "method", "params", "id"}:
        raise ValueError("unknown member")
    return request


def _serializable(response: Any) -> dict[str, Any]:
    if isinstance(response, Right | Left):
        response = response._value if isinstance(response, Right) else response._error
    if isinstance(response, SuccessResponse):
        return {"jsonrpc": "2.0", "result": response.result, "id": response.id}
    assert isinstance(response, ErrorResponse)
    return {
        "jsonrpc": "2.0",
        "error": _error_object(response.code, response.message, response.data),
        "id": response.id,
    }


def _error_object(code: int, message: str, data: Any) -> dict[str, Any]:
    """Every error carries ``data.kind`` and ``data.retryable``. Errors that jsonrpcserver
    produced itself get them from their code; their free-text data is kept only where it is
    ours to show (parse detail, method name), never for internal errors."""
    if isinstance(data, dict) and "kind" in data:
        return {"code": code, "message": message, "data": data}
    cls = _CODE_KINDS.get(code, errors.InternalError)
    out: dict[str, Any] = {"kind": cls.kind, "retryable": cls.retryable}
    if cls is errors.ParseError and isinstance(data, str):
        out["detail"] = data
    elif cls is errors.MethodNotFound and isinstance(data, str):
        out["method"] = data
    elif cls is errors.InternalError:
        message = _GENERIC_INTERNAL
    return {"code": cls.code, "message": message, "data": out}


def _error_response(exc: errors.MemorydError, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": exc.code, "message": exc.message,
                                        "data": exc.data()}, "id": request_id}


def error_line(exc: errors.MemorydError, request_id: Any = None) -> bytes:
    """A whole error response line, for errors raised outside dispatch (e.g. framing)."""
    return encode(_error_response(exc, request_id))


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj) + b"\n"
