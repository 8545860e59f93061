"""Settings: the one place that reads configuration.

Precedence, lowest first: defaults here → a TOML file (``--config FILE`` or ``NEWSEVENTS_CONFIG``) →
environment (``NEWSEVENTS_<FIELD>``, plus ``KAFKA_BOOTSTRAP_SERVERS``) → command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.flow.centring import CENTRING_MODES
from pipeline.flow.cluster import ClusterConfig

ENV_PREFIX = "NEWSEVENTS_"
LOG_FORMATS = ("text", "json")


def default_home() -> Path:
    return Path(os.environ.get("NEWSEVENTS_HOME", Path.home() / ".cache" / "newsevents"))


@dataclass(frozen=True)
class Settings:
    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    group_prefix: str = "newsevents"
    raw_topic: str = "news.raw"
    docs_topic: str = "news.docs"
    vectors_topic: str = "news.vectors"
    events_topic: str = "news.events"
    dlq_topic: str = "news.dlq"
    merges_topic: str = "news.event-merges"  # compacted: absorbed event id → the event it merged into
    control_topic: str = "news.control"  # model promotions for the embed workers
    partitions: int = 4  # raw, docs, events: the parse and embed stages scale out to this many workers
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    max_message_bytes: int = 4 * 1024 * 1024  # the broker limit; publish refuses larger documents up front
    session_timeout_s: float = 0.0  # consumer group session; 0: the broker's (tansu 6 s, Kafka 45 s: clients.py)
    # parse
    max_html_bytes: int = 2 * 1024 * 1024
    parse_batch_size: int = 256
    parse_max_wait_s: float = 0.2
    # embed
    model_dir: str = ""  # empty: pipeline.models.served_model decides (promoted, shipped student, teacher)
    device: str = "auto"  # auto = cuda when present, else cpu
    quantize: str = ""  # "int8": dynamic int8 on CPU
    max_length: int = 256  # tokens
    max_chars: int = 1500  # characters kept before tokenising
    embed_batch_size: int = 64
    embed_max_wait_s: float = 0.5
    threads: int = 0  # torch CPU threads; 0 = torch default
    # cluster (defaults are the clusterer's own)
    threshold: float = 0.0  # 0: pipeline.flow.cluster.DEFAULT_THRESHOLD (tuned for the default model)
    neighbours: int = ClusterConfig.neighbours
    bucket_hours: float = ClusterConfig.bucket_hours
    window_hours: float = ClusterConfig.window_hours
    hnsw_m: int = ClusterConfig.hnsw_m
    hnsw_ef_construction: int = ClusterConfig.hnsw_ef_construction
    hnsw_ef: int = ClusterConfig.hnsw_ef
    centring: str = ""  # none | global | language: the space the stream links in ("": the model's own, else language)
    merge_events: bool = ClusterConfig.merge_events
    merge_threshold: float = 0.0  # average link at which two live events merge; 0: the cluster threshold
    cluster_batch_size: int = 256
    cluster_max_wait_s: float = 0.2
    cluster_state_dir: str = ""  # snapshots + write-ahead log; empty: <home>/state/<group_prefix>-cluster
    snapshot_every_docs: int = 50_000  # new decisions between snapshots (the log replays at most this many)
    snapshot_every_s: float = 300.0
    # running it as a service (README, *Running it as a service*)
    shutdown_timeout_s: float = 30.0  # SIGTERM → exit within this, broker or not; then `run` sends SIGKILL
    restart_limit: int = 5  # `run` gives up on a worker that exits more often than this ...
    restart_window_s: float = 300.0  # ... within this many seconds (a crash loop)
    metrics_port: int = 0  # a worker's /metrics and /healthz; `run`: the first worker's, the next get +1, +2 ...; 0: off
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container
    log_format: str = "text"  # or "json": one object per line
    verbose: bool = False  # the Kafka client libraries' own logs too
    # local state
    home: str = str(default_home())

    def __post_init__(self) -> None:
        if self.centring and self.centring not in CENTRING_MODES:
            raise ValueError(f"centring must be one of {', '.join(CENTRING_MODES)}, not {self.centring!r}")

    @property
    def cluster_options(self) -> dict[str, Any]:
        """The ClusterConfig fields these settings choose, threshold and dimension apart."""
        return {"neighbours": self.neighbours, "bucket_hours": self.bucket_hours, "window_hours": self.window_hours,
                "hnsw_m": self.hnsw_m, "hnsw_ef_construction": self.hnsw_ef_construction, "hnsw_ef": self.hnsw_ef,
                "centring": self.centring or ClusterConfig.centring, "merge_events": self.merge_events,
                "merge_threshold": self.merge_threshold or None}

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def cluster_state_path(self) -> Path:
        return Path(self.cluster_state_dir) if self.cluster_state_dir else (
            self.home_path / "state" / f"{self.group_prefix}-cluster")

    @property
    def teacher_dir(self) -> Path:
        return teacher_dir_in(self.home_path)

    @property
    def registry_dir(self) -> Path:
        return self.home_path / "registry"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
             environ: dict[str, str] | None = None) -> "Settings":
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ValueError(f"config file {path} does not exist")
            with open(path, "rb") as f:
                raw = tomllib.load(f)
            raw = raw.get("newsevents", raw)
            unknown = set(raw) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
            values.update(raw)
        if "KAFKA_BOOTSTRAP_SERVERS" in environ:
            values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in environ:
                values[f.name] = _coerce(f.type, environ[key], key)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        settings = cls(**values)
        if settings.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format {settings.log_format!r}: use one of {', '.join(LOG_FORMATS)}")
        return settings


def _coerce(type_name: Any, raw: str, where: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError:
        raise ValueError(f"{where}={raw!r} is not a valid {kind}") from None
    return raw


def teacher_dir_in(home: Path) -> Path:
    """Where the default teacher (multilingual-e5-small) is provisioned under a newsevents home: the one spelling."""
    return Path(home) / "models" / "multilingual-e5-small"
