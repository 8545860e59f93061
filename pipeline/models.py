"""Models as the pipeline sees them: load an encoder from a folder, and decide which folder and threshold to serve.

The one place in ``pipeline`` that reaches into ``teacher/`` and ``students/`` (inside functions: importing this
module loads neither, nor torch). The folder format itself is ``pipeline.model_folder``, re-exported here; teachers
and students import that leaf, never this module, so no import cycle exists.

Which folder the embed stage serves, in which centring space and at which threshold, is decided once, by
``served_model`` (precedence in its docstring and the README's "Which model is served").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings, teacher_dir_in
from pipeline.flow.centring import DEFAULT_CENTRING
from pipeline.flow.cluster import DEFAULT_THRESHOLD
from pipeline.records import Promotion
from pipeline.model_folder import (  # noqa: F401 (the contract, re-exported: pipeline code imports it from here)
    CLUSTER_SETTINGS_FILE, ENCODER_SETTINGS_FILE, RELEASE_FILE, Encoder, EncoderSettings, is_student_folder,
    model_version, read_cluster_space, shipped_student_serves, write_cluster_threshold)

log = logging.getLogger(__name__)

SHIPPED_STUDENT = Path(__file__).resolve().parent.parent / "students" / "default"


def load_encoder(folder: str | Path, device: str = "auto", max_length: int = 256,
                 quantize: str | None = None, threads: int | None = None) -> Encoder:
    """Load the encoder a model folder describes: a distilled student, or any Hugging Face encoder. The runtime:
    numpy for a static student (no torch), ONNX Runtime for an exported cut student on the CPU, else torch."""
    from students.onnx_folder import onnx_served
    from students.static_runtime import StaticNumpyEncoder, numpy_served

    folder = Path(folder)
    student = is_student_folder(folder)
    if student and numpy_served(folder) and not quantize and device != "cuda":
        return StaticNumpyEncoder(folder, max_length=max_length)
    if student and onnx_served(folder) and not quantize and (
            device == "cpu" or (device == "auto" and _no_cuda())):  # torch serves it on a GPU
        from students.onnx_serving import OnnxStudentEncoder

        return OnnxStudentEncoder(folder, max_length=max_length, threads=threads)
    if student:
        from students.encoder import StudentEncoder

        return StudentEncoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)
    from teacher.encoder import HFEncoder

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

        folder = provision_e5(teacher_dir_in(home))
    else:
        folder = Path(spec)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"teacher {spec!r}: not 'e5', 'use' or a Hugging Face model folder with config.json")
    return load_encoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)


def load_served_encoder(settings: Settings, folder: Path) -> Encoder:
    """``folder``'s encoder with the stream's settings (device, token limit, precision, threads)."""
    return load_encoder(folder, device=settings.device, max_length=settings.max_length,
                        quantize=settings.quantize or None, threads=settings.threads or None)


@dataclass(frozen=True)
class ServedModel:
    """The model the stream serves and the space its vectors are linked in, each with where it came from.

    Resolved by ``served_model`` alone; the embed worker, the cluster stage (through the vectors it reads), eval,
    bench and retrain take it from there."""

    folder: Path
    centring: str
    threshold: float
    folder_from: str  # "control topic", "flag", "registry", "release" or "teacher" (``served_model``)
    centring_from: str  # "flag", "tuned" (the model's newsevents_cluster.json, or what its vectors carry), "default"
    threshold_from: str  # the same three

    @property
    def version(self) -> str:
        return model_version(self.folder)

    def describe(self) -> str:
        return (f"{self.folder} (from {self.folder_from}), {self.centring} centring ({self.centring_from}), "
                f"threshold {self.threshold:.3f} ({self.threshold_from})")


def served_model(settings: Settings, promotion: Promotion | None = None, *, provision: bool = True) -> ServedModel:
    """The model to serve, first match wins:

    1. the latest promotion on ``news.control`` (``promotion``; running embed workers pass it),
    2. ``--model-dir``,
    3. the registry's promoted model (``$NEWSEVENTS_HOME/registry/promoted.json``),
    4. the student shipped in ``students/default`` when its ``release.json`` says it serves by default,
    5. the teacher (provisioned on first use unless ``provision`` is False).

    A promotion wins over the flag so that a worker restarted after a promotion serves what the workers that
    saw it serve. Centring and threshold: ``cluster_space``."""
    folder, folder_from = _served_folder(settings, promotion)
    if provision and not (folder / "config.json").exists():
        if folder_from != "teacher":
            raise FileNotFoundError(f"model folder {folder} (from {folder_from}) has no config.json")
        from teacher.provision import provision_e5

        log.warning("provisioning multilingual-e5-small into %s (first run only)", folder)
        provision_e5(folder)
    return model_in_its_space(settings, folder, folder_from)


def model_in_its_space(settings: Settings, folder: Path, folder_from: str) -> ServedModel:
    """``folder`` with the centring and threshold the stream links its vectors with (``cluster_space``)."""
    tuned, tuned_in = read_cluster_space(folder)
    centring, threshold, centring_from, threshold_from = cluster_space(settings, tuned, tuned_in)
    return ServedModel(Path(folder), centring, threshold, folder_from, centring_from, threshold_from)


def _served_folder(settings: Settings, promotion: Promotion | None) -> tuple[Path, str]:
    if promotion is not None:
        return Path(promotion.model_dir), "control topic"
    if settings.model_dir:
        return Path(settings.model_dir), "flag"
    from students.registry import Registry

    promoted = Registry(settings.registry_dir).promoted_dir()
    if promoted is not None and (promoted / "config.json").exists():
        return promoted, "registry"
    if shipped_student_serves(SHIPPED_STUDENT):
        return SHIPPED_STUDENT, "release"
    return Path(settings.teacher_dir), "teacher"


def cluster_space(settings: Settings, tuned: float | None, tuned_in: str | None) -> tuple[str, float, str, str]:
    """(centring, threshold, centring_from, threshold_from): the flags, else the space and threshold tuned for
    the model (``tuned`` in ``tuned_in``; a threshold with no space was tuned on raw vectors, "none"), else the
    defaults. A threshold tuned in another space than the one chosen is not used. The one rule: the embed
    stage applies it to the served folder, the cluster stage to what the vectors carry."""
    tuned = float(tuned or 0.0)
    tuned_in = (tuned_in or "none") if tuned else ""
    if settings.centring:
        centring, centring_from = settings.centring, "flag"
    else:
        centring, centring_from = (tuned_in, "tuned") if tuned_in else (DEFAULT_CENTRING, "default")
    if settings.threshold:
        return centring, settings.threshold, centring_from, "flag"
    if tuned and tuned_in == centring:
        return centring, tuned, centring_from, "tuned"
    return centring, DEFAULT_THRESHOLD, centring_from, "default"


def tuning_spaces(settings: Settings) -> tuple[str, ...]:
    """The centrings a threshold sweep tries: the one ``--centring`` pins, else every space (the model's best
    space is part of what is tuned)."""
    from pipeline.evaluate import CENTRINGS

    return (settings.centring,) if settings.centring else tuple(CENTRINGS)
