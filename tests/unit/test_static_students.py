"""Students that start from the teacher: per-piece teacher vectors, SIF weights, growing a static student a CNN,
continuing a served student, and the losses."""

from __future__ import annotations

import json

import numpy as np
import torch

from pipeline.flow.parse import parse_html
from students.construction import BaseStudent
from students.losses import cosine_loss, similarity_loss
from students.modeling import StudentConfig, StudentModel
from students.preparation import build_vocabulary, kept_positions
from students.static import reduce_table, sif_weights, teacher_piece_vectors
from students.train import TrainSettings
from students.vocab import prune_tokenizer, seen_token_ids, vocabulary_map


def test_piece_vectors_are_the_teachers_output_for_each_piece_and_are_cached(tiny_model_dir, tmp_path):
    from transformers import AutoModel

    cache = tmp_path / "pieces.npz"
    first = teacher_piece_vectors(tiny_model_dir, np.array([100, 5000, 7]), cache=cache)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():  # <s> piece </s>, mean pooled
        expected = model(torch.tensor([[0, 5000, 2]])).last_hidden_state.mean(1)[0].numpy()
    assert first.shape == (3, 32) and np.allclose(first[1], expected, atol=1e-5)
    stored = np.load(cache)["piece_ids"].tolist()
    assert stored == [7, 100, 5000]
    again = teacher_piece_vectors(tiny_model_dir, np.array([5000, 9]), cache=cache)  # one new piece
    assert np.allclose(again[0], first[1], atol=1e-6) and np.load(cache)["piece_ids"].tolist() == [7, 9, 100, 5000]


def test_sif_weights_make_frequent_pieces_count_less():
    weights = sif_weights(np.array([1_000_000, 1000, 10]))
    assert weights[0] < weights[1] < weights[2] <= 1.0


def test_reduced_table_keeps_the_leading_directions():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((500, 8)) @ np.diag([10, 5, 1, 1, 1, 0.1, 0.1, 0.1])
    reduced = reduce_table(table.astype(np.float32), 2)
    assert reduced.shape == (500, 2)
    assert abs(np.linalg.norm(reduced, axis=1).mean() - 1.0) < 1e-4
    assert abs(np.corrcoef(reduced[:, 0], table[:, 0])[0, 1]) > 0.95


def test_vocabulary_keeps_the_most_frequent_and_returns_counts():
    tokens = [np.array([5, 5, 5, 7, 7, 9]), np.array([5, 7, 11])]
    kept, counts = build_vocabulary(tokens, min_count=2, max_vocab=10)
    assert kept.tolist() == [5, 7] and counts.tolist() == [4, 3]
    kept, counts = build_vocabulary(tokens, min_count=1, max_vocab=1)
    assert kept.tolist() == [5] and counts.tolist() == [4]


def test_token_dropout_keeps_the_ends_and_the_order():
    rng = np.random.default_rng(0)
    tokens = np.arange(100)
    dropped = tokens[kept_positions(len(tokens), 0.5, rng)]
    assert dropped[0] == 0 and dropped[-1] == 99 and 25 < len(dropped) < 75
    assert np.all(np.diff(dropped) > 0)
    short = np.array([0, 5, 2])
    assert short[kept_positions(3, 0.9, rng)].tolist() == [0, 5, 2]


def test_similarity_loss_is_zero_only_when_pairwise_cosines_match():
    torch.manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    assert similarity_loss(target @ rotation, target) < 1e-10  # a rotated space has the same similarities
    assert cosine_loss(target @ rotation, target) > 0.1  # which the per-document loss does not accept
    assert similarity_loss(torch.randn(8, 16), target) > 1e-3


def test_static_cnn_grown_from_a_static_student_starts_as_it(tiny_model_dir, tmp_path):
    config = StudentConfig(encoder="static", aggregation="mean", embedding_dim=16, vocab_size=60, heads={"e5": 8},
                           dropout=0.0)
    torch.manual_seed(0)
    static = StudentModel(config).eval()
    static.save_pretrained(tmp_path / "static")
    (tmp_path / "static" / "training.json").write_text(json.dumps({"target_centres": {"e5": [0.0] * 8}}))
    base = BaseStudent.load(tmp_path / "static", {"e5": 8})
    grown = base.adapted(TrainSettings(encoder="static-cnn", num_layers=1, hidden_dim=12,
                                       aggregation="mean")).eval()
    assert grown.config.encoder == "static-cnn" and grown.config.vocab_size == 60
    ids = torch.tensor([[0, 5, 9, 11, 2]])
    with torch.no_grad():
        assert torch.allclose(static(ids, torch.ones_like(ids)), grown(ids, torch.ones_like(ids)), atol=1e-6)
    same = base.adapted(TrainSettings(encoder="static", aggregation="mean"))
    assert same is base.model


def test_vocabulary_map_reads_teacher_ids_into_an_existing_students_vocabulary(tiny_model_dir, contest_docs,
                                                                              tmp_path):
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [parse_html(raw, doc_id).title for doc_id, raw in list(contest_docs.items())[:30]]
    ids = [np.asarray(t) for t in teacher(texts)["input_ids"]]
    old_to_new = prune_tokenizer(tiny_model_dir, seen_token_ids(ids), tmp_path / "student")
    mapped = vocabulary_map(tiny_model_dir, tmp_path / "student")
    assert np.array_equal(mapped, old_to_new)


def test_an_int8_table_serves_the_same_vectors_at_a_quarter_of_the_size(tmp_path):
    from students.encoder import encode_token_lists

    torch.manual_seed(0)
    model = StudentModel(StudentConfig(encoder="static", aggregation="mean", embedding_dim=64, vocab_size=3000,
                                       heads={"e5": 16}, dropout=0.0)).eval()
    tokens = [np.array([0, 5, 9, 700, 2]), np.array([0, 2999, 42, 2])]
    expected = encode_token_lists(model, tokens, "cpu")
    model.save_pretrained(tmp_path / "float")
    model.with_embedding_storage("int8").save_pretrained(tmp_path / "int8")
    loaded = StudentModel.from_pretrained(tmp_path / "int8", dtype=torch.float32).eval()
    assert loaded.config.embedding_storage == "int8" and loaded.embeddings.weight_int8.dtype == torch.int8
    got = encode_token_lists(loaded, tokens, "cpu")
    assert np.all(np.sum(got * expected, axis=1) > 0.9999)
    size = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("float", "int8")}
    assert size["int8"] < 0.3 * size["float"]
    back = loaded.with_embedding_storage("float")  # what training continues from
    assert isinstance(back.embeddings, torch.nn.Embedding) and np.allclose(
        encode_token_lists(back, tokens, "cpu"), got, atol=1e-6)


def test_token_states_are_stored_per_token_and_train_a_per_token_head(tiny_model_dir, contest_docs, tmp_path):
    from pipeline.models import load_encoder
    from students.data import load_distillation_data
    from students.train import train
    from teacher.label import label

    docs = [parse_html(raw, doc_id) for doc_id, raw in list(contest_docs.items())[:48]]
    encoder = load_encoder(tiny_model_dir, max_length=64)
    out = tmp_path / "labels"
    label(docs[:24], encoder, out, max_chars=300, shard_size=16, progress=False, token_states=8)
    label(docs, encoder, out, max_chars=300, shard_size=16, progress=False, token_states=8)  # resumes
    data = load_distillation_data([out])
    assert len(data) == 48 and data.token_targets is not None
    assert all(s.shape == (len(t), 8) and s.dtype == np.float16 for s, t in zip(data.token_targets, data.tokens))
    basis = np.load(out / "token_pca.npz")  # one basis for the whole folder, the first batch's
    _, _, states = encoder.encode([docs[30].title], return_tokens=True, return_token_states=True)
    assert basis["components"].shape == (8, 32)
    settings = TrainSettings(encoder="static", aggregation="mean", embedding_dim=16, min_token_count=1,
                             max_epochs=1, token_loss_weight=1.0, batch_size=8, validation_fraction=0.2)
    result = train([str(out)], tmp_path / "run", settings, teacher_folder=tiny_model_dir, progress=False)
    saved = StudentModel.from_pretrained(result["model"])
    assert saved.config.token_target_dim == 8 and result["history"][0]["train_loss"] > 0


def test_a_static_student_is_served_by_numpy_with_the_torch_students_vectors_and_no_torch(tiny_model_dir,
                                                                                       contest_docs, tmp_path):
    """Mean and attentive pooling, float and int8 tables: the numpy runtime tokenises as transformers does and
    gives torch's vectors; an embed stage serving it never imports torch."""
    import shutil
    import subprocess
    import sys

    from pipeline.flow.embed import document_text
    from pipeline.models import load_encoder
    from students.encoder import StudentEncoder
    from students.static_runtime import StaticNumpyEncoder

    texts = [document_text(parse_html(raw, doc_id), 2000) for doc_id, raw in list(contest_docs.items())[:40]]
    texts += ["", "trailing space ", "Землетрясение в Чили"]
    torch.manual_seed(0)
    for aggregation in ("mean", "attentive"):
        for storage in ("float", "int8"):
            folder = tmp_path / f"{aggregation}-{storage}"
            model = StudentModel(StudentConfig(encoder="static", aggregation=aggregation, embedding_dim=32,
                                               vocab_size=250_002, heads={"e5": 16}))
            model.with_embedding_storage(storage).save_pretrained(folder)
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(tiny_model_dir / name, folder / name)
            (folder / "newsevents_encoder.json").write_text(json.dumps(
                {"name": "s", "pooling": "student", "prefix": "passage: ", "normalize": True}))
            served = load_encoder(folder, max_length=64)
            reference = StudentEncoder(folder, device="cpu", max_length=64)
            assert isinstance(served, StaticNumpyEncoder) and served.version == reference.version
            assert served.tokenize(texts) == reference.tokenize(texts)
            cosines = np.sum(served.encode(texts, batch_size=7) * reference.encode(texts), axis=1)
            assert cosines.min() > 0.99999, (aggregation, storage, cosines.min())
    probe = ("import sys; from pipeline.config import Settings; from pipeline.kafka.stages import EmbedStage, InRecord; "
             "from pipeline.records import Document; "
             f"stage = EmbedStage(Settings(model_dir={str(folder)!r})); "
             "stage.process([InRecord(b'd', Document(doc_id='d', title='a', text='b').to_bytes())]); "
             "print('torch' in sys.modules)")  # the embed stage a worker runs
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
