"""Write the contract's wire schema for the TypeScript client's tests:
``python scripts/gen_contract_schema.py [--check]``.

The file (clients/typescript/test/fixtures/contract-schema.json) holds msgspec's JSON schema of
every Struct in sidecar/contract.py, the contract's literal types in their declared order, and
the error table of sidecar/errors.py (kind, code, retryable). The client's
test/contract.test.ts checks types.ts and errors.ts against it, and
tests/domain/test_contract_schema.py fails when the committed file is not what this script
writes. ``--check`` exits 1 (writing nothing) when the file is stale.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from sidecar import contract, errors  # noqa: E402

OUT = ROOT / "clients" / "typescript" / "test" / "fixtures" / "contract-schema.json"


def _strip(node: Any) -> Any:
    """The schema without docstrings (they change more often than the wire does)."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def render() -> str:
    structs = [v for v in vars(contract).values()
               if inspect.isclass(v) and issubclass(v, msgspec.Struct)
               and v.__module__ == contract.__name__]
    _, defs = msgspec.json.schema_components(structs)
    doc = {
        "generator": "scripts/gen_contract_schema.py: do not edit by hand",
        "literals": {
            "MemoryCategory": list(contract.MEMORY_CATEGORIES),
            "EntryType": list(contract.ENTRY_TYPES),
            "PersonaId": list(contract.PersonaId.__args__),  # type: ignore[attr-defined]
            "MediaType": list(contract.MediaType.__args__),  # type: ignore[attr-defined]
            "SearchMode": list(contract.SearchMode.__args__),  # type: ignore[attr-defined]
        },
        "errors": [{"kind": e.kind, "code": e.code, "retryable": e.retryable}
                   for e in errors.ALL_ERRORS],
        "$defs": _strip(defs),
    }
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render()
    current = OUT.read_text(encoding="utf-8") if OUT.exists() else None
    if args.check:
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run scripts/gen_contract_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != text:
        OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
