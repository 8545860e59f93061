"""The model registry: versioned copies of model folders under ``$NEWSEVENTS_HOME/registry``.

    registry/
      student/v1/ v2/ ...    a registered folder is copied once and never changed afterwards
      promoted.json          the version the embed workers serve (also announced on the control topic)

Workers read model folders by path, so the registry must be on a filesystem every embed worker sees (one
machine, or a shared volume: ``deploy/docker-compose.yml`` mounts one).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pipeline.files import replace_folder, staging_folder, write_atomic
from pipeline.model_folder import model_version
from pipeline.records import Promotion

PROMOTED = "promoted.json"


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
        tmp = staging_folder(target)
        shutil.copytree(source, tmp)
        return replace_folder(tmp, target)

    def promote(self, folder: Path) -> Promotion:
        promotion = Promotion.of(folder)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / PROMOTED, promotion.to_bytes(), fsync=False)
        return promotion

    def promoted_dir(self) -> Path | None:
        """The promoted model folder, as recorded (whether it still exists is the caller's question)."""
        path = self.root / PROMOTED
        return Path(json.loads(path.read_text())["model_dir"]) if path.exists() else None

    def promoted(self) -> Promotion | None:
        path = self.root / PROMOTED
        return Promotion.from_bytes(path.read_bytes()) if path.exists() else None
