"""transfer.* methods: moving data in and out of memoryd (``memoryd export`` / ``import``).

The work is in ``sidecar/transfer/service.py``; the wire types and the export format in
``sidecar/transfer/records.py``.
"""

from __future__ import annotations

from typing import Any

from sidecar.rpc import Context, NoParams, rpc
from sidecar.transfer import digest, records, service


@rpc("transfer.describe", "admin")
async def transfer_describe(ctx: Context, params: NoParams) -> records.Description:
    """The export header: every space with its dimension, model and count, once every write
    journaled before the call is applied."""
    return await service.describe(ctx.app)


@rpc("transfer.export", "read")
async def transfer_export(ctx: Context, params: records.ExportParams) -> records.ExportPage:
    return await service.export_page(ctx.app, params)


@rpc("transfer.import", "write")
async def transfer_import(ctx: Context, params: records.ImportParams) -> dict[str, Any]:
    return await service.import_records(ctx.app, params)


@rpc("transfer.digest", "admin")
async def transfer_digest(ctx: Context, params: digest.DigestParams) -> digest.DigestResult:
    """Count per record type and digest of (id, payload, float32 vector) of one space
    (``memoryd migrate`` compares it with the other side's)."""
    return await digest.space_digest(ctx.app, params.space)
