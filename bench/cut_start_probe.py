"""Where a teacher-cut student starts, before any training: the cut (kept layers, input length) with its ridge-fitted
head, scored on held-out labels (centred cosine) and on the dev pairs (stream F1, the one sweep). Optionally export
the untrained cut as `students ship` would (ONNX Runtime int8), for `newsevents bench --what encoders`: speed
depends on the shape only.

    python bench/cut_start_probe.py 0,2,4,6,8,11@192 bottom-6@192
    python bench/cut_start_probe.py 0,2,4,6,8,11@192 --export /tmp/k6s192 --no-score

A spec is LAYERS@TOKENS, LAYERS as `--kept-layers` reads it. Scoring uses the first --docs labelled documents
(--validation of them held out; the head is fitted on --head-fit-docs of the rest) and the teacher in
$NEWSEVENTS_HOME/models (`newsevents teacher provision`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def prepared(spec: str, args, out: Path, score: bool):
    from transformers import AutoTokenizer

    from pipeline.config import default_home, teacher_dir_in
    from students.construction import build_model
    from students.preparation import prepare_run
    from students.settings import TrainSettings

    layers, tokens = spec.split("@")
    settings = TrainSettings(encoder="teacher-cut", kept_layers=layers, max_tokens=int(tokens), min_token_count=1,
                             max_vocab=120_000, max_docs=args.docs if score else 0,
                             validation_fraction=args.validation, head_fit_docs=args.head_fit_docs if score else 0,
                             threads=args.threads)
    teacher = teacher_dir_in(default_home())
    dev_input = [str(SHARED / "contest_html" / "tgcontest_2019-11-08_2019-11-15.tar.gz")]
    run = prepare_run([str(SHARED / "labels" / "e5-int8-corpus")], out, settings, inputs=None, teacher_folder=teacher,
                      teacher_tokenizer=AutoTokenizer.from_pretrained(teacher),
                      dev_pairs=str(SHARED / "eval" / "dev_pairs.tsv") if score else "", dev_inputs=dev_input,
                      gold_labels="", init_from=None)
    model, config = build_model(run, settings, teacher, None, "cpu")
    return run, model, config, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", metavar="LAYERS@TOKENS")
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--validation", type=float, default=0.08)
    parser.add_argument("--head-fit-docs", type=int, default=2500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/cut-start-probe", help="scratch folder (pruned tokenizers)")
    parser.add_argument("--export", help="also write the untrained cut here, exported for ONNX Runtime int8")
    parser.add_argument("--no-score", action="store_true", help="only export (needs --export and one spec)")
    args = parser.parse_args()
    from pipeline.model_folder import set_torch_threads
    from students.checkpoint import save_student
    from students.objective import Objective
    from students.onnx_serving import export_onnx
    from students.preparation import dev_scores
    from students.train import validate

    set_torch_threads(args.threads)
    for spec in args.specs:
        started = time.perf_counter()
        run, model, config, settings = prepared(spec, args, Path(args.work) / spec.replace(",", "-"),
                                                score=not args.no_score)
        if not args.no_score:
            _, cosine = validate(run, Objective(model, config, settings, run.weights, "cpu", run.gold), "cpu")
            dev = dev_scores(model, run.dev, "cpu")
            print(json.dumps({"spec": spec, "validation_docs": len(run.val_tokens), "val_cosine": round(cosine, 4),
                              "dev_f1": dev["f1"], "threshold": dev["threshold"], "centring": dev["centring"],
                              "seconds": round(time.perf_counter() - started)}), flush=True)
        if args.export:
            folder = Path(args.export)
            save_student(model, run.tokenizer_dir, folder, run.data, settings, {"epoch": 0}, 0, run.centres, {})
            print(f"exported {spec} untrained: {export_onnx(folder)}", flush=True)


if __name__ == "__main__":
    main()
