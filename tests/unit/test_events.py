"""Centring and merges: stories found whatever the arrival order, in every language, exactly again after a crash."""

from __future__ import annotations

import numpy as np

from pipeline.config import Settings
from pipeline.evaluate import resolve_event
from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer
from pipeline.kafka.stages import ClusterStage, InRecord
from pipeline.records import EmbeddedDocument, EventAssignment, EventMerge

DIM = 32


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def doc(doc_id: str, vector, lang: str = "en", hour: int = 10) -> EmbeddedDocument:
    return EmbeddedDocument(doc_id=doc_id, vector=unit(vector), model_version="m", lang=lang,
                            published_time=f"2019-11-08T{hour:02d}:00:00+00:00")


def two_seeds_and_a_bridge(rng) -> list[EmbeddedDocument]:
    """One story told two ways: seeds A and B (cosine ~0.66 to each other, below the threshold of 0.8), then
    documents in between (cosine ~0.91 to both) that show they are one story; and an unrelated story C."""
    basis = np.linalg.qr(rng.standard_normal((DIM, 3)))[0].T
    story, side, other = basis
    noise = lambda: 0.02 * rng.standard_normal(DIM)  # noqa: E731
    docs = [doc(f"a{i}", story + 0.45 * side + noise()) for i in range(3)]
    docs += [doc(f"b{i}", story - 0.45 * side + noise()) for i in range(3)]
    docs += [doc(f"c{i}", other + noise()) for i in range(3)]
    docs += [doc(f"bridge{i}", story + noise()) for i in range(6)]
    return docs


def raw_space(**changes) -> IncrementalClusterer:
    return IncrementalClusterer(ClusterConfig(dim=DIM, threshold=0.8, centring="none", **changes))


def test_a_story_that_arrives_as_two_seeds_and_a_bridge_ends_as_one():
    docs = two_seeds_and_a_bridge(np.random.default_rng(3))
    without = raw_space(merge_events=False)
    split = {a.doc_id: a.event_id for a in without.assign(docs).assignments}
    assert split["a0"] != split["b0"]  # arrival order decided: two events for one story

    clusterer = raw_space()
    given, returned = {}, []
    for one in docs:  # one at a time, as a slow stream would see them
        assigned = clusterer.assign([one])
        given.update({a.doc_id: a.event_id for a in assigned.assignments})
        returned += [merge for _, merge in assigned.merges]
    merges = clusterer.live_merges()
    assert len(merges) == 1 and clusterer.merge_count == 1 and returned == merges  # assign returns its merges
    merge = merges[0]
    stories = {doc_id: clusterer.story_of(event_id) for doc_id, event_id in given.items()}
    story_docs = [d.doc_id for d in docs if not d.doc_id.startswith("c")]
    assert len({stories[d] for d in story_docs}) == 1 and stories["c0"] != stories["a0"]
    assert {given["a0"], given["b0"]} == {merge.event_id, merge.into}  # the seeds' ids, as first given
    assert given["bridge5"] == merge.into  # records after the merge carry the surviving id
    assert clusterer.event_sizes()[merge.into] == 12  # average link stays exact: the sums were added
    summed = np.sum([clusterer.index.get_items([label])[0] for label, d in clusterer.label_docs.items()
                     if not d.startswith("c")], axis=0)
    assert np.allclose(clusterer.events[merge.into].vector_sum, summed, atol=1e-5)
    assert resolve_event(given["a0"], {merge.event_id: merge.into}) == merge.into
    # a redelivered document keeps the id it was given, merged or not
    assert clusterer.assign([docs[0]]).assignments[0].event_id == given["a0"]


def test_micro_batching_changes_no_decision_with_centring_and_merges():
    rng = np.random.default_rng(5)
    docs = two_seeds_and_a_bridge(rng) + [doc(f"x{i}", rng.standard_normal(DIM), lang="uz") for i in range(20)]
    rng.shuffle(docs)
    config = ClusterConfig(dim=DIM, threshold=0.5)
    whole = IncrementalClusterer(config)
    first = [(a.doc_id, a.event_id) for a in whole.assign(docs).assignments]
    pieces = IncrementalClusterer(config)
    second = [(a.doc_id, a.event_id) for start in range(0, len(docs), 4) for a in pieces.assign(docs[start:start + 4]).assignments]
    assert first == second
    assert [m.to_dict() for m in whole.live_merges()] == [m.to_dict() for m in pieces.live_merges()]


def test_a_language_the_model_knows_poorly_is_centred_on_its_own_mean():
    """Unrelated articles of one language share a direction of their own: raw, they pass the threshold together;
    centred on their language's running mean, each is its own event, and the big language is unharmed."""
    rng = np.random.default_rng(7)
    shared, uz_direction = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    docs = []
    for i in range(30):
        topic = rng.standard_normal(DIM)
        docs.append(doc(f"en{i}-1", 2.0 * shared + unit(topic)))
        docs.append(doc(f"en{i}-2", 2.0 * shared + unit(topic + 0.1 * rng.standard_normal(DIM))))
        docs.append(doc(f"uz{i}", 2.0 * shared + 3.0 * uz_direction + unit(rng.standard_normal(DIM)), lang="uz"))

    def clusters(centring: str) -> dict[str, str]:
        clusterer = IncrementalClusterer(ClusterConfig(dim=DIM, threshold=0.6, centring=centring))
        return {a.doc_id: clusterer.story_of(a.event_id) for a in clusterer.assign(docs).assignments}

    raw, centred = clusters("none"), clusters("language")
    uz = [d.doc_id for d in docs if d.lang == "uz"]
    assert len({raw[d] for d in uz}) < 5  # raw: Uzbek articles run together
    assert len({centred[d] for d in uz}) >= 25  # centred: apart
    pairs_kept = sum(centred[f"en{i}-1"] == centred[f"en{i}-2"] for i in range(30))
    assert pairs_kept >= 27


def test_a_window_saved_and_loaded_decides_exactly_as_the_one_that_never_stopped(tmp_path):
    rng = np.random.default_rng(11)
    docs = two_seeds_and_a_bridge(rng) + [doc(f"x{i}", rng.standard_normal(DIM), lang="uz") for i in range(20)]
    later = [doc(f"late{i}", d.vector + 0.05 * rng.standard_normal(DIM), lang=d.lang) for i, d in enumerate(docs)]
    config = ClusterConfig(dim=DIM, threshold=0.5)
    never_stopped = IncrementalClusterer(config)
    never_stopped.assign(docs)
    never_stopped.to_state(tmp_path)
    loaded = IncrementalClusterer.from_state(tmp_path)
    assert loaded.live_merges() == never_stopped.live_merges()
    assert np.array_equal(loaded.centre.grand_sum, never_stopped.centre.grand_sum)
    assert [a.to_dict() | {"assigned_at_ms": 0} for a in loaded.assign(later, now_ms=1).assignments] == \
        [a.to_dict() | {"assigned_at_ms": 0} for a in never_stopped.assign(later, now_ms=1).assignments]


def records(docs: list[EmbeddedDocument]) -> list[InRecord]:
    return [InRecord(d.doc_id.encode(), d.to_bytes(), {}, None, "news.vectors", 0, n) for n, d in enumerate(docs)]


def run(stage: ClusterStage, batch: list[InRecord], size: int = 3):
    assignments, merges = {}, {}
    for start in range(0, len(batch), size):
        for out in stage.process(batch[start:start + size]):
            if out.topic == stage.settings.merges_topic:
                merges[out.key.decode()] = EventMerge.from_bytes(out.value)
            elif out.topic == stage.settings.events_topic:
                assignments[out.key.decode()] = EventAssignment.from_bytes(out.value).event_id
    return assignments, merges


def test_merges_are_logged_replayed_after_a_crash_and_published_again(tmp_path):
    settings = Settings(threshold=0.8, centring="none", snapshot_every_docs=10**9, snapshot_every_s=10**9)
    stream = records(two_seeds_and_a_bridge(np.random.default_rng(3)))
    reference, reference_merges = run(ClusterStage(settings), stream)
    assert len(reference_merges) == 1
    merge = next(iter(reference_merges.values()))
    assert merge.type == "merge" and merge.event_id != merge.into

    first = ClusterStage(settings, state_dir=tmp_path)
    before, merged_before = run(first, stream[:-1])  # the merge is decided by the last-but-one document
    assert merged_before.keys() == reference_merges.keys()
    logged = next(iter(merged_before.values()))
    first.store._lock_file.close()  # kill -9: no snapshot, no close
    second = ClusterStage(settings, state_dir=tmp_path)
    # replayed from the log, not decided again
    assert second.clusterer.merge_count == 1 and second.clusterer.live_merges() == [logged]
    after, merged_after = run(second, stream[-3:])  # redelivered from the committed offset, plus the last one
    assert list(merged_after.values()) == [logged]  # published again, the same record: the crash may have lost it
    assert {**before, **after} == reference


def test_translations_of_one_story_still_link_across_languages():
    """Each language has its own offset; a story told in two languages is the same content plus each offset.
    Centring per language removes the offsets, so the two tellings link (they would not if centring left them)."""
    rng = np.random.default_rng(13)
    offsets = {lang: 1.5 * unit(rng.standard_normal(DIM)) for lang in ("ru", "en")}
    docs = []
    for i in range(40):
        story = unit(rng.standard_normal(DIM))
        for lang in ("ru", "en"):
            docs.append(doc(f"{lang}{i}", offsets[lang] + story + 0.05 * rng.standard_normal(DIM), lang=lang))
    clusterer = IncrementalClusterer(ClusterConfig(dim=DIM, threshold=0.6))
    stories = {a.doc_id: clusterer.story_of(a.event_id) for a in clusterer.assign(docs).assignments}
    linked = sum(stories[f"ru{i}"] == stories[f"en{i}"] for i in range(40))
    apart = len({stories[f"ru{i}"] for i in range(40)})
    assert linked >= 36 and apart >= 36  # each story's two tellings together, the stories apart
