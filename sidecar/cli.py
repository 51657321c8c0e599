"""Command line: parse arguments, build the Config, run. Nothing else lives here.

    memoryd serve [--socket PATH] [--data-dir DIR] [--config FILE] [--spawned] ...
    memoryd call METHOD [JSON-PARAMS] [--full]
    memoryd health
    memoryd config show
    memoryd doctor
    memoryd export [--out FILE|-] [--json]
    memoryd import FILE|- [--json]
    memoryd reembed --provider NAME [--model M] [--drop-old] [--json]
    memoryd migrate --from-url URL | --to-url URL [--from-collection NAME] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from sidecar import __version__
from sidecar.config import Config, ConfigError, load_config, masked

# serve flags that map one to one onto Config keys (flag name -> key)
_CONFIG_FLAGS: dict[str, dict[str, Any]] = {
    "socket": {"help": "socket path"},
    "data_dir": {"help": "data directory (embedded store, journal)"},
    "log_level": {"help": "TRACE, DEBUG, INFO, WARNING, ERROR"},
    "log_format": {"choices": ["text", "json"]},
    "qdrant_url": {"help": "use a Qdrant server/cluster instead of the embedded engine"},
    "collection": {"help": "collection name (default agent_memory)"},
    "dimension": {"type": int, "help": "vector dimension"},
    "max_line_bytes": {"type": int},
    "max_in_flight": {"type": int},
    "drain_timeout": {"type": float},
    "sweep_interval": {"type": float, "help": "seconds between TTL sweeps, 0 = off"},
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memoryd", description="memory sidecar for agent-core")
    parser.add_argument("--version", action="version", version=f"memoryd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML config file")
        p.add_argument("--socket", help="socket path")

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML config file")
    for key, kwargs in _CONFIG_FLAGS.items():
        serve.add_argument("--" + key.replace("_", "-"), dest=key, **kwargs)
    serve.add_argument("--allow-model-change", action="store_true", default=None,
                       help="embed into a collection written with another embedding model")
    serve.add_argument("--spawned", action="store_true",
                       help="spawned by a host: one readiness line on stdout")
    serve.add_argument("--parent-pid", type=int,
                       help="exit when this process is gone (default in spawned mode: parent)")
    serve.add_argument("--idle-exit", type=float, metavar="SECS",
                       help="exit after SECS with no connections")

    call = sub.add_parser(
        "call", help="call one method and print its result as JSON (indented on a terminal, "
                     "one line otherwise)")
    common(call)
    call.add_argument("method")
    call.add_argument("params", nargs="?", help="params as a JSON object")
    call.add_argument("--timeout", type=float, default=60.0)
    call.add_argument("--full", action="store_true",
                      help="print embeddings in full (by default each is elided to its length)")

    health = sub.add_parser("health", help="exit 0 only when memoryd is ready")
    common(health)

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the effective config, secrets masked")
    common(show)

    doctor = sub.add_parser("doctor", help="check and explain what is off")
    common(doctor)
    doctor.add_argument("--data-dir")

    export = sub.add_parser(
        "export", help="write every record (memories, conversations, state, kv) as JSON lines",
        description="Export every record of the running memoryd: a header line, then one "
                    "line per record (ids, vectors, payloads as stored). Writes acknowledged "
                    "before the export starts are in it; memoryd keeps serving meanwhile.")
    common(export)
    export.add_argument("--out", default="-", metavar="FILE|-",
                        help="where to write (default -: stdout); a file appears only whole")
    export.add_argument("--json", action="store_true",
                        help="progress as JSON lines on stderr instead of a bar")

    import_ = sub.add_parser(
        "import", help="write the records of an export into the running memoryd",
        description="Import a `memoryd export` file through memoryd's journal. The header is "
                    "checked first (dimension, embedding model, kv namespaces): a file that "
                    "does not fit is refused before anything is written. Idempotent: records "
                    "keep their ids, so after Ctrl-C (or any failure) rerunning the same "
                    "command resumes, without duplicates.")
    common(import_)
    import_.add_argument("file", metavar="FILE|-", help="the export (-: stdin)")
    import_.add_argument("--json", action="store_true",
                         help="progress as JSON lines on stderr instead of a bar")
    import_.add_argument("--batch", type=int, default=256, metavar="N",
                         help="records per request (1-1000, default 256)")

    migrate = sub.add_parser(
        "migrate", help="copy a Qdrant server collection into memoryd, or memoryd onto one",
        description="Copy the memory collection and every kv namespace from a Qdrant server "
                    "into the store the running memoryd serves (--from-url), or the other "
                    "way (--to-url); then compare both sides (counts per record type, digest "
                    "of ids, payloads and vectors). Resumable: rerun the same command after "
                    "Ctrl-C or a crash. Exit status 0 verified, 3 the sides differ, 1 failed.")
    common(migrate)
    where = migrate.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-url", metavar="URL", help="the Qdrant server to copy from")
    where.add_argument("--to-url", metavar="URL", help="the Qdrant server to copy to")
    migrate.add_argument("--from-collection", "--to-collection", dest="server_collection",
                         metavar="NAME", help="the memory collection on the server "
                         "(default: memoryd's `collection`, agent_memory)")
    migrate.add_argument("--api-key", metavar="KEY",
                         help="the server's API key (default: $QDRANT_API_KEY)")
    migrate.add_argument("--json", action="store_true",
                         help="progress as JSON lines on stderr, the result as JSON on stdout")
    migrate.add_argument("--state", metavar="FILE", help="the checkpoint file (default: "
                         "migrate-state.json next to the config file)")

    reembed = sub.add_parser(
        "reembed", help="re-embed every record with another embedding model",
        description="Embed every record of the memory collection again with another model, "
                    "into a new collection, while memoryd keeps serving the old one; then "
                    "memoryd switches to it. Ctrl-C stops the job (rerun to resume). Set "
                    "embedding.provider to the new one in memoryd's config afterwards.")
    common(reembed)
    reembed.add_argument("--provider", choices=["openai", "google", "voyage", "vllm", "local",
                                                "legacy-mock"],
                         help="the new embedding provider (omit with --drop-old alone)")
    reembed.add_argument("--model", help="the new model (default: the provider's)")
    reembed.add_argument("--dimensions", type=int, help="vector size, where the model offers "
                                                        "a choice")
    reembed.add_argument("--base-url", help="the provider's endpoint (vllm, or a proxy)")
    reembed.add_argument("--drop-old", action="store_true",
                         help="delete the old collection once switched (alone: the ones "
                              "earlier re-embeddings left)")
    reembed.add_argument("--json", action="store_true",
                         help="progress as JSON lines on stderr instead of a bar")
    return parser


def _load(args: argparse.Namespace) -> Config:
    overrides = {k: getattr(args, k, None) for k in (*_CONFIG_FLAGS, "socket", "data_dir")}
    if getattr(args, "allow_model_change", None):
        overrides["embedding"] = {"allow_model_change": True}
    config, _ = load_config(getattr(args, "config", None), overrides)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        config = _load(args)
    except ConfigError as exc:
        print(f"memoryd: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(masked(config)), indent=2)
                         .decode() + "\n")
        return 0
    if args.command == "call":
        return _call(config, args)
    if args.command == "health":
        return _health(config)
    if args.command == "doctor":
        from sidecar.doctor import run

        return run(config)
    if args.command in ("export", "import"):
        from sidecar.transfer import cli as transfer

        return transfer.run(args.command, config.socket_path(), args)
    if args.command == "migrate":
        from sidecar.transfer import migrate

        return migrate.run(
            config.socket_path(), args.config, from_url=args.from_url, to_url=args.to_url,
            collection=args.server_collection or config.collection,
            api_key=args.api_key or os.environ.get("QDRANT_API_KEY"), json_out=args.json,
            state_file=args.state)
    if args.command == "reembed":
        if args.provider is None and not args.drop_old:
            print("memoryd reembed: --provider is required (or --drop-old alone)",
                  file=sys.stderr)
            return 2
        from sidecar.transfer import reembed_cli

        return reembed_cli.run(config.socket_path(), provider=args.provider, model=args.model,
                               dimensions=args.dimensions, base_url=args.base_url,
                               drop_old=args.drop_old, json_lines=args.json)
    return 2


def _serve(args: argparse.Namespace) -> int:
    import anyio

    from sidecar import lifecycle, logs
    from sidecar.server import ServeOptions, serve
    from sidecar.store.files import PRIVATE_UMASK

    # Memories on disk are for this user only: 0600 files, 0700 dirs whatever the caller's
    # umask (the engine worker inherits it and sets it again itself).
    os.umask(PRIVATE_UMASK)
    try:
        config = _load(args)
    except ConfigError as exc:
        logs.configure("INFO", "text")
        if args.spawned:
            lifecycle.announce_failed(lifecycle.StartupError("config", str(exc), 2))
        print(f"memoryd: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    parent = args.parent_pid
    if parent is None and args.spawned:
        parent = os.getppid()
    options = ServeOptions(spawned=args.spawned, parent_pid=parent, idle_exit=args.idle_exit,
                           reload=lambda: _load(args))
    return anyio.run(serve, config, options)


def _call(config: Config, args: argparse.Namespace) -> int:
    from sidecar.client import RpcError, call

    try:
        params = msgspec.json.decode(args.params) if args.params else None
    except msgspec.DecodeError as exc:
        print(f"memoryd: params are not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        result = call(config.socket_path(), args.method, params, timeout=args.timeout)
    except RpcError as exc:
        _print(exc.error)
        return 1
    except OSError as exc:
        print(f"memoryd: cannot reach memoryd at {config.socket_path()}: {exc}",
              file=sys.stderr)
        return 1
    _print(result if args.full else elide_vectors(result))
    return 0


# Keys whose value is an embedding: `embedding` (MemoryEntry) and `vector` (params, points).
_VECTOR_KEYS = frozenset({"embedding", "vector"})


def elide_vectors(node: Any) -> Any:
    """``node`` with every embedding replaced by a short note of its length (people reading
    `memoryd call` want the record, not 1536 numbers; ``--full`` keeps them)."""
    if isinstance(node, dict):
        return {k: (_elided(v) if k in _VECTOR_KEYS and _is_vector(v) else elide_vectors(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [elide_vectors(v) for v in node]
    return node


def _is_vector(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value))


def _elided(vector: list[float]) -> str:
    return f"<{len(vector)} numbers: --full shows them>"


def _print(obj: Any) -> None:
    """JSON on stdout: indented for a person at a terminal, one line for scripts."""
    data = msgspec.json.encode(obj)
    if sys.stdout.isatty():
        data = msgspec.json.format(data, indent=2)
    sys.stdout.write(data.decode() + "\n")


def _health(config: Config) -> int:
    from sidecar.client import RpcError, call

    try:
        health = call(config.socket_path(), "system.health", timeout=10)
    except (RpcError, OSError) as exc:
        print(f"memoryd: not reachable at {config.socket_path()}: {exc}", file=sys.stderr)
        return 1
    _print(health)
    return 0 if health.get("ready") else 1
