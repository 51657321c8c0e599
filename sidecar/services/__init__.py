"""What handlers call: the work of a method group over App's collaborators, one module per
concern (``memories``, ``conversations``, ``kv_spaces``). Handlers (``sidecar/rpc/``) map
params to these calls and results to replies; pure rules stay in ``sidecar/domain/``.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: the one clock of stored timestamps."""
    return time.time_ns() // 1_000_000
