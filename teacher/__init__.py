"""Teachers: large encoders whose vectors are the targets a student is distilled from."""

from __future__ import annotations

from pathlib import Path

def load_teacher(spec: str, *, home: Path, device: str = "auto", max_length: int = 256, quantize: str | None = None,
                 threads: int | None = None):
    """``e5`` (provisioned multilingual-e5-small), ``use`` (multilingual USE v3) or a Hugging Face model folder."""
    if spec == "use":
        from teacher.use import USEEncoder

        return USEEncoder(threads=threads)
    from teacher.encoder import HFEncoder

    if spec == "e5":
        from teacher.provision import provision_e5

        folder = provision_e5(home / "models" / "multilingual-e5-small")
    else:
        folder = Path(spec)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"teacher {spec!r}: not 'e5', 'use' or a Hugging Face model folder with config.json")
    from pipeline.embed import load_encoder

    return load_encoder(folder, device=device, max_length=max_length, quantize=quantize, threads=threads)
