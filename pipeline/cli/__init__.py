"""``newsevents``: one command line for every job. ``newsevents COMMAND --help`` describes each.

This module only gathers the command groups (faust-cli style): each module of ``pipeline.cli`` adds its commands
with ``register(sub)`` and holds their argument parsing and printing; the work is done by library functions.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline.cli import harness, quality, stream, students, teacher
from pipeline.cli.common import fail

GROUPS = (stream, harness, quality, teacher, students)  # the order `newsevents --help` lists commands in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsevents", description="Streaming news event detection on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("NEWSEVENTS_LOGLEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no weight-loading reports in worker logs
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local folders only
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad settings or files: a message, not a traceback
        return fail(str(err))
    except KeyboardInterrupt:
        return 130
