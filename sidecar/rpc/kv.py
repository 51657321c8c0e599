"""kv.* methods: the key/value space of agent-core's memory-persistence plugin.

The spaces (one collection per namespace), their writes, sweeping and paging are in
``sidecar/services/kv_spaces.py`` (``app.kv``); ids, payloads and cursors in
``sidecar/domain/kv.py``.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from sidecar import errors
from sidecar.contract import (
    KVKeyParams,
    KVKeysParams,
    KVListParams,
    KVNamespaceParams,
    KVSetManyParams,
    KVSetParams,
    KVSweepParams,
)
from sidecar.domain import kv
from sidecar.rpc import Context, rpc, with_queued
from sidecar.services import now_ms
from sidecar.services.kv_spaces import list_page


@rpc("kv.set", "write")
async def kv_set(ctx: Context, params: KVSetParams) -> dict[str, Any]:
    [stamp], queued = await ctx.app.kv.write(params.namespace, [params], "")
    return with_queued(stamp, queued)


@rpc("kv.setMany", "write")
async def kv_set_many(ctx: Context, params: KVSetManyParams) -> dict[str, Any]:
    if not params.entries:
        kv.collection_for(params.namespace)
        return {"count": 0}
    stamps, queued = await ctx.app.kv.write(params.namespace, params.entries, "$.entries")
    return with_queued({"count": len(stamps)}, queued)


@rpc("kv.get", "read")
async def kv_get(ctx: Context, params: KVKeyParams) -> dict[str, Any] | None:
    kv.check_key(params.key)
    space = await ctx.app.kv.get(params.namespace, create=False)
    if space is None:
        return None
    pid = kv.point_id(params.namespace, params.key)
    record = (await space.live([pid], now_ms())).get(pid)
    return kv.entry(record.payload) if record is not None else None


@rpc("kv.getMany", "read")
async def kv_get_many(ctx: Context, params: KVKeysParams) -> list[dict[str, Any] | None]:
    """One item per key, in order: the entry (with its ``key``) or null."""
    for index, key in enumerate(params.keys):
        kv.check_key(key, f"$.keys[{index}]")
    space = await ctx.app.kv.get(params.namespace, create=False)
    if space is None:
        return [None] * len(params.keys)
    ids = [kv.point_id(params.namespace, key) for key in params.keys]
    found = await space.live(list(dict.fromkeys(ids)), now_ms())
    # A key may be named many times and its value is repeated each time: 1,000 mentions of
    # a 1 MiB value were a 1 GB reply. The values of one reply are capped like a request line.
    cap = max(ctx.app.config.max_line_bytes, ctx.app.config.kv_max_value_bytes)
    sizes = {pid: kv.value_size(record.payload.get("value")) for pid, record in found.items()}
    total = sum(sizes.get(pid, 0) for pid in ids)
    if total > cap:
        raise errors.ValidationError.at(
            "$.keys", f"the values asked for are {total} bytes as JSON; one reply carries at "
                      f"most {cap} (max_line_bytes): ask for fewer keys")
    return [kv.entry(found[pid].payload, with_key=True) if pid in found else None
            for pid in ids]


@rpc("kv.delete", "write")
async def kv_delete(ctx: Context, params: KVKeyParams) -> dict[str, Any]:
    """``deleted``: whether a live entry was there."""
    kv.check_key(params.key)
    deleted, queued = await ctx.app.kv.delete(params.namespace, [params.key])
    return with_queued({"deleted": deleted > 0}, queued)


@rpc("kv.deleteMany", "write")
async def kv_delete_many(ctx: Context, params: KVKeysParams) -> dict[str, Any]:
    """``deleted``: how many of the keys had a live entry."""
    for index, key in enumerate(params.keys):
        kv.check_key(key, f"$.keys[{index}]")
    deleted, queued = await ctx.app.kv.delete(params.namespace, params.keys)
    return with_queued({"deleted": deleted}, queued)


@rpc("kv.clear", "write")
async def kv_clear(ctx: Context, params: KVNamespaceParams) -> dict[str, Any]:
    """Delete every entry of the namespace; ``deleted`` is null when only queued."""
    deleted, queued = await ctx.app.kv.clear(params.namespace)
    return with_queued({"deleted": deleted}, queued)


@rpc("kv.sweep", "write")
async def kv_sweep(ctx: Context, params: KVSweepParams) -> dict[str, Any]:
    """Delete expired entries now: of one namespace, or of all. ``deleted`` is null when
    only queued."""
    if params.namespace is UNSET:
        return {"deleted": await ctx.app.kv.sweep_all()}
    kv.collection_for(params.namespace)
    return {"deleted": await ctx.app.kv.sweep(params.namespace)}


@rpc("kv.list", "read")
async def kv_list(ctx: Context, params: KVListParams) -> dict[str, Any]:
    """Live entries in key-hash order (stable, not alphabetical), ``limit`` at most per page;
    ``nextCursor`` whenever more may follow. With ``prefix`` a page may hold fewer (even
    none) and still have a ``nextCursor``: the scan of one call is bounded."""
    after = kv.decode_cursor(params.cursor) if params.cursor is not UNSET else None
    space = await ctx.app.kv.get(params.namespace, create=False)
    if space is None:
        return {"entries": []}
    prefix = params.prefix if params.prefix is not UNSET else ""
    page, next_after = await list_page(space.view, now_ms(), after, params.limit, prefix)
    out: dict[str, Any] = {"entries": [kv.entry(r.payload, with_key=True) for r in page]}
    if next_after is not None:
        out["nextCursor"] = kv.encode_cursor(next_after)
    return out
