"""``newsevents retrain --crawl PATH...``: the job users run on every new crawl, in one resumable command.

1. **Label** the crawl's documents that no old label folder has, with the old labels' teacher (same version and
   precision, or the labels would not be one space), into ``WORK/labels-new`` (resumable shards).
2. **Train** the candidate: continue from the served student on old + new labels (its vocabulary, weights and
   target centres), or distil a fresh student when the stream serves the teacher (``WORK/train``, resumable).
3. **Evaluate** the candidate beside the served model on the gold pairs in one run: stream F1 through the
   production clusterer, each at its own best threshold, and docs/s on the same documents.
4. **Gate**: promote (``students promote``: registry, then ``news.control`` so running workers switch) only if
   the candidate's F1 is at least the served model's plus ``min_gain``; otherwise refuse and say why.

``WORK/retrain.json`` remembers which model was served when the job started, so a rerun after a kill resumes
the same job even if something was promoted meanwhile; ``WORK/report.json`` (and ``report.md``,
``training_curve.png``) hold the decision.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.config import Settings
from pipeline.files import resolve_portable, write_atomic
from pipeline.models import served_model


class RetrainError(RuntimeError):
    pass


@dataclass
class RetrainOptions:
    crawl: list[str]
    work_dir: Path
    labels: list[str] = field(default_factory=list)  # old label folders; default: the served student's own
    teacher: str = ""  # 'e5' or a model folder; default: what the old labels' manifest names
    gold_pairs: str = ""
    gold_inputs: list[str] = field(default_factory=list)
    min_gain: float = 0.0
    max_epochs: int = 3
    learning_rate: float = 0.0  # 0: half of what the served student was trained with
    speed_docs: int = 128
    announce: bool = True  # publish the promotion on news.control (else the registry only)
    progress: bool = True


def _write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=2), fsync=False)


def recorded_served_folder(settings: Settings, work_dir: Path) -> Path:
    """The model served when this job first ran (recorded), so a resumed job continues the same candidate."""
    record = work_dir / "retrain.json"
    if record.exists():
        return Path(json.loads(record.read_text())["served_model_dir"])
    folder = served_model(settings).folder
    work_dir.mkdir(parents=True, exist_ok=True)
    _write_json(record, {"served_model_dir": str(Path(folder).resolve()), "started_at": time.time()})
    return Path(folder).resolve()


def old_label_dirs(options: RetrainOptions, served: Path) -> list[str]:
    if options.labels:
        return options.labels
    training = served / "training.json"
    recorded = json.loads(training.read_text()).get("labels", []) if training.exists() else []
    found = [str(resolve_portable(d)) for d in recorded if (resolve_portable(d) / "manifest.json").exists()]
    if not found:
        raise RetrainError(f"the served model {served} records no label folder that exists here; "
                           "name the old labels with --labels DIR")
    return found


def load_label_teacher(settings: Settings, options: RetrainOptions, manifest: dict):
    """The teacher of the old labels, at their precision: new labels must be the same space."""
    from pipeline.models import load_teacher

    version = manifest["teacher"]
    quantize = "int8" if version.endswith("+int8") else None
    spec = options.teacher or ("e5" if "e5" in version.split("@")[0] else "")
    if not spec:
        raise RetrainError(f"the old labels are from {version}; name that teacher's folder with --teacher")
    encoder = load_teacher(spec, home=settings.home_path, device=settings.device,
                           max_length=manifest["recipe"]["max_length_tokens"], quantize=quantize,
                           threads=settings.threads or None)
    if encoder.version != version:
        raise RetrainError(f"teacher {spec!r} is {encoder.version}, the old labels are {version}: "
                           "labels of two teachers are not one space")
    return encoder


def label_new_documents(settings: Settings, options: RetrainOptions, labels: list[str]) -> dict:
    from pipeline.flow.documents import InputStats, iter_documents
    from teacher.label import label, load_manifest, read_shards

    manifest = load_manifest(Path(labels[0]))
    known: set[str] = set()
    for folder in labels:
        for shard in read_shards(Path(folder), keys=("doc_ids",)):
            known.update(shard["doc_ids"].tolist())
    stats = InputStats()
    already = [0]

    def new_documents():
        for doc in iter_documents(options.crawl, stats):
            if doc.doc_id in known:
                already[0] += 1
            else:
                yield doc

    encoder = load_label_teacher(settings, options, manifest)
    result = label(new_documents(), encoder, options.work_dir / "labels-new",
                   max_chars=manifest["recipe"]["max_chars"], progress=options.progress, inputs=options.crawl,
                   stats=stats)
    return {"new_documents_labelled": result["counts"]["labelled"], "already_in_old_labels": already[0],
            "files_read": stats.read, "unparseable": stats.unparseable, "unreadable": stats.unreadable}


def train_candidate(settings: Settings, options: RetrainOptions, served: Path, labels: list[str]) -> dict:
    from pipeline.models import ENCODER_SETTINGS_FILE, is_student_folder
    from students.onnx_folder import onnx_served
    from students.onnx_serving import export_onnx
    from students.train import TrainSettings, train
    from teacher.provision import provision_e5

    new_labels = options.work_dir / "labels-new"
    if not (new_labels / "manifest.json").exists() or not json.loads(
            (new_labels / "manifest.json").read_text())["counts"]["labelled"]:
        raise RetrainError("the crawl has no document the old labels lack: nothing to learn from")
    continuing = is_student_folder(served)
    recorded = json.loads((served / "training.json").read_text()).get("settings", {}) if (
        continuing and (served / "training.json").exists()) else {}
    known = set(TrainSettings.__dataclass_fields__)
    values = {k: v for k, v in recorded.items() if k in known and k not in ("device", "threads", "max_docs")}
    values["max_epochs"] = options.max_epochs
    values["token_loss_weight"] = 0.0  # a crawl's new labels carry no token states
    values["learning_rate"] = options.learning_rate or values.get("learning_rate", TrainSettings.learning_rate) / 2
    values.update(device=settings.device, threads=settings.threads)
    teacher_folder = Path(options.teacher) if options.teacher and options.teacher != "e5" else provision_e5(
        settings.teacher_dir)
    result = train([*labels, str(new_labels)], options.work_dir / "train", TrainSettings(**values),
                   teacher_folder=teacher_folder, dev_pairs=options.gold_pairs, dev_inputs=options.gold_inputs,
                   progress=options.progress, cache_dir=settings.home_path / "cache",
                   init_from=served if continuing else None)
    if continuing and onnx_served(served):  # the candidate is compared, and would be served, as the served one is
        export_onnx(Path(result["model"]), json.loads((served / ENCODER_SETTINGS_FILE).read_text())["onnx_quantize"])
    return result


def compare(settings: Settings, options: RetrainOptions, served: Path, candidate: Path) -> dict[str, dict]:
    """Both models on the gold pairs and on the same timed documents, in one run."""
    from pipeline.flow.embed import document_text
    from pipeline.models import load_encoder
    from pipeline.ops.bench import bench_encoders
    from students.evaluation import DevPairEvaluator

    evaluator = DevPairEvaluator(options.gold_pairs, options.gold_inputs, settings.max_chars)
    texts = [document_text(d, settings.max_chars) for d in evaluator.docs[:options.speed_docs]]
    speeds = bench_encoders(settings, texts, [str(served), str(candidate)], [64], settings.threads or None,
                            reference=str(served))
    scores = {}
    for role, folder, speed in (("served", served, speeds[0]), ("candidate", candidate, speeds[1])):
        encoder = load_encoder(folder, device=settings.device, max_length=settings.max_length,
                               threads=settings.threads or None)
        scores[role] = {"model_dir": str(folder), **evaluator(encoder), "docs_per_s": speed["docs_per_s"],
                        "batch_size": speed["batch_size"], "threads": speed["threads"]}
    return scores


def decide(scores: dict[str, dict], min_gain: float) -> tuple[bool, str]:
    from pipeline.gate import gate

    decision = gate(scores["candidate"]["stream_f1"], scores["served"]["stream_f1"], min_gain, "served")
    return decision.passed, decision.rule + ("" if decision.passed else ": the served model stays")


def promote(settings: Settings, candidate: Path, threshold: float, centring: str, announce: bool,
            rule: str) -> dict:
    from pipeline.models import write_cluster_threshold
    from pipeline.ops.promotion import register_and_announce

    write_cluster_threshold(candidate, threshold, tuned_on="newsevents retrain gold pairs", centring=centring)
    return register_and_announce(settings, candidate, rule=rule, announce=announce)


def retrain(settings: Settings, options: RetrainOptions) -> dict:
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    report_path = work / "report.json"
    if report_path.exists():
        return {**json.loads(report_path.read_text()), "already_decided": True}
    for path in [*options.crawl, *options.gold_inputs, *filter(None, [options.gold_pairs])]:
        if not Path(path).exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
    if not options.gold_pairs or not options.gold_inputs:
        raise RetrainError("the eval gate needs gold pairs and their documents (--gold-pairs, --gold-input)")
    served = recorded_served_folder(settings, work)
    labels = old_label_dirs(options, served)
    started = time.perf_counter()
    labelling = label_new_documents(settings, options, labels)
    training = train_candidate(settings, options, served, labels)
    candidate = Path(training["model"])
    scores = compare(settings, options, served, candidate)
    promoted, reason = decide(scores, options.min_gain)
    report = {"decision": "promoted" if promoted else "refused", "reason": reason, "min_gain": options.min_gain,
              "crawl": options.crawl, "old_labels": labels, "labelling": labelling, "scores": scores,
              "training": {"epochs": len(training["history"]), "documents": training["documents"],
                           "history": training["history"]},
              "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}}
    if promoted:
        report["promotion"] = promote(settings, candidate, scores["candidate"]["threshold"],
                                      scores["candidate"]["centring"], options.announce, reason)
    curve = work / "train" / "training_curve.png"
    if curve.exists():
        shutil.copy(curve, work / "training_curve.png")
    report["seconds"] = round(time.perf_counter() - started, 1)
    _write_json(report_path, report)
    (work / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    rows = ["| model | stream F1 | precision | recall | batch F1 | threshold | docs/s |", "|---|---|---|---|---|---|---|"]
    for role in ("served", "candidate"):
        s = report["scores"][role]
        rows.append(f"| {role}: {s['model_version']} | {s['stream_f1']:.4f} | {s['precision']:.4f} | "
                    f"{s['recall']:.4f} | {s['batch_f1']:.4f} | {s['threshold']:.2f} | {s['docs_per_s']:.1f} |")
    return "\n".join([f"# newsevents retrain: {report['decision']}", "", report["reason"], "", *rows, "",
                      f"New documents labelled: {report['labelling']['new_documents_labelled']}; training epochs: "
                      f"{report['training']['epochs']}. Training curve: training_curve.png", ""])
