"""Teacher encoders and labelling: stored pseudo-labels must be exactly what the teacher says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import default_home
from pipeline.flow.embed import document_text
from pipeline.models import load_teacher
from pipeline.records import Document
from teacher.encoder import HFEncoder
from teacher.label import InputStats, LabelError, iter_documents, label, load_manifest, read_shards
from teacher.provision import provision_hf


def parsed(contest_docs, n, tmp_path) -> list[Document]:
    """The first ``n`` contest documents that parse, read back through the labeller's own input path."""
    folder = tmp_path / "crawl"
    folder.mkdir(exist_ok=True)
    for doc_id, raw in list(contest_docs.items())[: n + 20]:
        (folder / f"{doc_id}.html").write_bytes(raw)
    return list(iter_documents([folder], InputStats()))[:n]


def test_stored_vectors_and_tokens_equal_direct_encoding(tiny_model_dir, contest_docs, tmp_path):
    docs = parsed(contest_docs, 40, tmp_path)
    encoder = HFEncoder(tiny_model_dir, device="cpu", max_length=64)
    manifest = label(docs, encoder, tmp_path / "labels", batch_size=8, max_chars=500, shard_size=16, progress=False)
    assert [s["count"] for s in manifest["shards"]] == [16, 16, 8]
    assert manifest["teacher"] == encoder.version and manifest["dim"] == 32
    assert manifest["recipe"]["max_length_tokens"] == 64 and manifest["recipe"]["prefix"] == "passage: "
    shards = list(read_shards(tmp_path / "labels"))
    ids = np.concatenate([s["doc_ids"] for s in shards]).tolist()
    stored = np.concatenate([s["vectors"] for s in shards])
    assert ids == [d.doc_id for d in docs]
    direct = HFEncoder(tiny_model_dir, device="cpu", max_length=64).encode([document_text(d, 500) for d in docs])
    cosine = (stored * direct).sum(1)
    assert cosine.min() >= 0.999
    first = shards[0]
    tokens = first["token_ids"][first["token_offsets"][0]:first["token_offsets"][1]]
    expected = encoder.tokenizer("passage: " + document_text(docs[0], 500), truncation=True, max_length=64)["input_ids"]
    assert tokens.tolist() == expected


def test_use_teacher_labels_match_its_direct_encoding(contest_docs, tmp_path):
    docs = parsed(contest_docs, 12, tmp_path)
    encoder = load_teacher("use", home=tmp_path, threads=1)
    label(docs, encoder, tmp_path / "use", max_chars=300, shard_size=5, progress=False)
    stored = np.concatenate([s["vectors"] for s in read_shards(tmp_path / "use")])
    direct = encoder.encode([document_text(d, 300) for d in docs])
    assert stored.shape == (12, 512) and (stored * direct).sum(1).min() >= 0.999


def test_another_teacher_or_recipe_cannot_append_to_a_label_folder(tiny_model_dir, tmp_path):
    docs = [Document(doc_id=str(i), title=f"title {i}", text="body") for i in range(3)]
    encoder = HFEncoder(tiny_model_dir, device="cpu")
    label(docs, encoder, tmp_path, max_chars=100, progress=False)
    with pytest.raises(LabelError, match="use another --out"):
        label(docs, encoder, tmp_path, max_chars=200, progress=False)
    manifest = load_manifest(tmp_path)
    assert manifest["counts"]["labelled"] == 3
    (tmp_path / manifest["shards"][0]["file"]).write_bytes(b"corrupt")
    with pytest.raises(LabelError, match="changed since it was written"):
        label(docs, encoder, tmp_path, max_chars=100, progress=False)


def test_provision_any_hf_encoder_folder(tiny_model_dir, tmp_path):
    out = provision_hf(str(tiny_model_dir), tmp_path / "copy", pooling="cls", prefix="query: ")
    settings = json.loads((out / "newsevents_encoder.json").read_text())
    assert settings["pooling"] == "cls" and settings["prefix"] == "query: "
    vectors = HFEncoder(out, device="cpu").encode(["one text", "another"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


E5_DIR = default_home() / "models" / "multilingual-e5-small"


@pytest.mark.skipif(not (E5_DIR / "config.json").exists(), reason="multilingual-e5-small is not provisioned here "
                    "(`newsevents teacher provision`, 470 MB)")
def test_real_teacher_labels_equal_its_direct_encoding(contest_docs, tmp_path):
    docs = parsed(contest_docs, 24, tmp_path)
    teacher = load_teacher("e5", home=E5_DIR.parents[1])
    label(docs, teacher, tmp_path / "e5", batch_size=16, max_chars=1500, shard_size=10, progress=False)
    stored = np.concatenate([s["vectors"] for s in read_shards(tmp_path / "e5")])
    direct = teacher.encode([document_text(d, 1500) for d in docs], batch_size=1)  # no padding at all
    assert (stored * direct).sum(1).min() >= 0.999


def test_one_labelling_run_per_folder(tiny_model_dir, tmp_path):
    from teacher.label import _exclusive

    docs = [Document(doc_id="1", title="t", text="b")]
    with _exclusive(tmp_path):
        with pytest.raises(LabelError, match="another labelling run"):
            label(docs, HFEncoder(tiny_model_dir, device="cpu"), tmp_path, max_chars=100, progress=False)
    assert label(docs, HFEncoder(tiny_model_dir, device="cpu"), tmp_path, max_chars=100, progress=False)["counts"]["labelled"] == 1
