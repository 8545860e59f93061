"""The one atomic-write helper (a reader sees the old file or the new one, never half of one), its counterpart for
whole folders (``staging_folder`` then ``replace_folder``), and how committed records name files (``portable_path``: relative to the repository or to ``../shared`` beside it).

Write to ``<name>.tmp`` beside the target, optionally fsync it, then rename over the target. ``fsync=True`` also
survives a power cut (the cluster state, label shards); ``fsync=False`` only a crash of this process (reports, plots,
checkpoints that a rerun recomputes), which is what each caller did before this helper and is kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | Path, data: bytes | str | Callable[[BinaryIO], object], *, fsync: bool = True,
                 tmp_suffix: str = ".tmp") -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a callable given the open binary file) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + tmp_suffix)
    with open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def staging_folder(destination: str | Path) -> Path:
    """An empty ``<name>.tmp`` beside ``destination``: write the new folder there, then ``replace_folder``."""
    destination = Path(destination)
    staged = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    return staged


def replace_folder(staged: str | Path, destination: str | Path) -> Path:
    """Swap the fully written folder ``staged`` (a sibling) in for ``destination``. A folder cannot be renamed
    over a non-empty one, so the old one is moved aside first and removed after: a reader sees the old folder
    or the new one (for an instant, none), never a mix."""
    staged, destination = Path(staged), Path(destination)
    old = destination.with_name(destination.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if destination.exists():
        os.replace(destination, old)
    os.replace(staged, destination)
    shutil.rmtree(old, ignore_errors=True)
    return destination


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX: the directory entry is the folder's data)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PREFIX = "../shared/"  # the read-only data folder beside every checkout, CI's included


def portable_path(path: str | Path) -> str:
    """How a record that may be committed names a file: relative to the repository, or ``../shared/…`` for the
    shared data beside it, so the record holds on any machine; absolute only for a file outside both."""
    resolved = Path(path).resolve()
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent / "shared", SHARED_PREFIX)):
        try:
            return prefix + resolved.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(resolved)


def resolve_portable(recorded: str) -> Path:
    """The file a ``portable_path`` names, on this machine."""
    path = Path(recorded)
    return path if path.is_absolute() else REPO_ROOT / path
