import numpy as np

from pipeline.flow.embed import document_text, embed
from pipeline.model_folder import model_version
from pipeline.models import load_encoder
from pipeline.records import Document, EmbeddedDocument


def test_document_text_recipe():
    doc = Document(doc_id="1", title=" Title ", text="Body " * 1000, description="desc")
    text = document_text(doc, max_chars=100)
    assert text.startswith("Title\nBody") and len(text) == 100
    assert document_text(Document(doc_id="2", title="T", text="", description="D")) == "T\nD"


def test_batch_order_and_padding_do_not_change_vectors(tiny_model_dir):
    encoder = load_encoder(tiny_model_dir, device="cpu", max_length=64)
    texts = ["short", "a much longer text " * 20, "medium length text here", "x"]
    together = encoder.encode(texts, batch_size=4)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_embed_carries_model_version_and_metadata(tiny_model_dir):
    encoder = load_encoder(tiny_model_dir, device="cpu")
    docs = [Document(doc_id=str(i), title=f"title {i}", text="text", lang="en", ingested_at_ms=5) for i in range(3)]
    out = embed(docs, encoder)
    assert [e.doc_id for e in out] == ["0", "1", "2"]
    assert all(e.model_version == model_version(tiny_model_dir) == encoder.version for e in out)
    assert out[0].vector.shape == (32,) and out[0].ingested_at_ms == 5
    wire = EmbeddedDocument.from_bytes(out[0].to_bytes())
    np.testing.assert_array_equal(wire.vector, out[0].vector)
