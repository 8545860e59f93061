"""``newsevents students train | ship | evaluate | promote | list`` and ``newsevents retrain``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import orjson

from pipeline.cli.common import add_settings, fail, load_settings


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
    teacher_folder = args.teacher_model or str(provision_e5(settings.teacher_dir))
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
    from pipeline.ops.compare import compare_encoders

    settings = load_settings(args)
    for path in [args.pairs, *args.input, *args.model, *filter(None, [args.teacher_labels])]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    rows, timed = compare_encoders(settings, args.pairs, args.input, args.teacher, args.model,
                                   teacher_labels=args.teacher_labels, skip_teacher_f1=args.skip_teacher_f1,
                                   speed_docs=args.speed_docs, batch_size=args.batch_size, progress=not args.json)
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    print(f"{'':<10} {'stream F1':>9} {'batch F1':>9} {'threshold':>9} {'centring':>9} {'docs/s':>8} {'speedup':>8} "
          f"{'MB':>7}  model")
    for row in rows:
        print(f"{row['role']:<10} {row.get('stream_f1', float('nan')):>9.3f} {row.get('batch_f1', float('nan')):>9.3f} "
              f"{row['threshold']:>9.3f} {row['centring']:>9} {row['docs_per_s']:>8.1f} "
              f"{row['speedup_vs_teacher']:>7.1f}x {row['size_mb']:>7.1f}  {row['model_version']}")
    print("each model at its best threshold and centring of one sweep (pipeline.evaluate.threshold_sweep)")
    print(f"speed: {timed} documents, batch {args.batch_size}, {rows[0]['threads']} threads, {rows[0]['device']}")
    return 0


def cmd_students_ship(args: argparse.Namespace) -> int:
    from pipeline.models import SHIPPED_STUDENT, load_encoder
    from pipeline.ops.demo import DEFAULT_INPUT
    import shutil

    from students.evaluation import CENTRINGS, DevPairEvaluator
    from students.release import (release_record, settle_release, ship, smallest_release_mb, staged_release,
                                  teacher_documents)

    settings = load_settings(args)
    pairs = args.pairs or str(DEFAULT_INPUT.parents[1] / "eval" / "dev_pairs.tsv")
    inputs = args.input or [str(DEFAULT_INPUT)]
    for path in [args.model, pairs, *inputs, *filter(None, [args.teacher_labels])]:
        if not Path(path).exists():
            return fail(f"no such file or directory: {path}")
    if not (Path(args.model) / "training.json").exists():
        return fail(f"{args.model} is not a trained student folder (no training.json)")
    evaluator = DevPairEvaluator(pairs, inputs, settings.max_chars, centrings=CENTRINGS)
    teacher = None if args.teacher_labels else load_encoder(
        settings.teacher_dir if args.teacher == "e5" else Path(args.teacher), max_length=settings.max_length,
        threads=settings.threads or None)
    destination = Path(args.to) if args.to else SHIPPED_STUDENT
    staging = staged_release(Path(args.model), destination.with_name(destination.name + ".staging"))
    try:
        least_mb = smallest_release_mb(staging)
        if least_mb > args.max_mb:  # before the scoring, which takes minutes
            return fail(f"{args.model} ships as {least_mb} MB at least, over --max-mb {args.max_mb}")
        record = release_record(staging, evaluator, teacher_documents(evaluator, args.teacher_labels, teacher),
                                bar=args.bar, reproduce=args.reproduce or "")
        settle_release(staging, record)
        if record["size_mb"] > args.max_mb:
            return fail(f"{args.model} is {record['size_mb']} MB, over --max-mb {args.max_mb}")
        ship(staging, destination, record)
    except ValueError as err:
        return fail(str(err))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if args.json:
        print(json.dumps(record))
        return 0
    for name in ("student", "teacher_centred", "teacher_raw"):
        s = record[name]
        print(f"{name:<16} stream F1 {s['stream_f1']:.4f} (batch {s['batch_f1']:.4f}) at {s['threshold']:.2f} "
              f"{s['centring']:<8}  {s['model_version']}")
    if record["quantisation"]:
        q = record["quantisation"]
        print(f"int8 (ONNX Runtime) {q['int8_stream_f1']:.4f} vs fp32 {q['fp32_stream_f1']:.4f}, cosine "
              f"{q['cosine_int8_to_fp32_mean']:.4f} (min {q['cosine_int8_to_fp32_min']:.4f}): serves {record['runtime']}")
    verdict = "served by default" if record["serve_by_default"] else (
        f"not served by default (more than {record['bar']} under the teacher; --model-dir serves it)")
    print(f"shipped {record['size_mb']} MB to {destination}: gap {record['gap']:+.4f}, {verdict}")
    return 0


def cmd_students_promote(args: argparse.Namespace) -> int:
    from pipeline.gate import MANUAL
    from pipeline.ops.promotion import register_and_announce

    settings = load_settings(args)
    if not (Path(args.model) / "config.json").exists():
        return fail(f"{args.model} is not a model folder (no config.json)")
    report = register_and_announce(settings, Path(args.model), rule=MANUAL, name=args.name,
                                   register=not args.no_register, announce=not args.registry_only)
    print(f"promoted {report['model_version']} ({report['registered']}) in {report['registry']} ({MANUAL})")
    if "announce_error" in report:
        return fail(f"the registry says {report['model_version']}, but announcing it on {settings.control_topic} at "
                    f"{settings.bootstrap_servers} failed ({report['announce_error']}); rerun to announce it", 1)
    if report["announced"]:
        print(f"announced on {settings.control_topic}: running embed workers switch before their next batch")
    return 0


def cmd_students_list(args: argparse.Namespace) -> int:
    from pipeline.models import model_version, read_cluster_space
    from students.registry import Registry

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
        threshold, centring = read_cluster_space(folder)
        print(f"{mark} {folder.name:<5} {version:<48} threshold {threshold:.3f} ({centring or 'untuned'})  "
              f"dev F1 {f1 if f1 is not None else '-'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from pipeline.ops.demo import DEFAULT_INPUT
    from pipeline.ops.retrain import RetrainError, RetrainOptions, retrain
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


def register(sub) -> None:
    """``students …`` and the top-level ``retrain``, in the order ``--help`` lists them."""
    students = sub.add_parser("students", help="students: distil, evaluate, promote a small fast embedder")
    ssub = students.add_subparsers(dest="students_command", required=True, metavar="COMMAND")
    _add_train(ssub)
    _add_retrain(sub)
    _add_ship(ssub)
    _add_evaluate(ssub)
    _add_promote(ssub)
    _add_list(ssub)


def _add_train(ssub) -> None:
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
                                                       "static-cnn", "teacher-cut"])
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
    p.add_argument("--max-tokens", type=int, help="pieces the student reads (the labels' token ids are cut to it)")
    p.add_argument("--kept-layers", help="teacher-cut: bottom-K, spread-K (keeps the top layer) or e.g. 0,5,11")
    p.add_argument("--train-embeddings", action="store_true", default=None,
                   help="teacher-cut: train the piece rows too (default: frozen at the teacher's)")
    p.add_argument("--head-fit-docs", type=int, help="teacher-cut: documents the ridge-fitted head starts from")
    p.add_argument("--schedule", choices=["plateau", "one-cycle"])
    p.add_argument("--warmup", type=float, help="one-cycle: share of all steps spent warming up")
    p.add_argument("--checkpoint-every", type=int, help="steps between mid-epoch checkpoints (0: per epoch only)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings(p, ("home", "device", "threads"))
    p.set_defaults(func=cmd_students_train)


def _add_retrain(sub) -> None:
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


def _add_ship(ssub) -> None:
    from students.release import DEFAULT_BAR

    p = ssub.add_parser("ship", help="score a student beside the centred teacher on the dev pairs and ship it in "
                                     "students/default (served by default only within --bar of the teacher)")
    p.add_argument("model", help="the trained student folder (a `students train` run's model/)")
    p.add_argument("--teacher", default="e5", help="'e5' or a teacher folder, encoded now (slow on CPU)")
    p.add_argument("--teacher-labels", help="teacher labels of the dev documents instead (`teacher label` folder)")
    p.add_argument("--pairs", help="dev pairs (default: ../shared/data/eval/dev_pairs.tsv)")
    p.add_argument("--input", action="append", metavar="PATH", help="the pairs' documents (default: contest sample)")
    p.add_argument("--bar", type=float, default=DEFAULT_BAR,
                   help=f"F1 the student may be under the centred teacher (default {DEFAULT_BAR})")
    p.add_argument("--max-mb", type=float, default=50.0,
                   help="refuse a student folder larger than this (default 50: a cut student is 36-50 MB)")
    p.add_argument("--to", help="destination folder (default: students/default in this checkout)")
    p.add_argument("--reproduce", help="the command that reproduces the student, recorded in release.json")
    p.add_argument("--json", action="store_true")
    add_settings(p, ("home", "threads", "max_chars", "max_length"))
    p.set_defaults(func=cmd_students_ship)


def _add_evaluate(ssub) -> None:
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


def _add_promote(ssub) -> None:
    p = ssub.add_parser("promote", help="register a model folder and make running embed workers switch to it")
    p.add_argument("model", help="model folder (a trained student's model/)")
    p.add_argument("--name", default="student", help="registry name")
    p.add_argument("--no-register", action="store_true", help="promote the folder in place, without copying it")
    p.add_argument("--registry-only", action="store_true", help="record the promotion, do not announce it on Kafka")
    add_settings(p, ("home", "bootstrap_servers", "control_topic"))
    p.set_defaults(func=cmd_students_promote)


def _add_list(ssub) -> None:
    p = ssub.add_parser("list", help="registered versions; * marks the promoted one")
    p.add_argument("--name", default="student")
    add_settings(p, ("home",))
    p.set_defaults(func=cmd_students_list)
