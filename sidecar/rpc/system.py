"""system.*: handshake, health, stats, shutdown."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import psutil

from sidecar import PROTOCOL_VERSION, __version__, errors
from sidecar.rpc import REGISTRY, Context, NoParams, rpc

if TYPE_CHECKING:
    from sidecar.app import App

_process = psutil.Process()


@rpc("system.hello")
async def hello(ctx: Context, params: NoParams) -> dict[str, Any]:
    app = ctx.app
    embedder = app.embedder
    return {
        "protocol": PROTOCOL_VERSION,
        "version": __version__,
        "pid": app.pid,
        "capabilities": {
            "embedding": embedder is not None and embedder.state != "failed",
            "rerank": app.reranker is not None,
            "multimodal": bool(getattr(embedder, "multimodal", False)),
            "kv": "kv.get" in REGISTRY,
        },
        "collection": app.config.collection,
        "dimension": app.dimension,
    }


@rpc("system.health")
async def health(ctx: Context, params: NoParams) -> dict[str, Any]:
    return await ctx.app.health()


@rpc("system.stats")
async def stats(ctx: Context, params: NoParams) -> dict[str, Any]:
    app = ctx.app
    s = app.stats
    with _process.oneshot():
        memory = _process.memory_info()
        cpu = _process.cpu_times()
    out: dict[str, Any] = {
        "uptimeSeconds": round(time.time() - app.started_at, 3),
        "inFlight": s.in_flight,
        "connections": s.connections,
        "connectionsTotal": s.connections_total,
        "connectionsPaused": s.connections_paused,
        "methods": s.methods(),
        "errorsByKind": dict(s.errors_by_kind),
        "process": {
            "pid": app.pid,
            "rssBytes": memory.rss,
            "cpuUserSeconds": round(cpu.user, 3),
            "cpuSystemSeconds": round(cpu.system, 3),
            "threads": _process.num_threads(),
        },
        "sweeper": {"runs": s.sweeps, "deleted": s.swept, "lastRunAt": s.last_sweep_at},
    }
    out.update(app.extra_stats())
    if (storage := await _storage(app)) is not None:
        out["storage"] = storage
    return out


async def _storage(app: App) -> dict[str, Any] | None:
    """Live vs reclaimable data of the embedded store (its last answer while it is busy);
    None for a Qdrant server, which reclaims by itself."""
    try:
        info, _stale = await app.store_info()
    except errors.MemorydError:
        return None
    detail = info.detail
    if "reclaimablePoints" not in detail:
        return None
    return {"livePoints": info.points,
            **{key: detail[key] for key in ("reclaimablePoints", "diskBytes", "walBytes",
                                            "reclaimableBytes", "reclaims", "lastReclaimMs",
                                            "skippedExpired")}}


@rpc("system.shutdown", "admin")
async def shutdown(ctx: Context, params: NoParams) -> dict[str, Any]:
    if ctx.peer_uid != os.getuid():
        raise errors.ValidationError.at(
            "$", f"system.shutdown is allowed only from uid {os.getuid()}")
    # Answer first, then drain: the reply is written before the connection is closed.
    await anyio.lowlevel.checkpoint()
    ctx.app.request_shutdown("system.shutdown")
    return {}
