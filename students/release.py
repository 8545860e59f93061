"""Shipping a student in ``students/default``: scored beside the teacher on the dev pairs in one run, and served by
default only when it clusters within ``bar`` F1 of it.

The student learns centred targets, so the teacher it must match is the *centred* teacher: the teacher's vectors
minus the centre the student was trained against (``training.json``), renormalised. Both are scored through the
stream's clusterer at their own best threshold (``students.evaluation``). ``release.json`` in the shipped folder
records both scores and the verdict; ``pipeline.models`` reads only its ``serve_by_default``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.files import replace_folder, staging_folder
from pipeline.flow.centring import centre_and_normalise

DEFAULT_BAR = 0.01  # the student may be at most this much F1 under the teacher (raw or centred, the better)
QUANTISED_BAR = 0.005  # an int8 student is served only this close to its fp32 self


def centred(embedded: list, centre: np.ndarray) -> list:
    """The same documents with ``vector - centre``, renormalised (what a centred-target student learns)."""
    from dataclasses import replace

    return [replace(doc, vector=centre_and_normalise(doc.vector, centre).astype(np.float32)) for doc in embedded]


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
    """The student's and the teacher's dev scores (each at its best threshold and centring) and the verdict. A
    student exported for ONNX Runtime (``students.onnx_serving``) is scored in fp32 (torch) and in int8 (ONNX
    Runtime); int8 is served only within ``QUANTISED_BAR`` of its fp32 self (``record["runtime"]`` says which)."""
    from pipeline.files import portable_path
    from pipeline.gate import gate
    from students.encoder import StudentEncoder
    from students.onnx_folder import onnx_served
    from students.onnx_serving import OnnxStudentEncoder

    training = json.loads((student_dir / "training.json").read_text())
    centre = np.asarray(next(iter(training["target_centres"].values())), dtype=np.float32)
    runtime, quantisation = "torch", None
    if onnx_served(student_dir):
        fp32_docs = evaluator.embedded(StudentEncoder(student_dir))
        int8_docs = evaluator.embedded(OnnxStudentEncoder(student_dir))
        fp32, int8 = evaluator.score(fp32_docs), evaluator.score(int8_docs)
        cosine = np.array([float(a.vector @ b.vector) for a, b in zip(fp32_docs, int8_docs)])
        runtime = "onnxruntime-int8" if int8["stream_f1"] >= fp32["stream_f1"] - QUANTISED_BAR else "torch"
        student = int8 if runtime == "onnxruntime-int8" else fp32
        quantisation = {"fp32_stream_f1": fp32["stream_f1"], "int8_stream_f1": int8["stream_f1"],
                        "bar": QUANTISED_BAR, "cosine_int8_to_fp32_mean": round(float(cosine.mean()), 5),
                        "cosine_int8_to_fp32_min": round(float(cosine.min()), 5)}
    else:
        student = evaluator(StudentEncoder(student_dir))
    teacher_raw = evaluator.score(teacher_docs)
    teacher = evaluator.score(centred(teacher_docs, centre))
    to_match = max(teacher_raw, teacher, key=lambda score: score["stream_f1"])
    for score in (student, teacher_raw, teacher):
        score.pop("curve", None)
    decision = gate(student["stream_f1"], to_match["stream_f1"], -bar, "teacher")
    return {"student": student, "teacher_centred": teacher, "teacher_raw": teacher_raw, "bar": bar,
            "gap": round(to_match["stream_f1"] - student["stream_f1"], 4),
            "serve_by_default": decision.passed, "gate": decision.rule,
            "runtime": runtime, "quantisation": quantisation,
            "size_mb": folder_mb(student_dir), "dev_pairs": portable_path(evaluator.pairs_path),
            "dev_inputs": [portable_path(p) for p in evaluator.inputs],
            "released_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reproduce": reproduce,
            "training": {k: training.get(k) for k in ("teachers", "labels", "documents", "settings", "epoch",
                                                      "continued_from")}}


def staged_release(student_dir: Path, staging: Path) -> Path:
    """A copy of the trained folder to score and ship; a teacher-cut student is exported for ONNX Runtime there."""
    from pipeline.model_folder import is_student_folder
    from students.onnx_serving import export_onnx

    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(student_dir, staging)
    config = json.loads((staging / "config.json").read_text()) if is_student_folder(staging) else {}
    if config.get("encoder") == "teacher-cut":
        export_onnx(staging, "int8")
    return staging


def folder_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 1e6, 2)


def smallest_release_mb(folder: Path) -> float:
    """The least an exported folder can ship as (before scoring decides its runtime): an ONNX-served one without
    its torch layers (``settle_release``), else the folder as it is."""
    from safetensors import safe_open

    from students.onnx_folder import TABLE_KEYS, WEIGHTS_FILE, onnx_served

    if not onnx_served(folder):
        return folder_mb(folder)
    with safe_open(str(Path(folder) / WEIGHTS_FILE), framework="numpy") as weights:
        table = sum(weights.get_tensor(k).nbytes for k in TABLE_KEYS)
    others = sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file() and f.name != WEIGHTS_FILE)
    return round((table + others) / 1e6, 2)


def settle_release(folder: Path, record: dict) -> None:
    """Write what the record decided into the folder: the runtime it serves by (int8 through ONNX Runtime: the
    layers kept once, in the graph; torch: no graph), its space and threshold, and then its size and version."""
    from pipeline.model_folder import model_version, write_cluster_threshold
    from students.onnx_folder import ONNX_FILE, keep_layers_in_onnx_only, update_encoder_settings

    if record["runtime"] == "torch" and (folder / ONNX_FILE).exists():  # int8 lost too much: torch serves it
        (folder / ONNX_FILE).unlink()
        update_encoder_settings(folder, {"runtime": "torch"})
    elif record["runtime"] == "onnxruntime-int8":
        keep_layers_in_onnx_only(folder)
    student = record["student"]
    student["model_version"] = model_version(folder)  # the weights as the folder now stores and names them
    record["size_mb"] = folder_mb(folder)
    write_cluster_threshold(folder, student["threshold"], tuned_on="dev pairs (students ship)",
                            centring=student["centring"])


def ship(student_dir: Path, destination: Path, record: dict) -> Path:
    """Copy the student folder over ``destination`` with its ``release.json`` (atomically, by rename)."""
    from pipeline.model_folder import RELEASE_FILE

    tmp = staging_folder(destination)
    shutil.copytree(student_dir, tmp)
    (tmp / RELEASE_FILE).write_text(json.dumps(record, indent=2))
    return replace_folder(tmp, destination)
