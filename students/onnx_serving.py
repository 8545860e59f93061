"""Serving a ``teacher-cut`` student through ONNX Runtime, with its layers in dynamic int8.

Why: on these CPUs ONNX Runtime's int8 MatMuls run a cut BERT faster than torch (README, *Students*). The folder
format (one copy of each weight: the Q4_0 piece table in the safetensors, the int8 layers in the graph, which
starts from the gathered piece rows) is ``students.onnx_folder``; this module exports a trained folder to it and
serves it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.model_folder import EncoderSettings, model_version
from students.cut import q4_0_unpack
from students.onnx_folder import ONNX_FILE, TABLE_KEYS, encoder_settings_of, update_encoder_settings
from students.tokenizing import FolderTokenizer, length_batches, pad_token_lists

# documents per ONNX Runtime run, however many a caller batches: on the 2-core CPU the six-layer int8 cut ran
# 113 docs/s in runs of 8 and 82 in runs of 32 (the same 256 contest documents, 32 per call; README, Students)
RUN_BATCH = 8


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
    update_encoder_settings(folder, {"runtime": "onnxruntime", "onnx_quantize": quantize})
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
        raw = encoder_settings_of(self.folder)
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
