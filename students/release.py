"""Shipping a student in ``students/default``: scored beside the teacher on the dev pairs in one run, and served by
default only when it clusters within ``bar`` F1 of it.

The student learns centred targets, so the teacher it must match is the *centred* teacher: the teacher's vectors
minus the centre the student was trained against (``training.json``), renormalised. Both are scored through the
stream's clusterer at their own best threshold (``students.evaluation``). ``release.json`` in the shipped folder
records both scores and the verdict; ``pipeline.models`` reads only its ``serve_by_default``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

DEFAULT_BAR = 0.01  # the student may be at most this much F1 under the centred teacher


def centred(embedded: list, centre: np.ndarray) -> list:
    """The same documents with ``vector - centre``, renormalised (what a centred-target student learns)."""
    from dataclasses import replace

    out = []
    for doc in embedded:
        vector = doc.vector - centre
        out.append(replace(doc, vector=(vector / max(np.linalg.norm(vector), 1e-12)).astype(np.float32)))
    return out


def teacher_documents(evaluator, teacher_labels: str | None, teacher_encoder) -> list:
    """The dev documents with teacher vectors: read from a label folder of them, or encoded now."""
    if teacher_labels:
        from pipeline.evaluate import embedded_documents

        docs, _, missing = embedded_documents(evaluator.inputs, labels_dir=teacher_labels,
                                              max_chars=evaluator.max_chars)
        if missing:
            raise ValueError(f"{teacher_labels} lacks {len(missing)} of the dev documents (e.g. {missing[0]})")
        return docs
    return evaluator.embedded(teacher_encoder)


def release_record(student_dir: Path, evaluator, teacher_docs: list, bar: float = DEFAULT_BAR,
                   reproduce: str = "") -> dict:
    from students.encoder import StudentEncoder

    training = json.loads((student_dir / "training.json").read_text())
    centre = np.asarray(next(iter(training["target_centres"].values())), dtype=np.float32)
    student = evaluator(StudentEncoder(student_dir))
    teacher_raw = evaluator.score(teacher_docs)
    teacher = evaluator.score(centred(teacher_docs, centre))
    size_mb = sum(f.stat().st_size for f in student_dir.iterdir() if f.is_file()) / 1e6
    for score in (student, teacher_raw, teacher):
        score.pop("curve", None)
    return {"student": student, "teacher_centred": teacher, "teacher_raw": teacher_raw, "bar": bar,
            "gap": round(teacher["stream_f1"] - student["stream_f1"], 4),
            "serve_by_default": student["stream_f1"] >= teacher["stream_f1"] - bar,
            "size_mb": round(size_mb, 2), "dev_pairs": evaluator.pairs_path, "dev_inputs": evaluator.inputs,
            "released_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reproduce": reproduce,
            "training": {k: training.get(k) for k in ("teachers", "labels", "documents", "settings", "epoch",
                                                      "continued_from")}}


def ship(student_dir: Path, destination: Path, record: dict) -> Path:
    """Copy the student folder over ``destination`` with its ``release.json`` (atomically, by rename)."""
    from pipeline.model_folder import RELEASE_FILE

    tmp = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(student_dir, tmp)
    (tmp / RELEASE_FILE).write_text(json.dumps(record, indent=2))
    old = destination.with_name(destination.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if destination.exists():
        os.replace(destination, old)
    os.replace(tmp, destination)
    shutil.rmtree(old, ignore_errors=True)
    return destination
