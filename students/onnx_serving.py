"""Serving a ``teacher-cut`` student through ONNX Runtime, with its layers in dynamic int8.

Why: on these CPUs ONNX Runtime's int8 MatMuls run a cut BERT faster than torch (README, *Students*). A folder
keeps one copy of each weight. ``model.safetensors`` holds the piece table (in the teacher's own Q4_0 blocks,
bit-exact, read by both runtimes); ``model.onnx`` holds the layers (and the head) in int8 and starts from the
gathered piece rows (``inputs_embeds``), so the table is not stored twice. ``newsevents_encoder.json`` says
``"runtime": "onnxruntime"``. A trained folder also keeps its layers in fp16 in the safetensors (what the int8 graph
is scored against); a shipped one does not (``keep_layers_in_onnx_only``, ``"layers": "onnx"``): torch (a GPU, the
``quantize`` fallback, ``retrain`` continuing it) reads them back from the graph, dequantised (``layers_from_onnx``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.model_folder import ENCODER_SETTINGS_FILE, EncoderSettings, model_version
from students.cut import q4_0_unpack
from students.tokenizing import FolderTokenizer, length_batches, pad_token_lists

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "model.safetensors"
# documents per ONNX Runtime run, however many a caller batches: on the 2-core CPU the six-layer int8 cut ran
# 113 docs/s in runs of 8 and 82 in runs of 32 (the same 256 contest documents, 32 per call; README, Students)
RUN_BATCH = 8
TABLE_KEYS = ("bert.embeddings.word_embeddings.weight_q4", "bert.embeddings.word_embeddings.scale")


def onnx_served(folder: Path) -> bool:
    return _encoder_settings(Path(folder)).get("runtime") == "onnxruntime" and (Path(folder) / ONNX_FILE).exists()


def layers_in_onnx(folder: Path) -> bool:
    """Whether the folder keeps its layers only in its graph (``"layers": "onnx"``: the safetensors is the table)."""
    return onnx_served(folder) and _encoder_settings(Path(folder)).get("layers") == "onnx"


def _encoder_settings(folder: Path) -> dict:
    path = folder / ENCODER_SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _update_encoder_settings(folder: Path, values: dict) -> None:
    (folder / ENCODER_SETTINGS_FILE).write_text(json.dumps({**_encoder_settings(folder), **values}, indent=2))


def keep_layers_in_onnx_only(folder: Path) -> None:
    """Drop the fp16 torch copy of the layers from an exported folder: ``model.safetensors`` keeps the piece table,
    ``model.onnx`` the layers. What is served (ONNX Runtime int8) is unchanged; the folder is a third smaller."""
    from safetensors.numpy import load_file, save_file

    folder = Path(folder)
    if not onnx_served(folder):
        raise ValueError(f"{folder}: not exported for ONNX Runtime; its torch weights are its only layers")
    tensors = load_file(str(folder / WEIGHTS_FILE))
    save_file({k: tensors[k] for k in TABLE_KEYS}, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    _update_encoder_settings(folder, {"layers": "onnx"})


def layers_from_onnx(folder: Path, expected: set[str]) -> dict[str, np.ndarray]:
    """The student's torch weights ``expected`` (less the piece table), read back from ``model.onnx`` by where each
    initializer is used: the exporter names every node after the module it was traced in (``/bert/encoder/layer.0/
    attention/self/query/MatMul``), and a weight feeds its module's MatMul (transposed; MatMulInteger in int8:
    dequantised by its per-channel scale and zero point), Gemm, Add (bias), Gather (a table) or LayerNormalization.
    By use, not by name: the exporter stores identical tensors (untrained LayerNorms) once, under one name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(Path(folder) / ONNX_FILE)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # the exporter's deduplication: the other uses read an Identity of the one kept
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        for param, array in _parameters_of(node, values).items():
            key = _resolve(f"{module}.{param}", expected)
            if key and array is not None:
                state[key] = np.array(array, dtype=np.float32)
    return state


def _parameters_of(node, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"weight": ..., "bias": ...}`` in torch layout, of the module whose weights this node reads."""
    def value(index: int) -> np.ndarray | None:
        return values.get(node.input[index]) if len(node.input) > index else None

    op = node.op_type
    if op in ("MatMul", "MatMulInteger") and value(1) is not None:
        weight = value(1).astype(np.float32)
        if op == "MatMulInteger":  # onnxruntime.quantization's names: <weight>_quantized, <weight>_scale
            scale = values[node.input[1].removesuffix("_quantized") + "_scale"]
            weight = (weight - value(3).astype(np.float32)) * scale
        return {"weight": weight.T}
    if op == "Gemm" and value(1) is not None:
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        return {"weight": value(1) if transposed else value(1).T,
                **({"bias": value(2)} if value(2) is not None else {})}
    if op == "Add":
        return {"bias": next((values[i] for i in node.input if i in values), None)}
    if op == "Gather" and value(0) is not None:
        return {"weight": value(0)}
    if op == "LayerNormalization":
        return {"weight": value(1), "bias": value(2)}
    return {}


def _resolve(traced: str, expected: set[str]) -> str | None:
    """The torch name a traced path is: itself, or the one expected name it ends (``e5.bias`` → ``heads.e5.bias``:
    a ModuleDict entry is traced under its key alone)."""
    if traced in expected:
        return traced
    matches = [k for k in expected if k.endswith("." + traced)]
    return matches[0] if len(matches) == 1 else None


def export_onnx(folder: Path, quantize: str = "int8", per_channel: bool = True) -> Path:
    """Write ``folder/model.onnx`` from the folder's torch weights (its table rewritten in Q4_0 blocks first, when
    it is not already) and mark the folder as served by ONNX Runtime. ``quantize``: ``int8`` (dynamic, MatMul
    weights) or ``none``."""
    import tempfile

    import torch

    from students.modeling import StudentModel

    folder = Path(folder)
    model = StudentModel.from_pretrained(folder, dtype=torch.float32).eval()
    if model.config.encoder != "teacher-cut":
        raise ValueError(f"{folder}: ONNX serving is for teacher-cut students, not {model.config.encoder}")
    if model.config.embedding_storage != "q4":  # the table both runtimes read, stored once in the safetensors
        model.with_embedding_storage("q4")
        model.half().save_pretrained(folder, safe_serialization=True)
        model = model.float()
    wrapper = _FromRows(model).eval()
    hidden = model.bert.config.hidden_size
    rows, mask = torch.randn(2, 16, hidden), torch.ones(2, 16, dtype=torch.long)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        torch.onnx.export(wrapper, (rows, mask), str(plain), input_names=["inputs_embeds", "attention_mask"],
                          output_names=["vectors"], opset_version=17, dynamo=False,
                          dynamic_axes={"inputs_embeds": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "vectors": {0: "batch"}})
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(plain), str(folder / ONNX_FILE), weight_type=QuantType.QInt8,
                             per_channel=per_channel, op_types_to_quantize=["MatMul"])
        elif quantize == "none":
            (folder / ONNX_FILE).write_bytes(plain.read_bytes())
        else:
            raise ValueError(f"quantize must be int8 or none, not {quantize!r}")
    _update_encoder_settings(folder, {"runtime": "onnxruntime", "onnx_quantize": quantize})
    return folder / ONNX_FILE


def _FromRows(model):
    """The student from gathered piece rows to unit vectors (what the ONNX graph computes)."""
    import torch

    class FromRows(torch.nn.Module):
        def __init__(self, student):
            super().__init__()
            self.student = student

        def forward(self, inputs_embeds, attention_mask):
            student = self.student
            states = student.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            vectors = student.heads[student.config.primary_head](pooled)
            return torch.nn.functional.normalize(vectors, dim=-1)

    return FromRows(model)


class OnnxStudentEncoder:
    """``encode(texts) -> (n, dim)`` unit vectors from a teacher-cut folder exported by ``export_onnx``: the pruned
    tokenizer, the int8 piece rows gathered in numpy, the layers in ONNX Runtime. No torch is imported."""

    def __init__(self, folder: str | Path, max_length: int = 256, threads: int | None = None):
        import onnxruntime
        from safetensors.numpy import load_file

        self.folder = Path(folder)
        self.settings = EncoderSettings.from_folder(self.folder)
        config = json.loads((self.folder / "config.json").read_text())
        self.max_length = min(max_length, int(config["bert_config"]["max_position_embeddings"]))
        self.pad_id = int(config["pad_token_id"])
        self.dim = int(next(iter(config["heads"].values())))
        tensors = load_file(str(self.folder / "model.safetensors"))
        self.table, self.scale = tensors[TABLE_KEYS[0]], tensors[TABLE_KEYS[1]]
        self.tokenize = FolderTokenizer(self.folder, self.settings.prefix, self.max_length)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(self.folder / ONNX_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.device = "cpu"
        self.precision = f"{self.settings_quantize()}-onnxruntime"
        self.version = model_version(self.folder)

    def settings_quantize(self) -> str:
        raw = _encoder_settings(self.folder)
        return "fp32" if raw.get("onnx_quantize") == "none" else str(raw.get("onnx_quantize", "int8"))

    def encode_ids(self, token_lists: list, batch_size: int = 32) -> np.ndarray:
        """Token id lists (in the student's vocabulary) → unit vectors, in input order; runs by length, at most
        ``RUN_BATCH`` documents each."""
        out = np.zeros((len(token_lists), self.dim), dtype=np.float32)
        for idx in length_batches(token_lists, min(batch_size, RUN_BATCH)):
            ids, mask = pad_token_lists([token_lists[i] for i in idx], self.pad_id)
            rows = q4_0_unpack(self.table[ids], self.scale[ids])
            out[idx] = self.session.run(None, {"inputs_embeds": rows, "attention_mask": mask})[0]
        return out

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self.encode_ids(self.tokenize(texts), batch_size)
