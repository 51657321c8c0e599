"""``memoryd reembed``: start (or resume) the re-embedding job inside the running memoryd and
show its progress until it has switched (the job: sidecar/transfer/reembed.py).

Ctrl-C stops the job (``transfer.reembedStop``) at its next page and exits 130; running the
same command again resumes it. Exit status 0 when memoryd serves the re-embedded collection,
1 when the job failed or memoryd cannot be reached.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from sidecar.transfer.cli import EXIT_INTERRUPTED, CommandError, Connection
from sidecar.transfer.progress import Progress

POLL = 0.25  # seconds between two status requests
STOP_WAIT = 120.0  # seconds Ctrl-C waits for the job to stop at a page boundary


def run(socket_path: Path, *, provider: str | None, model: str | None,
        dimensions: int | None, base_url: str | None, drop_old: bool,
        json_lines: bool) -> int:
    params: dict[str, Any] = {"dropOld": drop_old}
    for key, value in (("provider", provider), ("model", model), ("dimensions", dimensions),
                       ("baseUrl", base_url)):
        if value is not None:
            params[key] = value
    try:
        with Connection(socket_path) as conn:
            status = conn.call("transfer.reembed", params, dict)
            if provider is None:
                _result({"dropped": True, "old": status["old"]})
                return 0
            return _follow(conn, status, json_lines)
    except CommandError as exc:
        print(f"memoryd reembed: {exc}", file=sys.stderr)
        return 1


def _follow(conn: Connection, status: dict[str, Any], json_lines: bool) -> int:
    """Show progress until the job ends; Ctrl-C stops it."""
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with Progress("reembed", status.get("total"), json_lines=json_lines) as progress:
            stop_asked_at: float | None = None
            told_loading = False
            while status["state"] in ("running", "switching"):
                if interrupted and stop_asked_at is None:
                    status = conn.call("transfer.reembedStop", {}, dict)
                    stop_asked_at = time.monotonic()
                    print("memoryd reembed: stopping at the next page ...", file=sys.stderr)
                if stop_asked_at is not None and time.monotonic() - stop_asked_at > STOP_WAIT:
                    break
                time.sleep(POLL)
                status = conn.call("transfer.reembedStatus", {}, dict)
                if status.get("embedderState") == "loading" and not told_loading:
                    told_loading = True
                    print(f"memoryd reembed: memoryd is loading the {status['provider']} "
                          f"model ...", file=sys.stderr)
                _show(progress, status)
    finally:
        signal.signal(signal.SIGINT, previous)
    state = status["state"]
    if state == "done":
        _result({k: status[k] for k in ("state", "collection", "servedModel", "old",
                                        "embedded", "deleted")})
        model = status["servedModel"] or {}
        print(f"memoryd reembed: memoryd now serves {status['collection']!r}, embedded with "
              f"{model.get('provider')} {model.get('model')!r}. Set embedding.provider = "
              f"{model.get('provider')!r} (and embedding.model) in memoryd's config before "
              f"it restarts; until then a restart serves it degraded (requests must carry "
              f"vectors). The old collection stays until `memoryd reembed --drop-old`.",
              file=sys.stderr)
        return 0
    if interrupted or state == "stopped":
        print("memoryd reembed: stopped; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"memoryd reembed: {state}: {status.get('error')}; run the same command again to "
          f"resume", file=sys.stderr)
    return 1


def _show(progress: Progress, status: dict[str, Any]) -> None:
    """The first pass embeds everything, so it is the bar; the catch-ups after it (writes made
    meanwhile) are short and shown as the bar's end."""
    if status["pass"] <= 1:
        done = status["scanned"]
        if status["total"] is not None:  # records saved during the pass count too
            total = max(status["total"], done, progress.total or 0)
            if total != progress.total:
                progress.set_total(total)
    else:
        if progress.total is None:
            progress.set_total(progress.done)
        done = progress.total or 0
    progress.advance(max(0, done - progress.done))


def _result(result: dict[str, Any]) -> None:
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    sys.stdout.flush()
