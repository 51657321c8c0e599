"""Logging setup: loguru to stderr, text or one JSON object per line.

Never log memory contents or secrets at INFO or above; request fields that may carry content
are logged only at DEBUG, and then without params.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import msgspec
from loguru import logger

_JSON_EXTRAS = ("method", "request_id", "duration_ms", "peer_uid", "kind")


def _json_sink(message: Any) -> None:
    record = message.record
    line: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
    }
    for key in _JSON_EXTRAS:
        if key in record["extra"]:
            line[key] = record["extra"][key]
    if record["exception"] is not None:
        line["exception"] = "".join(traceback.format_exception(*record["exception"]))
    sys.stderr.write(msgspec.json.encode(line).decode() + "\n")
    sys.stderr.flush()


def configure(level: str, fmt: str) -> None:
    """(Re)install the single stderr sink. Safe to call again on SIGHUP."""
    logger.remove()
    if fmt == "json":
        logger.add(_json_sink, level=level, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level:<7} | {message}",
            backtrace=False,
            diagnose=False,  # diagnose prints local variables: could contain content
        )
