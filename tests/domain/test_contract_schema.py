"""The contract schema the TypeScript client's tests check types.ts and errors.ts against
(clients/typescript/test/fixtures/contract-schema.json) is what sidecar/contract.py and
sidecar/errors.py say now: after changing either, run scripts/gen_contract_schema.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_contract_schema.py"
SCHEMA = ROOT / "clients" / "typescript" / "test" / "fixtures" / "contract-schema.json"


def test_committed_schema_is_current() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_schema_holds_the_wire_types_and_the_error_table() -> None:
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert doc["$defs"]["ConversationState"]["required"] == [
        "sessionId", "leadPersona", "summary", "plan", "objectives", "keyFacts", "sessionChain",
        "updatedAt"]
    assert {"kind": "timeout", "code": -32003, "retryable": True} in doc["errors"]
    assert doc["literals"]["PersonaId"] == ["zee", "stanley", "johny"]
