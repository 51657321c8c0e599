"""Configuration: one msgspec Struct, built once and handed down.

Sources, lowest to highest precedence: defaults, a TOML file (``--config``, default
``$XDG_CONFIG_HOME/memoryd/config.toml``), environment variables ``MEMORYD_<KEY>`` (a nested
key joins with ``__``: ``MEMORYD_EMBEDDING__PROVIDER``), command-line flags. Nothing else in
memoryd reads the environment for settings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from loguru import logger
from msgspec import Meta

PositiveInt = Annotated[int, Meta(ge=1)]
NonNegFloat = Annotated[float, Meta(ge=0)]
# A collection's name is also a directory under the embedded store's data dir: no separator,
# no control character, not "." or ".." (what keeps paths inside it; Qdrant forbids more).
CollectionName = Annotated[str, Meta(min_length=1, max_length=255,
                                     pattern=r"^(?!\.\.?\Z)[^/\\\x00-\x1f]+\Z")]
Uid = Annotated[int, Meta(ge=0)]

SECRET_KEYS = frozenset({"api_key", "qdrant_api_key"})


class ConfigError(Exception):
    """Invalid configuration; the message names the key. memoryd exits with status 2."""


class EmbeddingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # None = the local model when installed, else none (callers must send vectors).
    provider: (
        Literal["openai", "google", "voyage", "vllm", "local", "legacy-mock", "none"] | None
    ) = None
    model: str | None = None
    dimensions: PositiveInt | None = None
    api_key: str | None = None
    base_url: str | None = None
    cache_size: Annotated[int, Meta(ge=0)] = 1000
    allow_model_change: bool = False


class RerankerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = False
    provider: Literal["voyage", "vllm"] = "voyage"
    model: str | None = None
    api_key: str | None = None
    base_url: str | None = None


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # -- socket and process
    socket: str | None = None  # None = $XDG_RUNTIME_DIR/memoryd/memoryd.sock or /tmp/memoryd-$UID/
    data_dir: str | None = None  # None = $XDG_DATA_HOME/memoryd
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    allowed_uids: list[Uid] = []
    # -- limits (reloadable)
    max_line_bytes: Annotated[int, Meta(ge=1024)] = 16 * 1024 * 1024
    max_in_flight: PositiveInt = 256
    # Memory is bounded per connection and in total (README, Reliability): a connection stops
    # being read while this many of its requests (batch items count) are unanswered or unsent;
    max_connection_in_flight: PositiveInt = 64
    max_batch: PositiveInt = 1000  # requests in one JSON-RPC batch; more = invalid_request
    max_connections: PositiveInt = 512  # beyond: one `overloaded` line, then closed
    # unfinished request lines held across all connections; the one that would exceed it is
    # answered `overloaded` and closed
    max_buffered_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    # replies waiting for clients to read them, across all connections; beyond, a
    # connection holding more than 1 MiB of them is closed (its client is not reading)
    max_unsent_bytes: Annotated[int, Meta(ge=1024 * 1024)] = 256 * 1024 * 1024
    # seconds an unfinished line may go without a line completing on its connection (while
    # memoryd reads it): beyond, the connection is closed and its budget share given back
    line_timeout: Annotated[float, Meta(gt=0)] = 30.0
    drain_timeout: NonNegFloat = 10.0
    # -- store
    collection: CollectionName = "agent_memory"
    default_namespace: Annotated[str, Meta(min_length=1)] = "default"
    dimension: PositiveInt | None = None
    qdrant_url: str | None = None  # set = Qdrant server/cluster; unset = embedded engine
    # A directory: qdrant-client local mode (used when qdrant_url is unset). For tests and
    # development, not a production store.
    qdrant_path: str | None = None
    qdrant_api_key: str | None = None
    qdrant_grpc: bool = False
    shard_number: PositiveInt = 1
    replication_factor: PositiveInt = 1
    write_consistency_factor: PositiveInt = 1
    # -- deadlines per operation class, milliseconds
    read_timeout_ms: PositiveInt = 10_000
    write_timeout_ms: PositiveInt = 30_000
    admin_timeout_ms: PositiveInt = 120_000
    # -- search: the default `mode` of the searches that take one (dense = legacy-exact)
    search_mode: Literal["dense", "hybrid"] = "dense"
    # pause between batches of the lexical backfill (legacy memories gaining BM25 vectors)
    lexical_backfill_pause_ms: Annotated[int, Meta(ge=0, le=60_000)] = 10
    # pause between pages (128 records) of a re-embedding (`memoryd reembed`)
    reembed_pause_ms: Annotated[int, Meta(ge=0, le=60_000)] = 5
    # -- background work
    sweep_interval: NonNegFloat = 600.0  # seconds; 0 = off
    # -- key/value space (kv.*): largest value, measured as encoded JSON
    kv_max_value_bytes: Annotated[int, Meta(ge=1, le=64 * 1024 * 1024)] = 1024 * 1024
    # most namespaces that may exist: on the embedded engine each open one is a worker process
    kv_max_namespaces: Annotated[int, Meta(ge=1, le=1024)] = 8
    # -- durability: the write journal under <data dir>/journal (see sidecar/journal/)
    journal: bool = True  # false only to measure its cost: writes then go straight to the store
    journal_max_bytes: Annotated[int, Meta(ge=64 * 1024)] = 256 * 1024 * 1024
    # -- store resilience (see sidecar/resilience.py)
    store_retries: Annotated[int, Meta(ge=0, le=20)] = 3  # retries after the first attempt
    store_retry_base_ms: PositiveInt = 50
    store_retry_max_ms: PositiveInt = 2000  # also the replayer's longest pause between tries
    breaker_failures: PositiveInt = 5  # consecutive transient failures that open the breaker
    breaker_failure_rate: Annotated[float, Meta(gt=0, le=1)] = 0.5  # ... or this share
    breaker_window: Annotated[float, Meta(gt=0)] = 30.0  # seconds the rate is measured over
    breaker_min_calls: PositiveInt = 20  # calls in the window before the rate counts
    breaker_open_seconds: Annotated[float, Meta(gt=0)] = 5.0  # open this long, then one probe
    # -- embedding / reranking
    embedding: EmbeddingConfig = EmbeddingConfig()
    reranker: RerankerConfig = RerankerConfig()

    def __post_init__(self) -> None:
        if self.max_buffered_bytes < self.max_line_bytes:
            # a longest line must fit, or it would be refused as `overloaded` on an idle server
            raise ValueError("max_buffered_bytes must be at least max_line_bytes")

    # ---- derived paths
    def socket_path(self) -> Path:
        if self.socket:
            return Path(self.socket).expanduser()
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime:
            return Path(runtime) / "memoryd" / "memoryd.sock"
        return Path(f"/tmp/memoryd-{os.getuid()}") / "memoryd.sock"

    def data_path(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "memoryd"


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "memoryd" / "config.toml"


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``MEMORYD_*`` variables as a nested dict of raw strings (converted later)."""
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("MEMORYD_") or name == "MEMORYD_CONFIG":
            continue
        path = name[len("MEMORYD_"):].lower().split("__")
        if not _is_setting(path):
            # Other tools share the prefix (MEMORYD_BIN, ...): a variable that names no
            # setting is not ours to refuse. Typos in the config file are still errors.
            logger.warning("ignoring environment variable {}: no such setting", name)
            continue
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another")
        node[path[-1]] = _parse_env_value(value)
    return layer


def _is_setting(path: list[str]) -> bool:
    fields: tuple[str, ...] = Config.__struct_fields__
    if path[0] not in fields:
        return False
    sub = {"embedding": EmbeddingConfig, "reranker": RerankerConfig}.get(path[0])
    return sub is None or len(path) != 2 or path[1] in sub.__struct_fields__


def _parse_env_value(value: str) -> Any:
    """Numbers, booleans and JSON lists in env vars; everything else stays a string."""
    if value.strip().startswith("["):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, Path | None]:
    """Build the effective Config. Returns it with the file it read (or None)."""
    environ = os.environ if environ is None else environ
    explicit = config_file is not None or "MEMORYD_CONFIG" in environ
    path = Path(config_file or environ.get("MEMORYD_CONFIG") or default_config_file())
    merged: dict[str, Any] = {}
    used: Path | None = None
    if path.exists():
        try:
            merged = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        used = path
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    merged = _merge(merged, _env_layer(environ))
    merged = _merge(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # strict=False lets env strings such as "5" or "true" convert to int / bool.
        return msgspec.convert(merged, Config, strict=False), used
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config: {_config_message(exc)}") from None


def _config_message(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.embedding.provider`"; show the key as a dotted name.
    text = str(exc)
    return text.replace("`$.", "`").replace("- at", "at key")


def masked(config: Config) -> dict[str, Any]:
    """The config as a dict with every secret replaced by ``"***"``."""

    def mask(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ("***" if k in SECRET_KEYS and v else mask(v)) for k, v in node.items()
            }
        return node

    return mask(msgspec.to_builtins(config))
