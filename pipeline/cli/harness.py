"""``newsevents demo | soak``: the whole stream on an embedded broker, and under faults."""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import fields
from pathlib import Path

import orjson

from pipeline.cli.common import add_settings, fail, load_settings
from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.ops.demo import DemoError, accounted_for, run_demo

    try:
        report = run_demo(load_settings(args), args.input, limit=args.limit, progress=not args.json,
                          log_dir=args.log_dir, stall_timeout_s=args.stall_timeout, rate=args.rate)
    except DemoError as err:
        return fail(str(err), 1)
    texts = report.pop("_events_text")
    if not args.json:
        print(f"\nThe {len(texts)} largest events:")
        for text in texts:
            print(text)
        print(f"\npublished {report['published']}, parsed {report['parsed']}, dead-lettered at parse "
              f"{report['dead_lettered']}, later {report['dead_lettered_after_parse']} {report['dead_letter_reasons'] or ''}, "
              f"event records {report['events_emitted']} in {report['events']} stories ({report['merges']} merges)")
        print(f"{report['docs_per_s']} docs/s end to end; publish→event latency p50 {report['latency_p50_ms']:.0f} ms, "
              f"p95 {report['latency_p95_ms']:.0f} ms "
              f"({'offered ' + str(report['offered_rate']) + ' docs/s' if report['offered_rate'] else 'all published at once, so this includes queueing'}); "
              f"model {report['model_version']}")
        timeline = ", ".join(f"{stage} {t:.1f} s" for stage, t in report["stage_done_s"].items())
        print(f"last output of each stage after the first publish: {timeline}; bounded by {report['bound_by']}")
        print(f"event size histogram: {report['event_sizes_plot']}; logs: {report['logs']}")
    else:
        report.pop("largest_events")
    ok = accounted_for(report)
    print(orjson.dumps(report).decode() if args.json else ("every document accounted for" if ok else "NOT ACCOUNTED"))
    return 0 if ok else 1


def cmd_soak(args: argparse.Namespace) -> int:
    from pipeline.ops.demo import default_input
    from pipeline.ops.soak import SoakError, SoakPlan, run_soak

    plan = SoakPlan(documents=args.documents, rate=args.rate, rounds=args.rounds, bad_inputs=args.bad_inputs,
                    broker_restarts_per_round=args.broker_restarts, broker_kill=not args.broker_sigterm, down_s=args.down,
                    stall_timeout_s=args.stall_timeout, seed=args.seed, broker=args.broker,
                    kill_stages=tuple(s for s in args.kill.split(",") if s))
    unknown = set(plan.kill_stages) - set(STAGE_NAMES)
    if unknown:
        return fail(f"--kill: unknown stages {sorted(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    for path in args.input or []:
        if not Path(path).exists():
            return fail(f"--input {path}: no such file or directory")
    inputs = args.input or [str(default_input())]
    settings = load_settings(args)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="newsevents-soak-"))
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its reconnect errors while the broker restarts are the test
    try:
        report = run_soak(settings, plan, inputs, work_dir,
                          progress=not args.json, say=(lambda _line: None) if args.json else print)
    except SoakError as err:
        return fail(str(err), 1)
    result = report.to_dict()
    ok = report.ok
    if not args.json:
        print("\n".join(report.lines()))
    if args.overload_seconds > 0:
        from pipeline.ops.backpressure import pressure_verdict, run_backpressure
        from pipeline.ops.broker import make_broker

        with make_broker(args.broker, log_dir=work_dir / "backpressure") as broker:
            pressure_settings = settings.replace(bootstrap_servers=broker.bootstrap_servers,
                                                 group_prefix="newsevents-backpressure")
            try:
                pressure = run_backpressure(pressure_settings, inputs, work_dir / "backpressure",
                                            overload=10.0, overload_s=args.overload_seconds, backlog=300,
                                            say=(lambda _line: None) if args.json else print)
            except SoakError as err:
                return fail(str(err), 1)
        pressure_ok = pressure_verdict(pressure, args.max_rss_growth_mb)
        ok = ok and pressure_ok
        result["backpressure"] = {**pressure.__dict__, "offered_factor": pressure.offered_factor, "ok": pressure_ok}
        if not args.json:
            print("\n".join(pressure.lines()))
            print(f"verdict    {'PASS' if pressure_ok else 'FAIL'} (lag back to 0; RSS growth under "
                  f"{args.max_rss_growth_mb:.0f} MB)")
    if args.json:
        print(orjson.dumps(result).decode())
    return 0 if ok else 1


def register(sub) -> None:
    """Add this group's commands to the ``newsevents`` sub-parsers."""
    p = sub.add_parser("demo", help="the whole pipeline on an embedded broker, with measured throughput and latency")
    p.add_argument("--input", action="append", metavar="PATH",
                   help="dir, .tar.gz or JSONL of documents (default: the contest sample in ../shared/data)")
    p.add_argument("--limit", type=int, help="publish at most N documents")
    p.add_argument("--rate", type=float, help="offered load: publish at most this many documents per second "
                   "(default: all at once, so latency includes the queue)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.add_argument("--log-dir", help="broker and worker logs go here (default: a temporary folder)")
    p.add_argument("--stall-timeout", type=float, default=300.0, help="give up after this many seconds without progress")
    add_settings(p, tuple(f.name for f in fields(Settings) if f.name != "bootstrap_servers"))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("soak", help="the stream under kill -9 of each stage, broker restarts and hostile input; "
                       "then checks nothing is lost or assigned two event ids")
    p.add_argument("--input", action="append", metavar="PATH",
                   help="dir, .tar.gz or JSONL of documents (default: the contest sample in ../shared/data)")
    p.add_argument("--documents", type=int, default=3000, help="real documents to stream")
    p.add_argument("--bad-inputs", type=int, default=2000, help="hostile inputs mixed in (pipeline/fuzz.py)")
    p.add_argument("--rate", type=float, default=25.0,
                   help="documents (and bad inputs) offered per second; keep it under what the embed worker "
                        "sustains (the teacher on 2 CPU cores: ~9/s, ~20/s with --quantize int8)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                   help="tansu (default: embedded, durable on a local S3 server) or kafka (Apache Kafka, one KRaft "
                        "node from the jars deploy/setup.sh fetched); its workers get a 10 s session on Kafka")
    p.add_argument("--rounds", type=int, default=2, help="fault rounds: each kills every --kill stage once")
    p.add_argument("--kill", default=",".join(STAGE_NAMES), help="stages to kill -9 in each round (comma list)")
    p.add_argument("--broker-restarts", type=int, default=1, help="broker restarts per round")
    p.add_argument("--broker-sigterm", action="store_true",
                   help="stop the broker with SIGTERM before restarting it (default: SIGKILL)")
    p.add_argument("--down", type=float, default=2.0, help="seconds a killed process stays down")
    p.add_argument("--stall-timeout", type=float, default=180.0, help="give up after this many seconds without progress")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overload-seconds", type=float, default=10.0,
                   help="then offer the embed worker 10x what it sustains for this long and check its memory and "
                        "lag (0: skip)")
    p.add_argument("--max-rss-growth-mb", type=float, default=1024.0, help="embed worker memory growth allowed then")
    p.add_argument("--work-dir", help="broker storage, cluster state and logs (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_settings(p, tuple(f.name for f in fields(Settings) if f.name not in ("bootstrap_servers", "cluster_state_dir")))
    p.set_defaults(func=cmd_soak)
