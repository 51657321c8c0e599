"""RPC methods, one module per group (system, memory, persona, state, conversation, ...).

A method is an ``async def handler(ctx: Context, params: P) -> result`` registered with
``@rpc("group.verb")``. ``P`` is a msgspec Struct (``forbid_unknown_fields=True``): the
protocol layer converts the request's params into it (a failure becomes ``validation``) and
encodes whatever the handler returns with msgspec. Handlers raise ``sidecar.errors``
exceptions for every failure a client should see.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from sidecar.app import App

OpClass = Literal["read", "write", "admin"]


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """Params of a method that takes none (``{}``, ``[]`` or absent)."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler knows about the call besides its params."""

    app: App
    peer_uid: int
    peer_pid: int
    request_id: Any = None


Handler = Callable[[Context, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    params: type[msgspec.Struct]
    handler: Handler
    op: OpClass


REGISTRY: dict[str, Method] = {}


def with_queued(result: dict[str, Any], queued: bool) -> dict[str, Any]:
    """``result`` with ``queued: true`` when the write was only journaled (not yet applied)."""
    if queued:
        result["queued"] = True
    return result


def rpc(name: str, op: OpClass = "read") -> Callable[[Handler], Handler]:
    """Register ``handler`` as method ``name``; its params type is the annotation of its
    second parameter."""

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"method {name} registered twice")
        hints = inspect.get_annotations(handler, eval_str=True)
        params_type = list(hints.values())[1]
        REGISTRY[name] = Method(name, params_type, handler, op)
        return handler

    return register


def load_all() -> dict[str, Method]:
    """Import every method module so that its ``@rpc`` decorators run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
