"""What every command module shares: settings as flags, loading them, and the one error format."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from pipeline.config import Settings

SETTING_HELP = {
    "bootstrap_servers": "Kafka bootstrap servers, host:port[,host:port] (env KAFKA_BOOTSTRAP_SERVERS)",
    "model_dir": "Hugging Face model folder the embed stage serves (default: the provisioned teacher)",
    "device": "auto, cpu or cuda[:N]",
    "quantize": "'int8' for dynamic int8 on CPU",
    "threshold": "clustering threshold: mean cosine similarity to an event's members, in the centred space "
                 "(0 = the served model's tuned one)",
    "centring": "none, global or language: the mean subtracted before linking (a running mean over the window)",
    "merge_events": "true/false: merge two live events whose average link reaches merge_threshold",
    "merge_threshold": "average link at which two live events merge (0 = the clustering threshold)",
    "metrics_port": "serve /metrics and /healthz on this port (run: the first worker's; the next get +1, +2 ...); "
                    "0 = off",
    "shutdown_timeout_s": "SIGTERM: stop within this many seconds, broker or not (default 30)",
    "log_format": "text or json (one JSON object per line)",
    "verbose": "also show the Kafka client libraries' own log lines",
}
SERVICE_SETTINGS = ("log_format", "verbose")  # every command takes these
KAFKA_SETTINGS = ("bootstrap_servers", "raw_topic", "docs_topic", "vectors_topic", "events_topic", "dlq_topic",
                  "merges_topic",
                  "partitions", "max_message_bytes", "max_html_bytes")


def add_settings(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    group = parser.add_argument_group("settings (also NEWSEVENTS_<NAME> environment variables or --config FILE)")
    if "--config" not in parser._option_string_actions:
        group.add_argument("--config", help="TOML file of settings (env NEWSEVENTS_CONFIG)")
    for f in fields(Settings):
        if only is not None and f.name not in only:
            continue
        type_name = f.type if isinstance(f.type, str) else f.type.__name__
        names = ["--" + f.name.replace("_", "-")]
        if names[0] in parser._option_string_actions:
            continue
        help_text = SETTING_HELP.get(f.name, f"default {f.default!r}")
        if type_name == "bool" and not f.default:  # off by default: a switch
            group.add_argument(*names, dest=f.name, action="store_true", default=None, help=help_text)
            continue
        if f.name == "model_dir" and "--model" not in parser._option_string_actions:
            names.append("--model")  # the short spelling users reach for
        kind = {"int": int, "float": float, "bool": _flag_bool}.get(type_name, str)  # on by default: true/false
        group.add_argument(*names, dest=f.name, type=kind, default=None, help=help_text)


def _flag_bool(raw: str) -> bool:
    if raw.strip().lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise argparse.ArgumentTypeError(f"{raw!r} is not true or false")
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return Settings.load(getattr(args, "config", None), overrides)


def fail(message: str, code: int = 2) -> int:
    print(f"newsevents: error: {message}", file=sys.stderr)
    return code
