"""Students beside their teacher in one run: dev-pair F1 through the stream's clusterer at each model's best
threshold and centring of the one sweep (as ``students ship`` scores), and docs/s on the same documents
(``newsevents students evaluate``)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings


def folder_size_mib(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20, 1)


def compare_encoders(settings: Settings, pairs_path: str, inputs: list[str], teacher: str, students: list[str], *,
                     teacher_labels: str | None = None, skip_teacher_f1: bool = False, speed_docs: int = 256,
                     batch_size: int = 32, progress: bool = False) -> tuple[list[dict], int]:
    """One row per model, the teacher first; returns the rows and how many documents were timed."""
    from pipeline.evaluate import embedded_documents
    from pipeline.flow.embed import document_text
    from pipeline.models import load_encoder, tuning_spaces
    from pipeline.ops.bench import bench_encoders
    from students.evaluation import DevPairEvaluator

    evaluator = DevPairEvaluator(pairs_path, inputs, settings.max_chars, centrings=tuning_spaces(settings))
    texts = [document_text(d, settings.max_chars) for d in evaluator.docs][:speed_docs]
    specs = [("teacher", teacher)] + [(f"student {i + 1}" if len(students) > 1 else "student", m)
                                      for i, m in enumerate(students)]
    speed = bench_encoders(settings, texts, [spec for _, spec in specs], [batch_size], settings.threads or None,
                           reference=teacher)
    rows = []
    for (role, spec), timing in zip(specs, speed):
        folder = settings.teacher_dir if spec == "e5" else Path(spec)
        if role == "teacher" and teacher_labels:
            docs, _, _ = embedded_documents(inputs, labels_dir=teacher_labels, max_chars=settings.max_chars)
        elif role == "teacher" and skip_teacher_f1:
            docs = []
        else:
            encoder = load_encoder(folder, device=settings.device, max_length=settings.max_length,
                                   threads=settings.threads or None)
            docs, _, _ = embedded_documents(inputs, encoder=encoder, max_chars=settings.max_chars,
                                            progress=progress)
        row = {"role": role, "model": spec, "model_version": timing["encoder"], "threshold": float("nan"),
               "centring": "", "docs_per_s": timing["docs_per_s"], "ms_per_doc": timing["ms_per_doc"],
               "batch_size": timing["batch_size"], "threads": timing["threads"], "device": timing["device"],
               "speedup_vs_teacher": timing["speedup_vs_teacher"], "size_mb": folder_size_mib(folder)}
        if docs:
            score = evaluator.score(docs)
            row.update({"threshold": score["threshold"], "centring": score["centring"],
                        "stream_f1": score["stream_f1"], "stream_precision": score["precision"],
                        "stream_recall": score["recall"], "batch_f1": score["batch_f1"]})
        rows.append(row)
    return rows, len(texts)
