"""Models as the pipeline sees them: load an encoder from a folder, and decide which folder and threshold to serve.

The one place in ``pipeline`` that reaches into ``teacher/`` and ``students/`` (inside functions: importing this
module loads neither, nor torch). The folder format itself is ``pipeline.model_folder``, re-exported here; teachers
and students import that leaf, never this module, so no import cycle exists.

Which folder the embed stage serves: ``--model-dir``, else the registry's promoted model
(``$NEWSEVENTS_HOME/registry/promoted.json``), else the student shipped in ``students/default`` when its
``release.json`` says it met the bar, else the provisioned teacher. A promotion on ``news.control`` overrides this in
running workers (``pipeline.kafka.worker``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Settings
from pipeline.flow.centring import DEFAULT_CENTRING
from pipeline.flow.cluster import DEFAULT_THRESHOLD
from pipeline.model_folder import (  # noqa: F401 (the contract, re-exported: pipeline code imports it from here)
    CLUSTER_SETTINGS_FILE, ENCODER_SETTINGS_FILE, RELEASE_FILE, Encoder, EncoderSettings, is_student_folder,
    model_version, read_cluster_space, read_cluster_threshold, shipped_student_serves, write_cluster_threshold)

log = logging.getLogger(__name__)

SHIPPED_STUDENT = Path(__file__).resolve().parent.parent / "students" / "default"


def load_encoder(folder: str | Path, device: str = "auto", max_length: int = 256,
                 quantize: str | None = None, threads: int | None = None) -> Encoder:
    """Load the encoder a model folder describes: a distilled student, or any Hugging Face encoder."""
    from students.encoder import StudentEncoder
    from students.onnx_serving import OnnxStudentEncoder, onnx_served
    from teacher.encoder import HFEncoder

    if is_student_folder(folder) and onnx_served(Path(folder)) and not quantize and (
            device == "cpu" or (device == "auto" and _no_cuda())):  # torch serves it on a GPU
        return OnnxStudentEncoder(folder, max_length=max_length, threads=threads)
    if is_student_folder(folder):
        return StudentEncoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)
    return HFEncoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


def load_teacher(spec: str, *, home: Path, device: str = "auto", max_length: int = 256, quantize: str | None = None,
                 threads: int | None = None) -> Encoder:
    """``e5`` (provisioned multilingual-e5-small), ``use`` (multilingual USE v3) or a Hugging Face model folder."""
    if spec == "use":
        from teacher.use import USEEncoder

        return USEEncoder(threads=threads)
    if spec == "e5":
        from teacher.provision import provision_e5

        folder = provision_e5(home / "models" / "multilingual-e5-small")
    else:
        folder = Path(spec)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"teacher {spec!r}: not 'e5', 'use' or a Hugging Face model folder with config.json")
    return load_encoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)


def load_served_encoder(settings: Settings, folder: Path) -> Encoder:
    """``folder``'s encoder with the stream's settings (device, token limit, precision, threads)."""
    return load_encoder(folder, device=settings.device, max_length=settings.max_length,
                        quantize=settings.quantize or None, threads=settings.threads or None)


def served_model_dir(settings: Settings) -> Path:
    """The model to serve: --model-dir, else the registry's promoted model, else the student shipped in
    students/default when its release record says it met the bar (``release.json``), else the teacher."""
    if settings.model_dir:
        return Path(settings.model_dir)
    from students.registry import Registry

    promoted = Registry(settings.registry_dir).promoted_dir()
    if promoted is not None and (promoted / "config.json").exists():
        return promoted
    return SHIPPED_STUDENT if shipped_student_serves(SHIPPED_STUDENT) else settings.teacher_dir


def ensure_model(settings: Settings) -> Path:
    """The model folder to serve (``served_model_dir``); provisions the teacher on first use."""
    folder = served_model_dir(settings)
    if not (folder / "config.json").exists():
        if settings.model_dir:
            raise FileNotFoundError(f"model folder {folder} has no config.json")
        from teacher.provision import provision_e5

        log.warning("provisioning multilingual-e5-small into %s (first run only)", folder)
        provision_e5(folder)
    return folder


def cluster_space(settings: Settings, folder: Path | None = None) -> tuple[str, float]:
    """(centring, threshold) the stream links ``folder``'s vectors with (default: the served model's): the
    flags, else the space and threshold tuned for the model (its ``newsevents_cluster.json``), else the
    defaults. A threshold tuned in another space than the one chosen is not used."""
    tuned, tuned_in = read_cluster_space(folder if folder is not None else served_model_dir(settings))
    centring = settings.centring or tuned_in or DEFAULT_CENTRING
    threshold = settings.threshold or (tuned if tuned_in == centring else 0.0) or DEFAULT_THRESHOLD
    return centring, threshold


def cluster_threshold(settings: Settings) -> float:
    """The threshold of ``cluster_space`` for the served model."""
    return cluster_space(settings)[1]
