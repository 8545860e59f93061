import threading

import numpy as np

from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer, event_id_for
from pipeline.records import EmbeddedDocument

DIM = 16


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def topic_vectors(rng, centre, n, noise):
    return [unit(centre + noise * rng.standard_normal(DIM)) for _ in range(n)]


def docs_for(vectors, prefix="d", hour=10, day="2019-11-08"):
    return [EmbeddedDocument(doc_id=f"{prefix}{i}", vector=v, model_version="m",
                             published_time=f"{day}T{hour:02d}:00:00+00:00") for i, v in enumerate(vectors)]


def make(threshold=0.9, **kw):
    """Raw-space linking without merges: the window and linkage mechanics these tests are about
    (centring and merges have their own tests in test_events.py)."""
    kw = {"centring": "none", "merge_events": False} | kw
    return IncrementalClusterer(ClusterConfig(dim=DIM, threshold=threshold, **kw))


def test_topics_become_separate_events_and_reposts_join():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(DIM), rng.standard_normal(DIM)
    docs = docs_for(topic_vectors(rng, a, 10, 0.1), "a") + docs_for(topic_vectors(rng, b, 10, 0.1), "b")
    clusterer = make()
    events = {x.doc_id: x.event_id for x in clusterer.assign(docs).assignments}
    assert len({events[f"a{i}"] for i in range(10)}) == 1
    assert len({events[f"b{i}"] for i in range(10)}) == 1
    assert events["a0"] != events["b0"]
    repost = EmbeddedDocument(doc_id="repost", vector=docs[3].vector.copy(), model_version="m",
                              published_time=docs[3].published_time)
    [assignment] = clusterer.assign([repost]).assignments
    assert assignment.event_id == events["a3"]
    assert assignment.similarity > 0.99 and assignment.event_size == 11


def test_event_id_is_the_founders_hash_and_replay_is_deterministic():
    rng = np.random.default_rng(1)
    vectors = topic_vectors(rng, rng.standard_normal(DIM), 30, 0.4) + topic_vectors(rng, rng.standard_normal(DIM), 30, 0.4)
    docs = docs_for(vectors)
    first = [(x.doc_id, x.event_id) for x in make().assign(docs).assignments]
    clusterer = make()
    second = [(x.doc_id, x.event_id) for start in range(0, 60, 7) for x in clusterer.assign(docs[start:start + 7]).assignments]
    assert first == second  # same order, different micro-batching: same ids
    assert first[0][1] == event_id_for("d0")


def test_micro_batching_changes_no_decision_where_the_index_search_misses_neighbours():
    """hnswlib's search is approximate: a batch's earlier documents must be met through the same graph as the
    window's, or where a batch was cut decides (the fault test's "decisions unlike an uninterrupted run")."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, DIM))
    docs = [EmbeddedDocument(doc_id=f"d{i}", vector=unit(centres[i % 40] + 1.0 * rng.standard_normal(DIM)),
                             model_version="m", lang="ru" if i % 3 else "en",
                             published_time=f"2019-11-{8 + i // 150:02d}T{(i // 7) % 24:02d}:00:00+00:00")
            for i in range(600)]
    config = ClusterConfig(dim=DIM, threshold=0.4, hnsw_m=4, hnsw_ef_construction=8, hnsw_ef=1, neighbours=10)

    def decide(sizes):
        clusterer, given, merges, start = IncrementalClusterer(config), {}, [], 0
        for n in range(len(docs)):
            if start >= len(docs):
                break
            assigned = clusterer.assign(docs[start:start + sizes[n % len(sizes)]])
            start += sizes[n % len(sizes)]
            given.update((a.doc_id, a.event_id) for a in assigned.assignments)
            merges += [(m.event_id, m.into) for _, m in assigned.merges]
        return given, merges

    whole = decide([256])
    assert len(whole[1]) > 10 and len(set(whole[0].values())) < 300  # stories link and merge
    assert decide([1]) == whole
    assert decide([7, 1, 30, 3]) == whole


def test_redelivered_document_keeps_its_event_and_is_not_indexed_twice():
    rng = np.random.default_rng(2)
    docs = docs_for(topic_vectors(rng, rng.standard_normal(DIM), 5, 0.05))
    clusterer = make()
    original = {x.doc_id: x.event_id for x in clusterer.assign(docs).assignments}
    again = clusterer.assign(docs[:3] + docs[:1]).assignments
    assert [x.event_id for x in again] == [original["d0"], original["d1"], original["d2"], original["d0"]]
    assert clusterer.live_documents == 5


def test_average_link_refuses_a_document_close_to_only_one_member():
    """Single linkage would chain the bridge onto the event through its one close member; average link does not."""
    def at(degrees):
        v = np.zeros(DIM, dtype=np.float32)
        v[0], v[1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        return v

    clusterer = make(threshold=0.8)
    members = clusterer.assign(docs_for([at(0), at(20), at(40)])).assignments
    assert len({m.event_id for m in members}) == 1  # mean similarities 0.94, then 0.85: one event
    [bridge] = clusterer.assign(docs_for([at(-25)], "bridge")).assignments  # cos 25° = 0.91 to one member, mean 0.68
    assert bridge.event_id != members[0].event_id
    [close] = clusterer.assign(docs_for([at(15)], "close")).assignments  # mean over the event is 0.93
    assert close.event_id == members[0].event_id and close.linked_doc_id == "d1"


def test_window_drops_whole_buckets_and_their_event_members():
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(DIM)
    clusterer = make(bucket_hours=6, window_hours=12)
    old = clusterer.assign(docs_for(topic_vectors(rng, centre, 5, 0.05), "old", hour=1)).assignments
    assert clusterer.live_documents == 5
    new = clusterer.assign(docs_for(topic_vectors(rng, centre, 5, 0.05), "new", hour=1, day="2019-11-09")).assignments
    assert clusterer.live_documents == 5 and len(clusterer.buckets) == 1
    assert new[0].event_id != old[0].event_id  # the old event left the window
    assert sum(clusterer.event_sizes().values()) == 5


def test_late_document_goes_to_the_oldest_live_bucket_and_future_dates_are_clamped():
    rng = np.random.default_rng(4)
    centre = rng.standard_normal(DIM)
    clusterer = make(bucket_hours=6, window_hours=12)
    clusterer.assign(docs_for(topic_vectors(rng, centre, 3, 0.05), "now", hour=12))
    [late] = clusterer.assign(docs_for(topic_vectors(rng, centre, 1, 0.05), "late", hour=1, day="2019-11-01")).assignments
    assert late.event_size == 4
    future = EmbeddedDocument(doc_id="future", vector=unit(centre), model_version="m",
                              published_time="2031-01-01T00:00:00+00:00", ingested_at_ms=1573214400000)
    clusterer.assign([future])
    assert clusterer.live_documents == 5  # the 2031 date did not expire the window


def test_concurrent_assign_calls_are_serialised():
    rng = np.random.default_rng(5)
    clusterer = make()
    errors = []

    def worker(name):
        try:
            for i in range(20):
                clusterer.assign(docs_for([unit(rng.standard_normal(DIM)) for _ in range(8)], f"{name}-{i}-"))
        except Exception as err:  # pragma: no cover - the assertion below reports it
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and clusterer.live_documents == 4 * 20 * 8


def test_index_grows_past_its_initial_capacity():
    rng = np.random.default_rng(6)
    clusterer = IncrementalClusterer(ClusterConfig(dim=DIM, initial_capacity=16))
    clusterer.assign(docs_for([unit(rng.standard_normal(DIM)) for _ in range(100)]))
    assert clusterer.live_documents == 100


def test_founder_redelivered_after_its_bucket_left_keeps_the_event():
    rng = np.random.default_rng(7)
    centre = rng.standard_normal(DIM)
    clusterer = make(bucket_hours=6, window_hours=12)
    [founder] = clusterer.assign(docs_for([unit(centre)], "founder", hour=1)).assignments
    later = clusterer.assign(docs_for(topic_vectors(rng, centre, 3, 0.05), "later", hour=8)).assignments
    assert {x.event_id for x in later} == {founder.event_id}
    clusterer.assign(docs_for(topic_vectors(rng, centre, 1, 0.05), "push", hour=13)).assignments  # founder's bucket leaves
    [again] = clusterer.assign(docs_for([unit(centre)], "founder", hour=1)).assignments
    assert again.event_id == founder.event_id
    assert clusterer.event_sizes()[founder.event_id] == 4  # later×3 + push, the founder is not counted twice
    clusterer.assign(docs_for(topic_vectors(rng, centre, 1, 0.05), "far", hour=23)).assignments  # everything else expires
    assert clusterer.live_documents == 2


def test_undated_documents_in_a_replayed_crawl_do_not_expire_the_window():
    rng = np.random.default_rng(8)
    centre = rng.standard_normal(DIM)
    clusterer = make(bucket_hours=6, window_hours=48)
    clusterer.assign(docs_for(topic_vectors(rng, centre, 3, 0.05), "old", hour=10)).assignments  # 2019, replayed today
    undated = EmbeddedDocument(doc_id="undated", vector=unit(centre), model_version="m", published_time=None,
                               ingested_at_ms=1_790_000_000_000)  # ingested in 2026
    [x] = clusterer.assign([undated]).assignments
    assert clusterer.live_documents == 4 and x.event_size == 4


def test_the_window_reuses_the_slots_of_dropped_buckets():
    rng = np.random.default_rng(7)
    clusterer = make(bucket_hours=6, window_hours=12, initial_capacity=64)
    for day in range(1, 9):  # eight days, two buckets live at a time
        centre = rng.standard_normal(DIM)
        clusterer.assign(docs_for(topic_vectors(rng, centre, 40, 0.3), f"day{day}-", day=f"2019-11-{day:02d}"))
        assert clusterer.live_documents == 40
    assert clusterer.index.get_max_elements() <= 128, "deleted slots are reused, the index does not grow"
    assert sum(clusterer.event_sizes().values()) == 40


def test_restore_puts_decided_documents_back_without_deciding():
    rng = np.random.default_rng(8)
    centre = rng.standard_normal(DIM)
    earlier = docs_for(topic_vectors(rng, centre, 6, 0.05), "old")
    clusterer = make()
    clusterer.restore(earlier, ["ev-story"] * 6)
    assert clusterer.live_documents == 6 and clusterer.event_sizes() == {"ev-story": 6}
    [again] = clusterer.assign(earlier[:1]).assignments
    assert again.event_id == "ev-story", "a restored document keeps its event"
    [new] = clusterer.assign(docs_for(topic_vectors(rng, centre, 1, 0.05), "new")).assignments
    assert new.event_id == "ev-story" and new.event_size == 7
