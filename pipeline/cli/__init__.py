"""``newsevents``: one command line for every job. ``newsevents COMMAND --help`` describes each.

This module only gathers the command groups (faust-cli style): each module of ``pipeline.cli`` adds its commands
with ``register(sub)`` and holds their argument parsing and printing; the work is done by library functions.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.cli import harness, quality, stream, students, teacher
from pipeline.cli.common import SERVICE_SETTINGS, add_settings, fail, load_settings
from pipeline.kafka.clients import BrokerUnavailable, broker_unavailable
from pipeline.logs import configure_logging

GROUPS = (stream, harness, quality, teacher, students)  # the order `newsevents --help` lists commands in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsevents", description="Streaming news event detection on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    for command in _leaf_parsers(parser):
        add_settings(command, SERVICE_SETTINGS)  # --log-format, --verbose everywhere
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for action in subs for child in dict.fromkeys(action.choices.values()) for leaf in _leaf_parsers(child)]


def main(argv: list[str] | None = None) -> int:
    level = os.environ.get("NEWSEVENTS_LOGLEVEL", "WARNING")
    configure_logging(level=level)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no weight-loading reports in worker logs
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local folders only
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
        configure_logging(settings.log_format, settings.verbose, level)
        return args.func(args)
    except ValueError as err:  # bad settings or files: a message, not a traceback
        return fail(str(err))
    except BrokerUnavailable as err:
        return fail(str(err), 1)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from kafka.errors import KafkaError

        if isinstance(err, KafkaError):  # a broker that went away mid-command: one line, not a traceback
            return fail(str(broker_unavailable(load_settings(args), f"{type(err).__name__}: {err}")), 1)
        raise
