"""``newsevents broker | topics | publish | worker | run | events``: the stream and its broker."""

from __future__ import annotations

import argparse
import signal
import sys
import time

import orjson

from pipeline.cli.common import KAFKA_SETTINGS, add_settings, fail, load_settings
from pipeline.flow import STAGE_NAMES


def cmd_broker(args: argparse.Namespace) -> int:
    from pipeline.kafka.topics import ensure_topics
    from pipeline.ops.broker import BrokerError, make_broker

    try:
        broker = make_broker(args.engine, port=args.port, durable_dir=args.durable, log_dir=args.log_dir).start()
    except BrokerError as err:
        return fail(str(err), 1)
    try:
        settings = load_settings(args).replace(bootstrap_servers=broker.bootstrap_servers)
        if not args.no_topics:
            ensure_topics(settings)
        storage = f"durable in {args.durable}" if args.durable else "in memory"
        name = {"tansu": "tansu (embedded)", "kafka": "Apache Kafka (KRaft, one node)"}[broker.engine]
        print(f"{name} listening on {broker.bootstrap_servers} ({storage}); Ctrl-C stops it", flush=True)
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop and all(p.poll() is None for p in broker.processes):
            time.sleep(0.5)
        dead = [p.args[0] for p in broker.processes if p.poll() is not None]
        return fail(f"{dead} exited") if dead and not stop else 0
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.kafka.clients import require_broker
    from pipeline.kafka.topics import ensure_topics

    settings = load_settings(args)
    require_broker(settings)
    for line in ensure_topics(settings):
        print(line)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.kafka.clients import require_broker
    from pipeline.kafka.publish import publish
    from pipeline.kafka.topics import ensure_topics

    missing = [path for path in args.paths if not Path(path).exists()]
    if len(missing) == len(args.paths):  # local inputs first: nothing to publish, no broker needed to say so
        return fail("; ".join(f"{path}: no such file or directory" for path in missing), 1)
    settings = load_settings(args)
    require_broker(settings)
    # its topic with the pipeline's partitions: Kafka would wait for one that is not there (auto-creation off)
    # or create it with its own default partition count (on)
    ensure_topics(settings, only=(settings.raw_topic,))
    summary = publish(settings, args.paths, crawl=args.crawl, limit=args.limit, progress=not args.quiet,
                      rate=args.rate)
    for problem in summary.problems[:50]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(summary.problems) > 50:
        print(f"... and {len(summary.problems) - 50} more", file=sys.stderr)
    for line in summary.lines():
        print(line)
    return 0 if summary.published else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.kafka.worker import run_worker

    run_worker(load_settings(args), args.stage, loglevel=args.loglevel)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.kafka.clients import BrokerUnavailable, require_broker
    from pipeline.kafka.stages import STAGES
    from pipeline.models import served_model
    from pipeline.ops.supervise import CrashLoop, Workers, run_supervised

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        return fail(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    settings = load_settings(args)
    if "embed" in stages:
        served_model(settings)
    try:
        require_broker(settings, timeout_s=1.0)
    except BrokerUnavailable as err:  # workers wait for it and reconnect: a note, not an error
        print(f"newsevents: note: {str(err).split(';')[0]}; the workers will keep trying", file=sys.stderr)
    stop: list[str] = []
    for signum in (signal.SIGTERM, signal.SIGINT):  # both: stop every worker within the grace period
        signal.signal(signum, lambda n, _frame: stop.append(signal.Signals(n).name))
    workers = Workers(settings, stages, log_dir=args.log_dir, replicas=args.replicas).start()
    described = ", ".join(f"{name} (pid {proc.pid}" + (f", :{workers.children[name].port}" if
                                                        workers.children[name].port else "") + ")"
                          for name, proc in workers.processes.items())
    print(f"running {described} against {settings.bootstrap_servers}; Ctrl-C stops", flush=True)
    try:
        run_supervised(workers, lambda: bool(stop), lambda line: print(line, flush=True))
    except CrashLoop as err:
        return fail(str(err), 1)
    print(f"stopped every worker ({stop[0] if stop else 'done'})", flush=True)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from pipeline.kafka.clients import require_broker
    from pipeline.kafka.reader import EventBook, decode, format_event, iter_records, iter_to_end, make_reader
    from pipeline.records import EventAssignment, EventMerge

    settings = load_settings(args)
    require_broker(settings)
    reader = make_reader(settings, [settings.events_topic, settings.merges_topic])
    book = EventBook()
    try:
        records = (iter_records(reader, idle_timeout_s=None) if args.follow  # to the end, or quiet on tansu
                   else iter_to_end(settings, reader, args.idle_timeout))
        for record in records:
            item = decode(record)
            if isinstance(item, EventMerge):
                book.add_merge(item)
                if args.json or args.follow:
                    print(orjson.dumps(item.to_dict()).decode() if args.json
                          else f"{item.event_id}  merged into {item.into}", flush=True)
                continue
            if not isinstance(item, EventAssignment):
                continue
            book.add(item)
            if args.json:
                print(orjson.dumps(item.to_dict()).decode(), flush=True)
            elif args.follow:
                story = book.story(item.event_id)
                size = sum(1 for a in book.by_doc.values() if book.story(a.event_id) == story)
                print(f"{item.event_id}  size {size:>4}  {item.title[:100]}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    if not args.json and not args.follow:
        events = book.events()
        print(f"{len(book.by_doc)} documents in {len(events)} stories ({len(book.merged_into)} merges); "
              f"the {min(args.top, len(events))} largest:")
        for summary in events[:args.top]:
            print(format_event(summary))
    return 0


def register(sub) -> None:
    """Add this group's commands to the ``newsevents`` sub-parsers."""

    p = sub.add_parser("broker", help="run a broker on 127.0.0.1: the embedded tansu, or Apache Kafka")
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                   help="tansu (default: embedded, starts in milliseconds) or kafka (Apache Kafka, one KRaft node "
                        "from the jars deploy/setup.sh fetched; starts in seconds)")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--durable", metavar="DIR", help="keep topics and offsets in DIR across restarts (tansu: on a "
                   "local S3 server; kafka: its log folder)")
    p.add_argument("--log-dir", help="write the broker's logs here")
    p.add_argument("--no-topics", action="store_true", help="do not create the pipeline's topics")
    add_settings(p, KAFKA_SETTINGS)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="create and check every topic (partitions, retention, max message size)")
    add_settings(p, KAFKA_SETTINGS + ("retention_ms", "replication_factor"))
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("publish", help="publish HTML files, directories, .tar.gz archives or JSONL to the raw topic")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--crawl", default="", help="label carried in the 'crawl' header")
    p.add_argument("--limit", type=int, help="publish at most N documents")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rate", type=float, help="publish at most this many documents per second")
    add_settings(p, KAFKA_SETTINGS)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("worker", help="run one stage's worker (a consumer group member) until SIGTERM")
    p.add_argument("stage", choices=list(STAGE_NAMES))
    p.add_argument("--loglevel", default="warning")
    add_settings(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("run", help="run workers for several stages as child processes")
    p.add_argument("--stages", default=",".join(STAGE_NAMES), help="comma-separated: " + ",".join(STAGE_NAMES))
    p.add_argument("--replicas", type=int, default=1, help="workers per stage (cluster: extra ones stand by)")
    p.add_argument("--log-dir", help="worker logs go here (default: discarded)")
    add_settings(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("events", help="read the events topic as event summaries")
    p.add_argument("--json", action="store_true", help="one JSON assignment per line")
    p.add_argument("--follow", action="store_true", help="keep reading new assignments")
    p.add_argument("--top", type=int, default=20, help="how many of the largest events to print")
    p.add_argument("--idle-timeout", type=float, default=5.0,
                   help="stop after this many seconds without a record (tansu; on Kafka: at the topics' end)")
    add_settings(p, KAFKA_SETTINGS)
    p.set_defaults(func=cmd_events)
