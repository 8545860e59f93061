"""The stage wrappers' pure side: records in, records out, no broker."""

import orjson

from pipeline.config import Settings
from pipeline.kafka.stages import ClusterStage, EmbedStage, InRecord, ParseStage
from pipeline.records import HEADER_FORMAT, DeadLetter, Document, EmbeddedDocument, EventAssignment

SETTINGS = Settings()


def test_parse_stage_routes_good_documents_and_dead_letters(contest_docs):
    key, raw = next(iter(contest_docs.items()))
    json_doc = orjson.dumps({"id": "j1", "title": "Правительство России утвердило новый бюджет", "text": "Министерство финансов сообщило, что расходы на образование вырастут в следующем году.", "lang": None})
    out = ParseStage(SETTINGS).process([
        InRecord(key.encode(), raw, {}, 1000),
        InRecord(b"bad", b"\x00\x01binary", {"source": b"crawler-7"}, 1000),
        InRecord(None, raw, {}, 1000),
        InRecord(b"j1", json_doc, {HEADER_FORMAT: b"document-json"}, 1000),
        InRecord(b"j2", b"{not json", {HEADER_FORMAT: b"document-json"}, 1000),
    ])
    assert [o.topic for o in out] == ["news.docs", "news.dlq", "news.dlq", "news.docs", "news.dlq"]
    doc = Document.from_bytes(out[0].value)
    assert doc.doc_id == key and doc.ingested_at_ms == 1000 and doc.title
    letter = DeadLetter.from_bytes(out[1].value)
    assert (letter.stage, letter.reason, letter.key, letter.value) == ("parse", "binary", "bad", b"\x00\x01binary")
    assert letter.headers == {"source": "crawler-7"}
    assert DeadLetter.from_bytes(out[2].value).reason == "no-key"
    assert Document.from_bytes(out[3].value).lang == "ru"
    assert DeadLetter.from_bytes(out[4].value).reason == "bad-json"


def test_embed_and_cluster_stages_chain(tiny_model_dir):
    # raw space: a repost's vector equals its original's only before centring moves (centring: test_events.py)
    settings = Settings(model_dir=str(tiny_model_dir), threshold=0.99999, centring="none")
    docs = [Document(doc_id=f"d{i}", title=f"Title number {i}", text=f"body {i} " * (i + 1)) for i in range(5)]
    repost = Document(doc_id="repost", title=docs[2].title, text=docs[2].text)
    records = [InRecord(d.doc_id.encode(), d.to_bytes()) for d in docs + [repost]]
    records.append(InRecord(b"junk", b"{}"))
    embedded = EmbedStage(settings).process(records)
    assert [o.topic for o in embedded].count("news.vectors") == 6
    assert DeadLetter.from_bytes(next(o for o in embedded if o.topic == "news.dlq").value).reason == "bad-document"
    vectors = [InRecord(o.key, o.value) for o in embedded if o.topic == "news.vectors"]
    cluster = ClusterStage(settings)
    events = {EventAssignment.from_bytes(o.value).doc_id: EventAssignment.from_bytes(o.value)
              for o in cluster.process(vectors)}
    assert set(events) == {"d0", "d1", "d2", "d3", "d4", "repost"}
    assert events["repost"].event_id == events["d2"].event_id
    assert len({e.event_id for e in events.values()}) == 5


def test_cluster_stage_dead_letters_bad_and_mismatched_vectors():
    import numpy as np

    good = EmbeddedDocument(doc_id="a", vector=np.ones(8, dtype=np.float32), model_version="m")
    other = EmbeddedDocument(doc_id="b", vector=np.ones(4, dtype=np.float32), model_version="m")  # same model, 4-d?
    out = ClusterStage(SETTINGS).process([InRecord(b"a", good.to_bytes()), InRecord(b"b", other.to_bytes()),
                                          InRecord(b"c", b"not json")])
    reasons = sorted(DeadLetter.from_bytes(o.value).reason for o in out if o.topic == "news.dlq")
    assert reasons == ["bad-vector", "dimension-mismatch"]
    assert [o.key for o in out if o.topic == "news.events"] == [b"a"]


def test_cluster_stage_gives_a_new_model_its_own_generation_and_keeps_known_documents_events():
    import numpy as np

    from pipeline.records import EventAssignment

    def vector(model: str, doc_id: str, values, threshold=None) -> InRecord:
        doc = EmbeddedDocument(doc_id=doc_id, vector=np.asarray(values, dtype=np.float32), model_version=model,
                               cluster_threshold=threshold)
        return InRecord(doc_id.encode(), doc.to_bytes())

    stage = ClusterStage(SETTINGS.replace(centring="none"))  # toy 2-d vectors: raw space
    first = stage.process([vector("old", "a", [1, 0, 0, 0]), vector("old", "b", [1, 0.01, 0, 0])])
    old_event = {EventAssignment.from_bytes(o.value).event_id for o in first}
    assert len(old_event) == 1
    # the new model: another dimension and its own tuned threshold; "a" comes again (a redelivery re-embedded)
    second = stage.process([vector("new", "a", [0, 1], 0.5), vector("new", "c", [1, 0], 0.5),
                            vector("new", "d", [0.9, 0.5], 0.5)])
    events = {o.key: EventAssignment.from_bytes(o.value).event_id for o in second}
    assert events[b"a"] in old_event  # no second event id for a document
    assert events[b"c"] not in old_event and events[b"c"] == events[b"d"]  # 0.87 >= the new model's 0.5
    assert list(stage.generations) == ["old", "new"] and stage.generations["new"].config.threshold == 0.5


def test_a_bug_costs_only_the_records_that_trigger_it():
    class Fragile(ParseStage):
        def process(self, batch):
            if any(r.key == b"boom" for r in batch):
                raise RuntimeError("bug")
            return super().process(batch)

    raw = b"<html><head><meta property='og:title' content='Fine title here'/></head><body><article><p>Body</p></article></body></html>"
    out = Fragile(SETTINGS).process_safely([InRecord(b"ok", raw), InRecord(b"boom", raw, topic="news.raw", offset=7)])
    assert [o.topic for o in out] == ["news.docs", "news.dlq"]
    letter = DeadLetter.from_bytes(out[1].value)
    assert letter.reason == "internal-error" and "bug" in letter.detail
    assert (letter.source_topic, letter.source_offset, letter.value) == ("news.raw", 7, raw)


def test_oversized_values_are_cut_in_the_dead_letter_but_located():
    settings = Settings(max_message_bytes=3000)
    out = ParseStage(settings).process([InRecord(b"big", b"\x00" * 10_000, topic="news.raw", partition=1, offset=42)])
    letter = DeadLetter.from_bytes(out[0].value)
    assert len(out[0].value) < 3000 and letter.value_truncated and letter.value_size == 10_000
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("news.raw", 1, 42)


def test_wire_records_with_wrong_types_are_dead_letters_not_crashes():
    bad = [b'{"doc_id": 5, "vector": "AACAPw==", "model_version": "m"}',
           b'{"doc_id": "x", "vector": "AACAPw==", "model_version": "m", "published_time": 123}',
           b'{"doc_id": "x", "vector": "AADAfw==", "model_version": "m"}']
    out = ClusterStage(SETTINGS).process_safely([InRecord(b"k", v) for v in bad])
    assert [DeadLetter.from_bytes(o.value).reason for o in out] == ["bad-vector"] * 3


def test_cluster_threshold_precedence(tmp_path):
    from pipeline.flow.cluster import DEFAULT_THRESHOLD
    from pipeline.model_folder import write_cluster_threshold
    from pipeline.models import served_model

    def threshold(**flags) -> tuple[float, str]:
        served = served_model(Settings(model_dir=str(tmp_path), **flags), provision=False)
        return served.threshold, served.threshold_from

    assert threshold() == (DEFAULT_THRESHOLD, "default")
    write_cluster_threshold(tmp_path, 0.87, tuned_on="dev")
    assert threshold() == (0.87, "tuned")  # tuned for the served model
    assert threshold(threshold=0.8) == (0.8, "flag")  # the flag wins


def test_each_model_is_linked_in_the_space_it_was_tuned_in(tmp_path, tiny_model_dir):
    """A model folder names its centring with its threshold; vectors carry both to the cluster stage, flags win,
    and a threshold tuned in another space is not used in this one."""
    import shutil

    import numpy as np

    from pipeline.flow.cluster import DEFAULT_THRESHOLD
    from pipeline.model_folder import write_cluster_threshold
    from pipeline.models import served_model

    def cluster_space(settings: Settings) -> tuple[str, float]:
        served = served_model(settings)
        return served.centring, served.threshold

    model = tmp_path / "student"
    shutil.copytree(tiny_model_dir, model)
    write_cluster_threshold(model, 0.76, tuned_on="dev", centring="global")
    assert cluster_space(Settings(model_dir=str(model))) == ("global", 0.76)
    assert cluster_space(Settings(model_dir=str(model), centring="language")) == ("language", DEFAULT_THRESHOLD)
    assert cluster_space(Settings(model_dir=str(model), centring="global", threshold=0.7)) == ("global", 0.7)
    (model / "newsevents_cluster.json").write_text('{"threshold": 0.92}')  # tuned before centring: raw
    assert cluster_space(Settings(model_dir=str(model))) == ("none", 0.92)
    write_cluster_threshold(model, 0.76, tuned_on="dev", centring="global")

    settings = Settings(model_dir=str(model))
    doc = Document(doc_id="d", title="Earthquake in Chile", text="A strong quake hit the coast.")
    vector = next(o for o in EmbedStage(settings).process([InRecord(b"d", doc.to_bytes())]) if o.topic == "news.vectors")
    embedded = EmbeddedDocument.from_bytes(vector.value)
    assert (embedded.cluster_centring, embedded.cluster_threshold) == ("global", 0.76)
    stage = ClusterStage(Settings(model_dir=str(tiny_model_dir)))  # the cluster worker serves another default
    stage.process([InRecord(b"d", vector.value)])
    assert (stage.clusterer.config.centring, stage.clusterer.config.threshold) == ("global", 0.76)
    flagged = ClusterStage(Settings(centring="language"))
    flagged.process([InRecord(b"d", vector.value)])
    assert (flagged.clusterer.config.centring, flagged.clusterer.config.threshold) == ("language", DEFAULT_THRESHOLD)
    old = EmbeddedDocument(doc_id="o", vector=np.ones(8, dtype=np.float32), model_version="old", cluster_threshold=0.92)
    legacy = ClusterStage(Settings())
    legacy.process([InRecord(b"o", old.to_bytes())])  # from an embedder before centring: its raw threshold, raw
    assert (legacy.clusterer.config.centring, legacy.clusterer.config.threshold) == ("none", 0.92)
