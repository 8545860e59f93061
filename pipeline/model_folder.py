"""The model-folder contract: the files a model folder carries and how to read them.

A leaf module (numpy only at import time): ``teacher/`` and ``students/`` write folders by it, ``pipeline.models``
loads and serves them by it. It imports nothing from ``teacher``, ``students`` or the rest of ``pipeline``, which is
what keeps the packages free of import cycles (see the README's *Architecture*).

    config.json               Hugging Face config; ``model_type: newsevents-student`` marks a student
    newsevents_encoder.json   how to use the encoder: name, pooling, text prefix, normalise
    newsevents_cluster.json   the cluster threshold tuned for this model, and the centring it was tuned in
    release.json              a shipped student's dev scores and whether it is served by default
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.flow.centring import DEFAULT_CENTRING

ENCODER_SETTINGS_FILE = "newsevents_encoder.json"
CLUSTER_SETTINGS_FILE = "newsevents_cluster.json"  # apart from the encoder's: a threshold is not a new space
RELEASE_FILE = "release.json"  # written by `newsevents students ship`: the dev scores beside the teacher's, the verdict
STUDENT_MODEL_TYPE = "newsevents-student"


class Encoder(Protocol):
    version: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSettings:
    name: str = ""
    pooling: str = "mean"  # "mean" (over the attention mask) or "cls"
    prefix: str = ""
    normalize: bool = True

    @classmethod
    def from_folder(cls, folder: Path) -> "EncoderSettings":
        path = folder / ENCODER_SETTINGS_FILE
        raw = json.loads(path.read_text()) if path.exists() else {}
        raw.setdefault("name", folder.name)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def read_cluster_space(folder: Path) -> tuple[float, str]:
    """The threshold tuned for this model (`newsevents eval --tune --write-threshold`) and the centring it was
    tuned in; (0.0, "") when none. A file without ``centring`` was tuned on raw vectors ("none")."""
    path = Path(folder) / CLUSTER_SETTINGS_FILE
    if not path.exists():
        return 0.0, ""
    raw = json.loads(path.read_text())
    return float(raw.get("threshold", 0.0)), str(raw.get("centring", "none"))


def write_cluster_threshold(folder: Path, threshold: float, tuned_on: str = "",
                            centring: str = DEFAULT_CENTRING) -> None:
    path = Path(folder) / CLUSTER_SETTINGS_FILE
    path.write_text(json.dumps({"threshold": round(float(threshold), 4), "centring": centring,
                                "tuned_on": tuned_on}, indent=2))


def model_version(folder: Path) -> str:
    """``name@hash`` of the weights and config: travels with every vector so consumers know which space it is in."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in ("config.json", ENCODER_SETTINGS_FILE):
        if (folder / name).exists():
            digest.update((folder / name).read_bytes())
    provenance = folder / "provenance.json"
    if provenance.exists() and "weights_sha256" in provenance.read_text():
        # provisioned folders: the recorded checksum of the converted weights (and so of the source)
        digest.update(json.loads(provenance.read_text())["weights_sha256"].encode())
    else:
        for path in (sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.onnx"))
                     + sorted(folder.glob("tokenizer*"))):
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
    return f"{EncoderSettings.from_folder(folder).name}@{digest.hexdigest()[:12]}"


def is_student_folder(folder: str | Path) -> bool:
    config = Path(folder) / "config.json"
    return config.exists() and json.loads(config.read_text()).get("model_type") == STUDENT_MODEL_TYPE


def shipped_student_serves(folder: Path) -> bool:
    """A shipped student is served by default only once it clusters within a point of the teacher."""
    release = folder / RELEASE_FILE
    return (folder / "config.json").exists() and release.exists() and bool(
        json.loads(release.read_text()).get("serve_by_default"))


# --- what the teacher's and the student's encoders share when they load (torch is imported on call) -------------
def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_torch_threads(threads: int | None) -> None:
    """torch's CPU threads for this process (None or 0: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def quantize_int8(model, device: str, layer_types: set):
    """Dynamic int8 of ``layer_types`` (a CPU option: refused on any other device)."""
    import torch

    if device != "cpu":
        raise ValueError("int8 dynamic quantisation is a CPU option")
    return torch.ao.quantization.quantize_dynamic(model, layer_types, dtype=torch.qint8)
