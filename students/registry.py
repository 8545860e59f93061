"""The model registry: versioned copies of model folders under ``$NEWSEVENTS_HOME/registry``.

    registry/
      student/v1/ v2/ ...    a registered folder is copied once and never changed afterwards
      promoted.json          the version the embed workers serve (also announced on the control topic)

Workers read model folders by path, so the registry must be on a filesystem every embed worker sees (one
machine, or a shared volume: ``deploy/docker-compose.yml`` mounts one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from teacher.encoder import model_version, read_cluster_threshold

PROMOTED = "promoted.json"


@dataclass(frozen=True)
class Promotion:
    model_dir: str
    model_version: str
    threshold: float  # the cluster threshold tuned for this model (0: none, the clusterer's setting applies)
    promoted_at_ms: int

    def to_bytes(self) -> bytes:
        return json.dumps({"type": "promote", **asdict(self)}).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> "Promotion":
        raw = json.loads(value)
        if not isinstance(raw, dict) or raw.get("type") != "promote":
            raise ValueError("not a promotion record")
        return cls(str(raw["model_dir"]), str(raw["model_version"]), float(raw.get("threshold") or 0.0),
                   int(raw["promoted_at_ms"]))

    @classmethod
    def of(cls, folder: Path) -> "Promotion":
        folder = Path(folder).resolve()
        return cls(str(folder), model_version(folder), read_cluster_threshold(folder), int(time.time() * 1000))


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def versions(self, name: str = "student") -> list[Path]:
        folder = self.root / name
        found = [p for p in folder.glob("v*") if re.fullmatch(r"v\d+", p.name) and (p / "config.json").exists()]
        return sorted(found, key=lambda p: int(p.name[1:]))

    def register(self, source: Path, name: str = "student") -> Path:
        """Copy ``source`` in as the next version (the same weights twice are one version)."""
        source = Path(source)
        if not (source / "config.json").exists():
            raise FileNotFoundError(f"{source} is not a model folder (no config.json)")
        version = model_version(source)
        for existing in self.versions(name):
            if model_version(existing) == version:
                return existing
        numbers = [int(p.name[1:]) for p in self.versions(name)]
        target = self.root / name / f"v{max(numbers, default=0) + 1}"
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        os.replace(tmp, target)
        return target

    def promote(self, folder: Path) -> Promotion:
        promotion = Promotion.of(folder)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (PROMOTED + ".tmp")
        tmp.write_bytes(promotion.to_bytes())
        os.replace(tmp, self.root / PROMOTED)
        return promotion

    def promoted(self) -> Promotion | None:
        path = self.root / PROMOTED
        return Promotion.from_bytes(path.read_bytes()) if path.exists() else None
