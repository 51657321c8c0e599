"""transfer.reembed*: re-embed the memory collection with another model (the job:
sidecar/transfer/reembed.py; the command: ``memoryd reembed``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from sidecar.contract import FieldError
from sidecar.rpc import Context, NoParams, rpc
from sidecar.transfer.reembed import reembedder

Provider = Literal["openai", "google", "voyage", "vllm", "local", "legacy-mock"]


class ReembedParams(msgspec.Struct, forbid_unknown_fields=True):
    """``provider`` (absent: only ``dropOld``, dropping what earlier switches left), the
    embedding settings of ``[embedding]`` for it (the API key comes from memoryd's config
    when it names the same provider, else from the provider's usual environment variable)."""

    provider: Provider | None = None
    model: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    dimensions: Annotated[int, Meta(ge=1, le=65_536)] | None = None
    baseUrl: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    dropOld: bool = False

    def __post_init__(self) -> None:
        # refused here, not found out by the job (a failed job, a traceback in the log)
        if self.baseUrl is not None and not _http_url(self.baseUrl):
            raise FieldError(".baseUrl", "must be an http:// or https:// URL with a host")


def _http_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


@rpc("transfer.reembed", "admin")
async def reembed(ctx: Context, params: ReembedParams) -> dict[str, Any]:
    """Start (or resume) re-embedding; returns at once with the job's status."""
    return await reembedder(ctx.app).start(params)


@rpc("transfer.reembedStatus")
async def status(ctx: Context, params: NoParams) -> dict[str, Any]:
    return reembedder(ctx.app).snapshot()


@rpc("transfer.reembedStop", "admin")
async def stop(ctx: Context, params: NoParams) -> dict[str, Any]:
    """Stop the running job at its next page (the rerun resumes it)."""
    return reembedder(ctx.app).stop()
