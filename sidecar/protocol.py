"""JSON-RPC 2.0 dispatch: one request line in, one response line (or nothing) out.

jsonrpcserver finds the method, binds params and shapes responses; this module adds what it
lacks: params validated by msgspec Structs, the error taxonomy of CONTRACT §2 in every error's
``data``, per-item errors inside batches, an in-flight cap, draining, and the guarantee that
no exception text reaches a client (jsonrpcserver copies it into ``data`` by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import anyio
import msgspec
from jsonrpcserver import Error, Success
from jsonrpcserver.async_main import dispatch_to_response
from jsonrpcserver.response import ErrorResponse, SuccessResponse
from loguru import logger
from oslash.either import Left, Right  # jsonrpcserver's result type

from sidecar import errors
from sidecar.resilience import request_timeout
from sidecar.rpc import Context, Method

_CODE_KINDS = {cls.code: cls for cls in errors.ALL_ERRORS}
_GENERIC_INTERNAL = "internal error (see memoryd's log)"


class Dispatcher:
    """Turns decoded lines into responses using the method registry."""

    def __init__(self, methods: dict[str, Method], app: Any) -> None:
        self.app = app
        self.max_in_flight = app.config.max_in_flight
        self.draining = False
        # jsonrpcserver calls fn(context, *args, **kwargs); one wrapper per registered method
        self._methods = {name: self._wrap(method) for name, method in methods.items()}

    # -- entry point --------------------------------------------------------------------
    async def handle_line(self, line: bytes, peer: tuple[int, int]) -> bytes | None:
        """Answer one line; None for notifications (and batches of only notifications)."""
        line = line.strip()
        if not line:
            return None
        if line[:1] == b"[":
            try:
                items = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                return encode(_error_response(errors.ParseError("Parse error", detail=str(exc))))
            if not isinstance(items, list) or not items:
                return encode(_error_response(errors.InvalidRequest("empty batch")))
            replies: list[Any] = [None] * len(items)

            async def one(index: int, item: Any) -> None:
                replies[index] = await self._dispatch(item, peer, decoded=True)

            async with anyio.create_task_group() as tg:
                for index, item in enumerate(items):
                    tg.start_soon(one, index, item)
            answered = [r for r in replies if r is not None]
            return encode(answered) if answered else None
        reply = await self._dispatch(line, peer, decoded=False)
        return None if reply is None else encode(reply)

    async def _dispatch(self, request: Any, peer: tuple[int, int], decoded: bool) -> Any:
        response = await dispatch_to_response(
            request,
            self._methods,
            context=peer,
            deserializer=_note_id if decoded else _decode,
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
    value = kwargs.pop("timeoutMs")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.ValidationError.at("$.timeoutMs", "must be a positive integer (ms)")
    return value


def convert_params(raw: dict[str, Any], params_type: type[msgspec.Struct]) -> Any:
    """msgspec-validate params; every failure becomes ``validation`` with its path."""
    try:
        return msgspec.convert(raw, params_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = "$"
        if " - at `" in message:
            message, _, rest = message.partition(" - at `")
            path = rest.rstrip("`")
        raise errors.ValidationError(
            f"invalid params: {exc!s}", [{"path": path, "message": message}]) from None


# The id of the request being dispatched, for logs and handlers: set when jsonrpcserver
# decodes the request, in the task that then runs the method (batch items: one task each).
_request_id: ContextVar[Any] = ContextVar("request_id", default=None)


def _note_id(request: Any) -> Any:
    if isinstance(request, dict):
        _request_id.set(request.get("id"))
    return request


def _decode(line: bytes) -> Any:
    return _note_id(msgspec.json.decode(line))


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
