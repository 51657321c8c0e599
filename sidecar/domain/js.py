"""JavaScript string and number semantics that legacy data depends on.

Legacy code measured and cut strings in UTF-16 code units, trimmed with JavaScript's
whitespace set and printed numbers the JavaScript way; memoryd must produce the same text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")

# WhiteSpace and LineTerminator of ECMA-262 (what String.prototype.trim removes): unlike
# Python's str.strip() it includes U+FEFF and excludes U+001C..U+001F and U+0085.
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def trim(s: str) -> str:
    return s.strip(WHITESPACE)


def length(s: str) -> int:
    """``s.length``: UTF-16 code units (a character outside the BMP counts 2)."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def slice_(s: str, start: int, end: int | None = None) -> str:
    """``s.slice(start, end)`` in UTF-16 units. A cut through a surrogate pair leaves U+FFFD
    where JavaScript would leave a lone surrogate (which cannot be stored as UTF-8 JSON)."""
    if s.isascii():
        return s[start:end]
    units = s.encode("utf-16-le", "surrogatepass")
    n = len(units) // 2
    lo, hi = _index(start, n), n if end is None else _index(end, n)
    if hi <= lo:
        return ""
    return units[2 * lo:2 * hi].decode("utf-16-le", "replace")


def _index(i: int, n: int) -> int:
    return max(n + i, 0) if i < 0 else min(i, n)


def take_last(items: Sequence[T], n: int) -> list[T]:
    """``items.slice(-n)``: the last ``n``; note ``-0`` is ``0``, so ``n == 0`` keeps all."""
    return list(items[-n:]) if n > 0 else list(items)


def number_to_string(x: float) -> str:
    """``String(x)`` for a number (Number::toString, radix 10)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + number_to_string(-x)
    # repr gives the shortest round-tripping digits, as JavaScript does; only the layout differs.
    _sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    s = "".join(map(str, digits))
    k = len(s)
    n = int(exponent) + k  # x = 0.s × 10^n
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    mantissa = s if k == 1 else s[0] + "." + s[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def to_string(value: Any) -> str:
    """``String(value)`` for JSON-decoded values (also what a property key becomes)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return number_to_string(value)
    if isinstance(value, list):
        return ",".join("" if v is None else to_string(v) for v in value)
    return "[object Object]"


def _is_array_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and str(int(key)) == key and int(key) < 2**32 - 1


def object_keys_order(keys: Sequence[str]) -> list[str]:
    """Property order of a JavaScript object built by inserting ``keys``: array-index keys
    first in ascending order, then the others in insertion order."""
    indexes = sorted((k for k in keys if _is_array_index(k)), key=int)
    return indexes + [k for k in keys if not _is_array_index(k)]


def stringify_counts(counts: dict[str, int]) -> str:
    """``JSON.stringify`` of a flat object of string → integer, keys in JavaScript order."""
    return "{" + ",".join(
        f"{json.dumps(k, ensure_ascii=False)}:{counts[k]}" for k in object_keys_order(list(counts))
    ) + "}"
