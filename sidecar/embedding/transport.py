"""JSON over HTTP to a remote model service: retries, backoff and the caller's deadline.

One ``HttpService`` per configured service (an embedding or a reranking provider). It knows
nothing about embeddings: it posts a JSON body, retries what may succeed later (429, 5xx,
connection failures) and turns every failure into one ``MemorydError`` whose message names
the service, the HTTP status and a short reason taken from the service's error body. Secrets
(API keys) are scrubbed from every message; request bodies (the texts) are never logged.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx
import msgspec
from loguru import logger

from sidecar import errors
from sidecar.backoff import Backoff
from sidecar.embedding.base import DeadlineExceeded

_REASON_MAX = 200
_KEY_IN_URL = re.compile(r"([?&](?:key|api_key|apikey)=)[^&\s\"']+", re.IGNORECASE)


class _RedactKeyFilter(logging.Filter):
    """httpx logs every request URL at INFO; Google's API key travels in the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _KEY_IN_URL.search(message):
            record.msg, record.args = _KEY_IN_URL.sub(r"\1***", message), ()
        return True


_redact_filter = _RedactKeyFilter()
if _redact_filter not in logging.getLogger("httpx").filters:
    logging.getLogger("httpx").addFilter(_redact_filter)


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_IN_URL.sub(r"\1***", text)


def error_reason(body: bytes, secrets: Sequence[str] = ()) -> str:
    """A short, secret-free reason from an error body (OpenAI, Google, Voyage and vLLM all
    put it somewhere slightly different)."""
    reason: Any = None
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            reason = err.get("message") or err.get("status") or err.get("type")
        elif isinstance(err, str):
            reason = err
        if reason is None:
            reason = data.get("detail") or data.get("message")
        if isinstance(reason, list) and reason:  # FastAPI-style validation details
            first = reason[0]
            reason = first.get("msg") if isinstance(first, dict) else first
    if not reason:
        reason = body.decode("utf-8", "replace")
    text = " ".join(str(reason).split())
    text = redact(text, secrets)
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the service asked us to wait: ``retry-after-ms`` (OpenAI) or ``Retry-After``
    as seconds or an HTTP date."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retryable(status: int) -> bool:
    """Rate limits and server-side failures may pass; any other 4xx will not."""
    return status == 429 or status >= 500


class HttpService:
    """Posts JSON to one service with retries bounded by the caller's deadline.

    The deadline is an absolute ``anyio.current_time()`` value. Each request's timeout is cut
    to what is left of it, a retry is never started when its wait would end after it, and
    running out of it raises ``DeadlineExceeded``.
    """

    def __init__(
        self,
        *,
        service: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        request_timeout: float = 60.0,
        error: type[errors.MemorydError] = errors.EmbeddingUnavailable,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._params = dict(params or {})
        self._secrets = tuple(s for s in secrets if s)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.request_timeout = request_timeout
        self._error = error
        # trust_env keeps HTTPS_PROXY and friends working for real deployments.
        self._client = httpx.AsyncClient(
            headers={"content-type": "application/json", **(headers or {})},
            timeout=request_timeout,
        )

    def fail(self, status: int | None, reason: str) -> errors.MemorydError:
        where = f"HTTP {status}" if status else "no response"
        return self._error(
            f"{self.service} failed ({where}): {reason}",
            provider=self.service,
            status=status,
            reason=reason,
        )

    async def post_json(self, path: str, body: Any, *, deadline: float) -> bytes:
        """POST ``body`` to ``base_url + path``; the raw body of the first 2xx answer."""
        url = self.base_url + path
        content = msgspec.json.encode(body)
        backoff = Backoff(self.backoff_base, self.backoff_cap, retries=self.max_attempts - 1)
        while True:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise DeadlineExceeded(self.service)
            status: int | None = None
            wait: float | None = None
            try:
                response = await self._client.post(
                    url,
                    content=content,
                    params=self._params or None,
                    timeout=max(0.001, min(self.request_timeout, remaining)),
                )
            except httpx.HTTPError as exc:
                if anyio.current_time() >= deadline:
                    raise DeadlineExceeded(self.service) from None
                reason = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), self._secrets)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response.content
                reason = error_reason(response.content, self._secrets)
                if not retryable(status):
                    raise self.fail(status, reason)
                wait = retry_after(response.headers)
            if backoff.exhausted:
                raise self.fail(status, f"{reason} (gave up after {backoff.attempt + 1} attempts)")
            pause = backoff.next(wait, left=deadline - anyio.current_time())
            if pause is None:
                detail = "a retry" if wait is None else f"a retry in {wait:.1f} s"
                raise self.fail(status, f"{reason} ({detail} would pass the deadline)")
            logger.debug("{} answered {}; retry {} in {:.2f} s", self.service,
                         status or "nothing", backoff.attempt, pause)
            await anyio.sleep(pause)

    async def aclose(self) -> None:
        await self._client.aclose()
