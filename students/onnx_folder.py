"""The folder of a ``teacher-cut`` student served by ONNX Runtime (numpy and onnx only: ``students.modeling`` reads
it, ``students.onnx_serving`` writes and serves it).

``model.safetensors`` holds the piece table in the teacher's Q4_0 blocks; ``model.onnx`` the layers and head;
``newsevents_encoder.json`` says ``"runtime": "onnxruntime"`` and, once shipped, ``"layers": "onnx"``: the fp16 torch
copy of the layers dropped (``keep_layers_in_onnx_only``), torch reading them back from the graph
(``layers_from_onnx``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.model_folder import ENCODER_SETTINGS_FILE

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "model.safetensors"
TABLE_KEYS = ("bert.embeddings.word_embeddings.weight_q4", "bert.embeddings.word_embeddings.scale")


def onnx_served(folder: Path) -> bool:
    return encoder_settings_of(Path(folder)).get("runtime") == "onnxruntime" and (Path(folder) / ONNX_FILE).exists()


def layers_in_onnx(folder: Path) -> bool:
    """Whether the folder keeps its layers only in its graph (``"layers": "onnx"``: the safetensors is the table)."""
    return onnx_served(folder) and encoder_settings_of(Path(folder)).get("layers") == "onnx"


def encoder_settings_of(folder: Path) -> dict:
    path = folder / ENCODER_SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def update_encoder_settings(folder: Path, values: dict) -> None:
    (folder / ENCODER_SETTINGS_FILE).write_text(json.dumps({**encoder_settings_of(folder), **values}, indent=2))


def keep_layers_in_onnx_only(folder: Path) -> None:
    """Drop the fp16 torch copy of the layers from an exported folder: ``model.safetensors`` keeps the piece table,
    ``model.onnx`` the layers. What is served (ONNX Runtime int8) is unchanged; the folder is a third smaller."""
    from safetensors.numpy import load_file, save_file

    folder = Path(folder)
    if not onnx_served(folder):
        raise ValueError(f"{folder}: not exported for ONNX Runtime; its torch weights are its only layers")
    tensors = load_file(str(folder / WEIGHTS_FILE))
    save_file({k: tensors[k] for k in TABLE_KEYS}, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    update_encoder_settings(folder, {"layers": "onnx"})


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
