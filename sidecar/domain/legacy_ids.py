"""Legacy deterministic ids (CONTRACT §5): the 31-multiplier string hash agent-core used to
place state, conversation and session-chain records, reproduced bit for bit.
"""

from __future__ import annotations

import hashlib
import uuid

# The prefixes of the records that live at deterministic ids.
CONVERSATION = "conversation-"
SESSION_CHAIN = "session-chain-"
STATE = "state-"


def utf16_units(s: str) -> list[int]:
    """The UTF-16 code units of ``s``, as JavaScript's ``charCodeAt`` sees them."""
    raw = s.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2)]


def _hash32(s: str) -> int:
    """``h = 31*h + c`` over the UTF-16 units, wrapped to a signed 32-bit integer."""
    h = 0
    for unit in utf16_units(s):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def legacy_id(s: str) -> str:
    """The UUID-shaped id legacy code derived from ``s``."""
    x = format(abs(_hash32(s)), "x").rjust(8, "0")  # |-2^31| = 2^31 still fits 8 hex digits
    return f"{x[0:8]}-{x[0:4]}-4{x[1:4]}-8{x[0:3]}-{x.ljust(12, '0')[0:12]}"


def instance_id(hostname: str, username: str) -> str:
    """The id legacy code gave a (host, user) pair; the state record lives at
    ``legacy_id("state-" + instance_id)``."""
    return legacy_id(f"memory-{hostname}-{username}")


def state_id(instance: str) -> str:
    return legacy_id(STATE + instance)


# How many places a session's record may live at: probe ids 1..MAX_PROBES. Reaching the
# limit needs that many sessions sharing one 32-bit hash: something is wrong, say so.
MAX_PROBES = 32


def probe_ids(prefix: str, session_id: str) -> list[str]:
    """Every place a session's record may live at, in probing order."""
    return [probe_id(prefix, session_id, n) for n in range(1, MAX_PROBES + 1)]


def probe_id(prefix: str, session_id: str, n: int) -> str:
    """The n-th place (1-based) a session's record may live at.

    n = 1 is the legacy id. Later probes key on ``prefix + sessionId + "#" + n`` but hash it
    with SHA-256, not the legacy hash: that hash is a polynomial, so two strings that collide
    keep colliding with any common suffix (h(a + t) = h(a)·31^|t| + h(t)), and
    ``legacy_id(prefix + a + "#2")`` would collide exactly when the first probe did."""
    if n < 1:
        raise ValueError("probe numbers start at 1")
    if n == 1:
        return legacy_id(prefix + session_id)
    digest = hashlib.sha256(f"{prefix}{session_id}#{n}".encode("utf-8", "surrogatepass"))
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))
