"""The error taxonomy of CONTRACT §2: every error a client can see.

Each class carries its JSON-RPC code, its ``data.kind`` and whether the same call may succeed
later unchanged (``data.retryable``). Raise them anywhere below the protocol layer; the
protocol layer turns them into JSON-RPC error objects. Anything else that escapes becomes
``InternalError`` with a generic message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

from typing import Any, ClassVar


class MemorydError(Exception):
    """Base class. ``extra`` is merged into the reply's ``data`` object."""

    code: ClassVar[int] = -32603
    kind: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def data(self) -> dict[str, Any]:
        return {"kind": self.kind, "retryable": self.retryable, **self.extra}


class ParseError(MemorydError):
    code, kind = -32700, "parse"


class InvalidRequest(MemorydError):
    code, kind = -32600, "invalid_request"


class MethodNotFound(MemorydError):
    code, kind = -32601, "method_not_found"


class ValidationError(MemorydError):
    """Params failed the schema or a rule; ``errors`` is a list of ``{path, message}``.

    Messages are for people (they reach agent-core's tools as they are): a sentence that
    names the field, such as "id must be a UUID"; the path says the same for programs."""

    code, kind = -32602, "validation"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, errors=errors or [{"path": "$", "message": message}])

    @classmethod
    def at(cls, path: str, message: str) -> ValidationError:
        """One failure: ``message`` is the whole sentence, ``path`` where it applies."""
        return cls(message, [{"path": path, "message": message}])


class InternalError(MemorydError):
    code, kind = -32603, "internal"


class BackendUnavailable(MemorydError):
    code, kind, retryable = -32001, "backend_unavailable", True


class DimensionMismatch(MemorydError):
    code, kind = -32002, "dimension_mismatch"

    def __init__(self, expected: int, actual: int, message: str | None = None) -> None:
        super().__init__(
            message or f"vector has {actual} dimensions, the collection has {expected}",
            expected=expected,
            actual=actual,
        )


class Timeout(MemorydError):
    code, kind, retryable = -32003, "timeout", True

    def __init__(self, timeout_ms: int, message: str | None = None) -> None:
        super().__init__(message or f"operation exceeded its {timeout_ms} ms deadline",
                         timeoutMs=timeout_ms)


class NotFound(MemorydError):
    code, kind = -32004, "not_found"


class Conflict(MemorydError):
    code, kind = -32005, "conflict"


class Overloaded(MemorydError):
    code, kind, retryable = -32006, "overloaded", True


class EmbeddingUnavailable(MemorydError):
    code, kind, retryable = -32007, "embedding_unavailable", True


class ShuttingDown(MemorydError):
    code, kind, retryable = -32008, "shutting_down", True


ALL_ERRORS: tuple[type[MemorydError], ...] = (
    ParseError, InvalidRequest, MethodNotFound, ValidationError, InternalError,
    BackendUnavailable, DimensionMismatch, Timeout, NotFound, Conflict, Overloaded,
    EmbeddingUnavailable, ShuttingDown,
)
