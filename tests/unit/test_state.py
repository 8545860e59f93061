"""The cluster stage's durable state: a crash at any point never gives a document a second event id."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import shutil

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.flow.state import ClusterStateStore, StateError
from pipeline.kafka.stages import ClusterStage, InRecord
from pipeline.records import EmbeddedDocument, EventAssignment, EventMerge

SETTINGS = Settings(threshold=0.8, snapshot_every_docs=10**9, snapshot_every_s=10**9)
START = datetime(2019, 11, 8, tzinfo=timezone.utc)


def stream(count: int, topics: int = 40, dim: int = 32, seed: int = 0, hours_per_doc: float = 0.0) -> list[InRecord]:
    """Documents on ``topics`` well-separated stories, as records at offsets 0..count-1 of one partition."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim))
    records = []
    for n in range(count):
        vector = centres[n % topics] + rng.normal(scale=0.08, size=dim)
        when = (START + timedelta(hours=n * hours_per_doc)).isoformat()
        doc = EmbeddedDocument(doc_id=f"d{n}", vector=vector.astype(np.float32), model_version="m1",
                               published_time=when, ingested_at_ms=int(START.timestamp() * 1000) + 10**12)
        records.append(InRecord(doc.doc_id.encode(), doc.to_bytes(), {}, None, "news.vectors", 0, n))
    return records


def events(out) -> dict[str, str]:
    decoded = [EventAssignment.from_bytes(o.value) for o in out if o.topic == SETTINGS.events_topic]
    return {a.doc_id: a.event_id for a in decoded}


def run(stage: ClusterStage, records: list[InRecord], batch: int = 25) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(records), batch):
        found.update(events(stage.process(records[start:start + batch])))
    return found


def crash(stage: ClusterStage) -> None:
    """What kill -9 leaves: no snapshot, no close; only the flock goes with the process."""
    stage.store._lock_file.close()


def test_a_restarted_stage_gives_replayed_documents_their_events_and_continues_like_an_uncrashed_one(tmp_path):
    records = stream(600)
    reference = run(ClusterStage(SETTINGS), records)
    assert len(set(reference.values())) == 40  # the stories are found

    first = ClusterStage(SETTINGS, state_dir=tmp_path)
    before = run(first, records[:400])
    crash(first)
    second = ClusterStage(SETTINGS, state_dir=tmp_path)
    assert second.offsets == {"news.vectors:0": 399}
    replayed = run(second, records[250:400])  # the group's committed offset was 250: a redelivery
    assert replayed == {d: before[d] for d in replayed}
    after = run(second, records[400:])
    assert {**before, **after} == reference


def test_snapshots_bound_the_log_and_a_crash_after_one_replays_only_the_tail(tmp_path):
    settings = SETTINGS.replace(snapshot_every_docs=100)
    records = stream(450)
    first = ClusterStage(settings, state_dir=tmp_path)
    before = run(first, records)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["CURRENT", "LOCK", "snapshot-00000004", "wal-00000004.log"]
    crash(first)
    second = ClusterStage(settings, state_dir=tmp_path)
    assert second.clusterer.doc_events == first.clusterer.doc_events
    assert run(second, records[300:]) == {d: before[d] for d in before if int(d[1:]) >= 300}


def test_a_torn_last_frame_is_cut_off(tmp_path):
    records = stream(200)
    first = ClusterStage(SETTINGS, state_dir=tmp_path)
    before = run(first, records[:100])
    crash(first)
    with open(tmp_path / "wal-00000000.log", "ab") as wal:
        wal.write(b"\x00\x00\x10\x00garbage of a frame the crash cut short")
    second = ClusterStage(SETTINGS, state_dir=tmp_path)
    assert run(second, records[:100]) == before
    crash(second)
    third = ClusterStage(SETTINGS, state_dir=tmp_path)  # the cut log takes new frames after the good ones
    after = run(third, records[:150])
    assert len(after) == 150 and {d: after[d] for d in before} == before


def test_a_crash_mid_snapshot_leaves_the_previous_one_in_force(tmp_path):
    records = stream(200)
    first = ClusterStage(SETTINGS, state_dir=tmp_path)
    before = run(first, records[:100])
    first.close()  # snapshot 1
    third = ClusterStage(SETTINGS, state_dir=tmp_path)
    before.update(run(third, records[100:]))
    crash(third)
    # the crash: snapshot 2 written and renamed, its log created, CURRENT not yet switched; a temporary folder
    shutil.copytree(tmp_path / "snapshot-00000001", tmp_path / "snapshot-00000002")
    (tmp_path / "wal-00000002.log").touch()
    (tmp_path / "snapshot-00000003.tmp").mkdir()
    fourth = ClusterStage(SETTINGS, state_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "LOCK", "snapshot-00000001", "wal-00000001.log"]
    assert run(fourth, records) == before


def test_graceful_close_snapshots_so_a_restart_replays_nothing(tmp_path):
    records = stream(120)
    first = ClusterStage(SETTINGS, state_dir=tmp_path)
    before = run(first, records)
    first.close()
    assert (tmp_path / "wal-00000001.log").stat().st_size == 0
    second = ClusterStage(SETTINGS, state_dir=tmp_path)
    assert run(second, records) == before


def test_state_size_is_bounded_by_the_window(tmp_path):
    settings = SETTINGS.replace(snapshot_every_docs=400, window_hours=24, bucket_hours=6)
    stage = ClusterStage(settings, state_dir=tmp_path)
    sizes = []
    records = stream(4000, hours_per_doc=0.06)  # 10 days, 400 documents a day
    for day in range(10):
        run(stage, records[day * 400:(day + 1) * 400], batch=100)
        sizes.append(stage.store.size_bytes())
    assert stage.clusterer.live_documents <= 500
    assert max(sizes[3:]) < 1.3 * min(sizes[3:]), sizes


def test_one_worker_per_state_folder(tmp_path):
    held = ClusterStateStore(tmp_path)
    with pytest.raises(StateError, match="another cluster worker"):
        ClusterStateStore(tmp_path)
    held.close()
    ClusterStateStore(tmp_path).close()  # released with its holder (a killed process releases it too)


# A coarse hnswlib graph: its searches miss neighbours often, as the default graph does now and then.
COARSE = dict(hnsw_m=4, hnsw_ef_construction=8, hnsw_ef=1, neighbours=10)


def batches(records: list[InRecord], sizes: list[int]) -> list[list[InRecord]]:
    cut, start, n = [], 0, 0
    while start < len(records):
        cut.append(records[start:start + sizes[n % len(sizes)]])
        start, n = start + sizes[n % len(sizes)], n + 1
    return cut


def decisions(stage: ClusterStage, cut: list[list[InRecord]]) -> tuple[dict[str, str], dict[str, str]]:
    """(document → first event id, absorbed id → surviving id), as ``newsevents soak`` reads them."""
    given, merged = {}, {}
    for batch in cut:
        for out in stage.process(batch):
            if out.topic == SETTINGS.events_topic:
                assignment = EventAssignment.from_bytes(out.value)
                given.setdefault(assignment.doc_id, assignment.event_id)
            elif out.topic == SETTINGS.merges_topic:
                merge = EventMerge.from_bytes(out.value)
                merged.setdefault(merge.event_id, merge.into)
    return given, merged


@pytest.mark.parametrize("snapshot_every_docs", [
    10**9,
    pytest.param(150, marks=pytest.mark.xfail(strict=True, reason=(
        "not fixed: hnswlib's load_index starts a fresh level generator (and rebuilds its free-slot set), so "
        "documents inserted after recovering from a snapshot get other graph levels than the uninterrupted "
        "window gives them, and an approximate search can then answer differently"))),
], ids=["crash-before-any-snapshot", "crash-after-a-snapshot"])
@pytest.mark.parametrize("crash_at", [380, 560], ids=["window-full", "window-moving"])
def test_a_crashed_stage_fed_other_micro_batches_decides_like_the_soaks_uninterrupted_reference(
        tmp_path, snapshot_every_docs, crash_at):
    """``newsevents soak``'s check, deterministic: the worker takes whatever micro-batches the stream gives it,
    crashes, is redelivered what it had not committed and goes on in other batches; the reference takes
    ``news.vectors`` 256 at a time. Overlapping stories on a graph whose searches miss neighbours: a decision
    that depended on where a batch was cut would differ (it did, and failed the fault test now and then)."""
    settings = SETTINGS.replace(threshold=0.3, centring="language", merge_events=True,
                                snapshot_every_docs=snapshot_every_docs, **COARSE)
    records = [InRecord(r.key, r.value, {}, None, r.topic, r.partition, r.offset)
               for r in stream(700, topics=25, dim=16, seed=3, hours_per_doc=0.1)]
    noisy = []  # the stories overlap: links, merges and near misses
    for record in records:
        doc = EmbeddedDocument.from_bytes(record.value)
        rng = np.random.default_rng(int(doc.doc_id[1:]))
        vector = doc.vector + rng.normal(scale=1.2, size=doc.vector.shape).astype(np.float32)
        noisy.append(InRecord(record.key, EmbeddedDocument(doc_id=doc.doc_id, vector=vector, model_version="m1",
                                                           published_time=doc.published_time,
                                                           ingested_at_ms=doc.ingested_at_ms).to_bytes(),
                              {}, None, record.topic, record.partition, record.offset))
    reference = decisions(ClusterStage(settings), batches(noisy, [256]))
    assert len(reference[1]) > 5  # stories merge

    first = ClusterStage(settings, state_dir=tmp_path)
    given, merged = decisions(first, batches(noisy[:crash_at], [1, 7, 3, 12]))
    crash(first)  # documents 480 on move the 48 h window (one every 6 minutes)
    second = ClusterStage(settings, state_dir=tmp_path)
    again, merged_again = decisions(second, batches(noisy[crash_at - 80:], [5, 1, 31]))  # 80 not committed
    assert all(again[d] == given[d] for d in given if d in again)
    merged = {**merged_again, **merged}
    given = {**again, **given}
    differs = [d for d in reference[0] if reference[0][d] != given.get(d)]
    differs += [f"merge:{k}" for k in set(reference[1]) | set(merged) if reference[1].get(k) != merged.get(k)]
    assert differs == []
