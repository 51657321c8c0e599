"""JSON-RPC 2.0 dispatch: one request line in, one response line (or nothing) out.

memoryd decodes each line once (msgspec) and hands every request object to jsonrpcserver's
own pipeline, which finds the method, binds the params, calls it and shapes the response.
The methods are wrappers that add what the library lacks: params validated by msgspec
Structs, the error taxonomy of CONTRACT §2 in every error's ``data``, an in-flight cap and
draining. This module also adds per-item errors inside batches, a batch-size cap, and the
guarantees that no line stops memoryd (every decode failure is an error reply) and that no
exception text reaches a client (jsonrpcserver copies it into ``data`` by default).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import anyio
import msgspec
from jsonrpcserver import Error, Success
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable
from jsonrpcserver.sentinels import NOID
from loguru import logger

from sidecar import contract, deadline, errors
from sidecar.rpc import Context, Method

_CODE_KINDS = {cls.code: cls for cls in errors.ALL_ERRORS}
_GENERIC_INTERNAL = "internal error (see memoryd's log)"
_DEBUG_LEVELS = frozenset({"TRACE", "DEBUG"})
_ENVELOPE_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_PARAMS_TYPES = (dict, list)
_ID_TYPES = (str, int, float, type(None))
# what jsonrpcserver binds each call to: the handler's Context, then the params
_CALL_SIGNATURE = inspect.Signature([
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_ONLY),
    inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
])


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
        config = app.config
        self._op_timeouts = {"read": config.read_timeout_ms, "write": config.write_timeout_ms,
                             "admin": config.admin_timeout_ms}
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
        replies: list[bytes | None] = [None] * len(parsed.items)
        pending = iter(enumerate(parsed.items))
        size = 0
        limit = self.app.config.max_line_bytes

        # A few workers take the items in turn: a batch runs at most as many requests at once
        # as a connection may have in flight, not one task per item. Its replies are one line:
        # once they pass max_line_bytes, the items not started yet are refused without running
        # (200 kv.get of a 1 MiB value were a 200 MiB line, 1,000 kv.getMany far more).
        async def worker() -> None:
            nonlocal size
            for index, item in pending:
                # notifications add nothing to the reply: they always run
                if size > limit and not (isinstance(item, dict) and "id" not in item):
                    reply = _batch_full(item, limit)
                else:
                    reply = await self._dispatch(item, peer)
                if reply is not None:
                    replies[index] = out = msgspec.json.encode(reply)
                    size += len(out)

        workers = min(len(parsed.items), self.app.config.max_connection_in_flight)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        answered = [r for r in replies if r is not None]
        return b"[" + b",".join(answered) + b"]\n" if answered else None

    async def handle_line(self, line: bytes, peer: tuple[int, int]) -> bytes | None:
        return await self.answer(self.parse(line), peer)

    async def _dispatch(self, request: Any, peer: tuple[int, int]) -> Any:
        """One request object through jsonrpcserver's own pipeline (find the method, bind,
        call, shape the response), awaited in this task: its ``dispatch_to_response`` would
        add an ``asyncio.gather`` task per request."""
        if not _valid_envelope(request):
            return _INVALID_ENVELOPE
        request = create_request(request)
        ctx = Context(self.app, peer_uid=peer[0], peer_pid=peer[1],
                      request_id=None if request.id is NOID else request.id)
        _, result = await dispatch_request(self._methods, ctx, request)
        if request.id is NOID:
            return None  # a notification: run, never answered
        response = to_serializable(to_response(request, result))
        if "error" in response:
            error = response["error"]
            response["error"] = _error_object(error["code"], error["message"], error.get("data"))
        return response

    # -- per method ------------------------------------------------------------------
    def _wrap(self, method: Method) -> Callable[..., Any]:
        async def call(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            kind: str | None = None
            try:
                return Success(await self._call(method, ctx, args, kwargs))
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
                if self.app.config.log_level in _DEBUG_LEVELS:
                    logger.bind(method=method.name, request_id=ctx.request_id,
                                duration_ms=round(seconds * 1000, 3), peer_uid=ctx.peer_uid,
                                kind=kind).debug("{} {}", method.name, kind or "ok")

        # jsonrpcserver binds every call's params to this signature; given, it is not
        # recomputed by inspect.signature per request
        call.__signature__ = _CALL_SIGNATURE  # type: ignore[attr-defined]
        return call

    async def _call(self, method: Method, ctx: Context,
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
            # the request's one deadline: everything it waits for ends by it (sidecar/deadline.py)
            budget = self._op_timeouts[method.op]
            with deadline.within(budget if timeout_ms is None else min(timeout_ms, budget)):
                return await method.handler(ctx, params)
        finally:
            stats.in_flight -= 1


def pop_timeout(kwargs: dict[str, Any]) -> int | None:
    """Take the optional ``timeoutMs`` (any method): shortens this request's deadline (its
    operation class's, ``read/write/admin_timeout_ms``)."""
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


def _valid_envelope(request: Any) -> bool:
    """A JSON-RPC 2.0 request object (batches are split before this is called)."""
    # (tuples, not unions, and no set built: this runs for every request)
    if not isinstance(request, dict):
        return False
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return False
    if "params" in request and not isinstance(request["params"], _PARAMS_TYPES):
        return False
    if "id" in request and (isinstance(request["id"], bool)
                            or not isinstance(request["id"], _ID_TYPES)):
        return False
    return _ENVELOPE_MEMBERS.issuperset(request)


def _batch_full(item: Any, limit: int) -> dict[str, Any]:
    """What a batch item not run because the batch's replies are full is answered."""
    if not isinstance(item, dict):
        return _INVALID_ENVELOPE
    request_id = item["id"]
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
        request_id = None
    return _error_response(errors.Overloaded(
        f"this batch's replies exceed {limit} bytes (max_line_bytes): not run; send it "
        "again in smaller batches"), request_id)


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


# what jsonrpcserver answers a request object that is not JSON-RPC 2.0, in memoryd's shape
_INVALID_ENVELOPE = {"jsonrpc": "2.0", "id": None,
                     "error": _error_object(errors.InvalidRequest.code, "Invalid request", None)}


def _error_response(exc: errors.MemorydError, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": exc.code, "message": exc.message,
                                        "data": exc.data()}, "id": request_id}


def error_line(exc: errors.MemorydError, request_id: Any = None) -> bytes:
    """A whole error response line, for errors raised outside dispatch (e.g. framing)."""
    return encode(_error_response(exc, request_id))


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj) + b"\n"
