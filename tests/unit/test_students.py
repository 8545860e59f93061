"""The student zoo, vocabulary pruning, save/load, and the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.flow.parse import parse_html
from students.encoder import StudentEncoder, pad_batch
from students.modeling import ENCODERS, StudentConfig, StudentModel
from students.registry import Registry
from students.vocab import prune_tokenizer, seen_token_ids
from tiny_model import build_tiny_student


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("aggregation", ["mean", "attentive", "cls"])
def test_every_student_ignores_padding(encoder, aggregation):
    torch.manual_seed(0)
    model = StudentModel(StudentConfig(encoder=encoder, aggregation=aggregation, num_layers=2, embedding_dim=16,
                                       hidden_dim=16, heads={"e5": 12, "use": 8}, vocab_size=50, dropout=0.0)).eval()
    short, long = [0, 5, 6, 7, 2], [0, 9, 8, 7, 6, 5, 4, 3, 2]
    alone, _ = pad_batch([short], 1)
    together, mask = pad_batch([short, long], 1)
    with torch.no_grad():
        a = model(alone, torch.ones_like(alone))
        b = model(together, mask)
        heads = model(together, mask, all_heads=True)
    assert a.shape == (1, 12) and {k: v.shape[1] for k, v in heads.items()} == {"e5": 12, "use": 8}
    assert torch.allclose(a[0], b[0], atol=1e-5), "padding changed a document's vector"


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_saved_config_carries_only_its_familys_fields_and_loads_back(encoder, tmp_path):
    from students.families import FAMILIES
    from students.modeling import FAMILY_FIELDS

    config = StudentConfig(encoder=encoder, num_layers=1, embedding_dim=8, hidden_dim=8, vocab_size=30,
                           num_attention_heads=2, heads={"e5": 4})
    torch.manual_seed(0)
    model = StudentModel(config).eval()
    model.save_pretrained(tmp_path)
    saved = set(json.loads((tmp_path / "config.json").read_text()))
    family = FAMILIES[encoder]
    used = set(family.fields(config) if hasattr(family, "fields") else family.FIELDS)
    assert not (saved & FAMILY_FIELDS) - used, f"{encoder} saved fields it does not read"
    ids, mask = pad_batch([[0, 5, 6, 2]], 1)
    with torch.no_grad():
        assert torch.allclose(StudentModel.from_pretrained(tmp_path).eval()(ids, mask), model(ids, mask), atol=1e-6)


def test_pruned_tokenizer_reproduces_the_teachers_ids(tiny_model_dir, contest_docs, tmp_path):
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [parse_html(raw, doc_id).title for doc_id, raw in list(contest_docs.items())[:80]]
    original = [np.asarray(t) for t in teacher(texts)["input_ids"]]
    old_to_new = prune_tokenizer(tiny_model_dir, seen_token_ids(original), tmp_path / "pruned")
    pruned = AutoTokenizer.from_pretrained(tmp_path / "pruned")
    assert len(pruned) < 5000 < len(teacher)
    for text, ids in zip(texts, original):
        assert pruned(text)["input_ids"] == old_to_new[ids].tolist()
    unseen = pruned("ჯერჯერობით")["input_ids"]  # Georgian: not in the Russian/English titles
    assert pruned.unk_token_id in unseen or len(unseen) > 2


def test_student_folder_round_trips_and_serves_like_a_teacher(tiny_model_dir, contest_docs, tmp_path):
    from pipeline.models import load_encoder

    texts = [parse_html(raw, doc_id).title for doc_id, raw in list(contest_docs.items())[:40]]
    folder = build_tiny_student(tmp_path / "student", tiny_model_dir, texts, encoder="gru")
    encoder = load_encoder(folder)
    assert isinstance(encoder, StudentEncoder) and encoder.version.startswith("tiny-student-gru@")
    vectors = encoder.encode(texts[:10])
    assert vectors.shape == (10, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = StudentEncoder(folder).encode(texts[:10], batch_size=3)
    assert np.allclose(vectors, again, atol=1e-5), "batching or reloading changed vectors"


def test_registry_versions_and_promotes(tiny_model_dir, contest_docs, tmp_path):
    texts = [parse_html(raw, doc_id).title for doc_id, raw in list(contest_docs.items())[:20]]
    a = build_tiny_student(tmp_path / "a", tiny_model_dir, texts, seed=1)
    b = build_tiny_student(tmp_path / "b", tiny_model_dir, texts, seed=2)
    registry = Registry(tmp_path / "registry")
    assert registry.promoted() is None
    v1 = registry.register(a)
    assert registry.register(a) == v1, "the same weights twice are one version"
    v2 = registry.register(b)
    assert [p.name for p in registry.versions()] == ["v1", "v2"]
    promotion = registry.promote(v2)
    assert registry.promoted() == promotion
    assert promotion.model_dir == str(v2.resolve())


def test_several_teachers_join_by_document_and_unlabelled_tokens_come_from_the_inputs(tiny_model_dir, contest_docs,
                                                                                      tmp_path):
    from transformers import AutoTokenizer

    from pipeline.flow.documents import InputStats, iter_documents
    from pipeline.models import load_teacher
    from students.data import load_distillation_data
    from teacher.label import label

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for doc_id, raw in list(contest_docs.items())[:30]:
        (crawl / f"{doc_id}.html").write_bytes(raw)
    docs = list(iter_documents([str(crawl)], InputStats()))
    tiny = load_teacher(str(tiny_model_dir), home=tmp_path)
    label(docs[:12], tiny, tmp_path / "tiny", max_chars=1500, progress=False)
    label(docs, load_teacher("use", home=tmp_path), tmp_path / "use", max_chars=1500, progress=False)
    data = load_distillation_data([tmp_path / "tiny", tmp_path / "use"], [str(crawl)],
                                  AutoTokenizer.from_pretrained(tiny_model_dir), cache=tmp_path / "tokens.npz")
    assert list(data.heads) == ["tiny_bert", "use"] and data.heads["use"] == 512
    assert len(data) == len(docs) and data.has_target["tiny_bert"].sum() == 12 and data.has_target["use"].all()
    # documents only USE labelled are tokenised like the primary teacher tokenised its own
    from pipeline.flow.embed import document_text

    row = data.doc_ids.index(docs[-1].doc_id)
    _, expected = tiny.encode([document_text(docs[-1])], return_tokens=True)
    assert data.tokens[row].tolist() == expected[0].tolist()
    again = load_distillation_data([tmp_path / "tiny", tmp_path / "use"], cache=tmp_path / "tokens.npz")
    assert len(again) == len(docs), "the token cache serves a rerun without the inputs"
