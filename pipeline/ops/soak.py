"""``newsevents soak``: the stream under faults, then an audit of what came out.

A run starts a durable broker (``broker``: the embedded tansu on a local S3 server, or Apache Kafka with its log
folder kept) and one worker per stage, publishes real
documents mixed with hostile input at a steady rate, and meanwhile kills each stage with SIGKILL in turn
(restarting it after ``down_s``) and restarts the broker. A supervisor loop restarts any worker that exits
on its own, as systemd or Kubernetes would, and counts it. When everything published has settled it reads
``news.events`` and ``news.dlq`` from the beginning and checks the delivery contract:

* every published document has an event id or a dead letter with a reason (``lost`` = 0);
* no document has two different event ids (``conflicting`` = 0);
* duplicate records of the same (document, event) are allowed and counted: consumers dedupe by key;
* every merge on ``news.event-merges`` names one survivor, and the event ids and merges are those of an
  uninterrupted clusterer fed ``news.vectors`` in order (``differs_from_uninterrupted`` = 0): crashes, replays
  and restarts changed no decision.

The fault tests in ``tests/integration/test_faults.py`` run the same harness, shortened.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.config import Settings
from pipeline.flow import STAGE_NAMES
from pipeline.flow.sources import SourceRecord, iter_sources
from pipeline.kafka import clients
from pipeline.kafka.reader import iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.models import served_model
from pipeline.ops.broker import make_broker
from pipeline.ops.demo import Accounting, DemoError, warm_up_pipeline
from pipeline.ops.fuzz import HostileInput, hostile_inputs
from pipeline.ops.supervise import Workers
from pipeline.records import HEADER_FORMAT


SOAK_SESSION_S = 10.0  # the consumer session of the soak's workers on Kafka, unless settings give one


class SoakError(RuntimeError):
    pass


@dataclass
class SoakPlan:
    documents: int = 3000
    rate: float = 25.0  # documents offered per second
    rounds: int = 2  # each round kills every stage once and restarts the broker once
    kill_stages: tuple[str, ...] = STAGE_NAMES
    broker_restarts_per_round: int = 1
    broker_kill: bool = True  # SIGKILL; False: SIGTERM
    bad_inputs: int = 2000
    down_s: float = 2.0  # a killed worker stays down this long
    stall_timeout_s: float = 180.0  # give up when nothing settles for this long
    seed: int = 0
    broker: str = "tansu"  # or "kafka"


@dataclass
class SoakReport:
    documents: int = 0
    bad_inputs: int = 0
    published_records: int = 0  # including the publisher's own retries after a broker restart
    kills: Counter = field(default_factory=Counter)
    broker_restarts: int = 0
    unstored_acks: int = 0  # publisher sends the broker acknowledged at offset -1 (not stored) and were re-sent
    unexpected_exits: Counter = field(default_factory=Counter)
    events_records: int = 0
    documents_with_event: int = 0
    events: int = 0  # distinct event ids among them
    dead_lettered: int = 0
    dead_letter_reasons: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    lost_at: dict[str, str] = field(default_factory=dict)  # lost key → the last topic that has it
    conflicting: list[tuple[str, str, str]] = field(default_factory=list)
    duplicate_event_records: int = 0
    merges: int = 0
    merge_conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    differs_from_uninterrupted: list[str] = field(default_factory=list)  # doc ids, and "merge:<id>" for merges
    seconds: float = 0.0
    broker_kill: bool = True
    broker: str = "tansu"
    logs: str = ""

    @property
    def ok(self) -> bool:
        return not self.lost and not self.conflicting and not self.merge_conflicts and not self.differs_from_uninterrupted

    def lines(self) -> list[str]:
        published = self.documents + self.bad_inputs
        return [
            f"streamed   {self.documents} documents + {self.bad_inputs} hostile inputs = {published} keys "
            f"({self.published_records} records sent, {self.unstored_acks} re-sent after an offset -1 "
            f"acknowledgement) in {self.seconds:.0f}s",
            "faults     kill -9: " + (", ".join(f"{s} x{n}" for s, n in sorted(self.kills.items())) or "none")
            + f"; {self.broker} restarts ({'kill -9' if self.broker_kill else 'SIGTERM'}): {self.broker_restarts}; "
            + "unexpected worker exits: "
            + (", ".join(f"{s} x{n}" for s, n in sorted(self.unexpected_exits.items())) or "0"),
            f"settled    {self.documents_with_event} with an event id ({self.events} events), "
            f"{self.dead_lettered} dead-lettered "
            f"({', '.join(f'{r} {n}' for r, n in self.dead_letter_reasons.most_common(6))})",
            f"checked    lost = {len(self.lost)}, conflicting event ids = {len(self.conflicting)}, "
            f"duplicate (doc, same event) records = {self.duplicate_event_records}; {self.merges} merges, "
            f"conflicting merges = {len(self.merge_conflicts)}; decisions unlike an uninterrupted run = "
            f"{len(self.differs_from_uninterrupted)}",
            f"verdict    {'PASS' if self.ok else 'FAIL'}" + (f"; lost e.g. {self.lost[:5]}" if self.lost else "")
            + (f" (last seen: {Counter(self.lost_at.values()).most_common()})" if self.lost_at else "")
            + (f"; conflicts e.g. {self.conflicting[:3]}" if self.conflicting else "")
            + (f"; unlike uninterrupted e.g. {self.differs_from_uninterrupted[:5]}"
               if self.differs_from_uninterrupted else ""),
            f"logs       {self.logs}",
        ]

    def to_dict(self) -> dict:
        raw = asdict(self)
        raw.update(lost=len(self.lost), conflicting=len(self.conflicting), lost_examples=self.lost[:20],
                   conflict_examples=self.conflicting[:20], merge_conflicts=len(self.merge_conflicts),
                   differs_from_uninterrupted=len(self.differs_from_uninterrupted),
                   differs_examples=self.differs_from_uninterrupted[:20], ok=self.ok)
        return raw


def _documents(inputs: list[str | Path], count: int) -> list[SourceRecord]:
    found: list[SourceRecord] = []
    seen: set[str] = set()
    for item in iter_sources(inputs):
        if isinstance(item, SourceRecord) and item.key not in seen:
            seen.add(item.key)
            found.append(item)
            if len(found) == count:
                break
    if len(found) < count:
        raise SoakError(f"the inputs hold {len(found)} documents, {count} asked for")
    return found


class _Publisher(threading.Thread):
    """Sends every record at ``rate`` and keeps re-sending what the broker did not acknowledge (a broker
    restart fails in-flight sends), as a crawler's publisher must: nothing a user publishes may be lost."""

    def __init__(self, settings: Settings, records: list[tuple[str, bytes, list]], rate: float):
        super().__init__(daemon=True, name="soak-publisher")
        self.settings, self.records, self.rate = settings, records, rate
        self.sent = 0
        self.unstored = 0
        self.acked: set[str] = set()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def _producer(self):
        # Idempotent on Kafka only: a restarted tansu does not know the producer's sequence numbers (duplicates
        # in news.raw are harmless there: every stage is idempotent per document id).
        return clients.restart_tolerant_producer(self.settings, "newsevents-soak",
                                                 max_request_size=clients.max_request_bytes(self.settings))

    def run(self) -> None:
        try:
            producer = self._producer()
            pending = list(self.records)
            started = time.monotonic()
            attempt = 0
            while pending and attempt < 20:
                for n, (key, value, headers) in enumerate(pending):
                    future = producer.send(self.settings.raw_topic, key=key.encode(), value=value, headers=headers)
                    future.add_callback(lambda meta, key=key: self._ack(key, meta.offset))
                    self.sent += 1
                    if attempt == 0:
                        ahead = started + (n + 1) / self.rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
                try:
                    producer.flush(timeout=60)
                except Exception:
                    pass
                with self._lock:
                    pending = [r for r in pending if r[0] not in self.acked]
                attempt += 1
                if pending:
                    time.sleep(2.0)
            producer.close(timeout=10)
            if pending:
                raise SoakError(f"{len(pending)} records never acknowledged by the broker")
        except BaseException as err:  # reported by the main thread
            self.error = err

    def _ack(self, key: str, offset: int) -> None:
        if offset < 0:  # acknowledged but not stored (tansu on S3): re-sent in the next round
            self.unstored += 1
            return
        with self._lock:
            self.acked.add(key)


def _schedule(plan: SoakPlan, duration_s: float) -> list[tuple[float, str]]:
    faults = []
    for _ in range(plan.rounds):
        faults += [f"kill:{s}" for s in plan.kill_stages] + ["broker"] * plan.broker_restarts_per_round
    if not faults:
        return []
    start, end = 0.15 * duration_s, 0.85 * duration_s
    step = (end - start) / max(1, len(faults) - 1)
    return [(start + i * step, fault) for i, fault in enumerate(faults)]


def run_soak(settings: Settings, plan: SoakPlan, inputs: list[str | Path], work_dir: str | Path,
             progress: bool = True, say=print) -> SoakReport:
    work_dir = Path(work_dir)
    logs = work_dir / "logs"
    report = SoakReport(logs=str(logs), broker_kill=plan.broker_kill, broker=plan.broker)
    rng = random.Random(plan.seed)
    documents = _documents(inputs, plan.documents)
    real_pages = [d.value for d in documents[:50] if d.format == "html"]
    hostile: list[HostileInput] = list(hostile_inputs(plan.bad_inputs, plan.seed, real_pages, prefix="soak-fuzz"))
    records = [(d.key, d.value, [(HEADER_FORMAT, d.format.encode())]) for d in documents]
    records += [(h.key, h.value, h.headers) for h in hostile]
    rng.shuffle(records)
    report.documents, report.bad_inputs = len(documents), len(hostile)
    served_model(settings)
    began = started = time.monotonic()
    if plan.broker == "kafka" and not settings.session_timeout_s:
        # a stage killed with SIGKILL holds its partitions until its session ends: 10 s, not Kafka's 45 s
        settings = settings.replace(session_timeout_s=SOAK_SESSION_S)
    with make_broker(plan.broker, durable_dir=work_dir / "broker", log_dir=logs) as broker:
        settings = settings.replace(bootstrap_servers=broker.bootstrap_servers,
                                    cluster_state_dir=str(work_dir / "cluster-state"))
        ensure_topics(settings)
        with Workers(settings, list(STAGE_NAMES), log_dir=logs) as workers:
            def supervise() -> None:  # our own kills are restarted where they happen, before this runs again
                for name, code in workers.dead().items():
                    report.unexpected_exits[name] += 1
                    say(f"soak: {name} worker exited with {code}; restarting it")
                    workers.start_one(name)

            reader = make_reader(settings, [settings.events_topic, settings.dlq_topic])
            try:  # faults start once a document has gone through every stage, not during start-up
                warm_up_pipeline(settings, reader, workers, plan.stall_timeout_s)
            except DemoError as err:
                raise SoakError(str(err)) from None
            finally:
                reader.close()
            started = time.monotonic()
            publisher = _Publisher(settings, records, plan.rate)
            publisher.start()
            for at, fault in _schedule(plan, len(records) / plan.rate):
                while time.monotonic() - started < at:
                    supervise()
                    time.sleep(0.2)
                if fault == "broker":
                    how = "kill -9" if plan.broker_kill else "SIGTERM"
                    say(f"soak: {time.monotonic() - started:5.0f}s restarting the broker ({how}, durable storage)")
                    broker.restart_broker(kill=plan.broker_kill, down_s=plan.down_s)
                    report.broker_restarts += 1
                else:
                    stage = fault.split(":")[1]
                    say(f"soak: {time.monotonic() - started:5.0f}s kill -9 {stage}")
                    proc = workers.processes[stage]
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    time.sleep(plan.down_s)
                    workers.start_one(stage)
                    report.kills[stage] += 1
            while publisher.is_alive():
                supervise()
                publisher.join(0.5)
            if publisher.error is not None:
                raise SoakError(f"publishing failed: {publisher.error}") from publisher.error
            report.published_records = publisher.sent
            books = _settle(settings, [r[0] for r in records], plan.stall_timeout_s, supervise, progress)
            differs = _unlike_uninterrupted(settings, books)
            lost = books.published - books.settled
            if lost:
                report.lost_at = _trace(settings, lost)
            report.unstored_acks = publisher.unstored
    report.seconds = time.monotonic() - began
    _audit(report, books)
    report.differs_from_uninterrupted = differs
    return report


def _settle(settings: Settings, keys: list[str], stall_timeout_s: float, supervise, progress: bool) -> Accounting:
    reader = make_reader(settings, [settings.events_topic, settings.merges_topic, settings.dlq_topic])
    books = Accounting.empty(keys)
    bar = tqdm(total=len(keys), desc="settled", unit="doc", disable=not progress)
    last = time.monotonic()

    def done() -> bool:
        supervise()
        return len(books.settled) == len(keys) or time.monotonic() - last > stall_timeout_s

    for record in iter_records(reader, idle_timeout_s=None, stop=done):
        if books.add(record):
            bar.update(1)
            last = time.monotonic()
    for record in iter_records(reader, idle_timeout_s=3.0):  # late duplicates or conflicts
        books.add(record)
    bar.close()
    reader.close()
    return books


def _trace(settings: Settings, keys: set[str]) -> dict[str, str]:
    """For documents that never settled: the furthest topic of the pipeline that holds them."""
    last_seen = {key: "nowhere (not on news.raw)" for key in keys}
    for topic in (settings.raw_topic, settings.docs_topic, settings.vectors_topic):
        reader = make_reader(settings, [topic])
        for record in iter_records(reader, idle_timeout_s=3.0):
            key = (record.key or b"").decode("utf-8", "replace")
            if key in last_seen:
                last_seen[key] = topic
        reader.close()
    return last_seen


def _audit(report: SoakReport, books: Accounting) -> None:
    report.documents_with_event = len(set(books.book.by_doc) & books.published)
    report.events = len({a.event_id for k, a in books.book.by_doc.items() if k in books.published})
    dead = (set(books.dead) - set(books.book.by_doc)) & books.published
    report.dead_lettered = len(dead)
    report.dead_letter_reasons = Counter(f"{books.dead[k].stage}:{books.dead[k].reason}" for k in dead)
    report.lost = sorted(books.published - books.settled)
    report.conflicting = list(books.book.conflicts)
    report.events_records = books.book.records
    report.duplicate_event_records = books.book.records - len(books.book.by_doc)
    report.merges = len(books.book.merged_into)
    report.merge_conflicts = list(books.book.merge_conflicts)


def _unlike_uninterrupted(settings: Settings, books: Accounting) -> list[str]:
    """Feed ``news.vectors`` in order to a fresh cluster stage that never stops, and list every document whose
    event id, and every merge whose survivor, differs from what the faulted stream published."""
    from pipeline.kafka.stages import ClusterStage, InRecord
    from pipeline.records import EventAssignment, EventMerge

    stage, given, merged = ClusterStage(settings), {}, {}
    reader = make_reader(settings, [settings.vectors_topic])
    batch: list = []

    def run_batch() -> None:
        for out in stage.process(batch):
            if out.topic == settings.events_topic:
                given.setdefault(out.key.decode(), EventAssignment.from_bytes(out.value).event_id)
            elif out.topic == settings.merges_topic:
                merged.setdefault(out.key.decode(), EventMerge.from_bytes(out.value).into)
        batch.clear()

    for record in iter_records(reader, idle_timeout_s=3.0):
        batch.append(InRecord(record.key, record.value, {}, record.timestamp, record.topic, record.partition,
                              record.offset))
        if len(batch) >= settings.cluster_batch_size:
            run_batch()
    run_batch()
    reader.close()
    differs = [d for d, a in books.book.by_doc.items() if d in given and given[d] != a.event_id]
    streamed = books.book.merged_into
    differs += [f"merge:{k}" for k in sorted(set(streamed) | set(merged)) if streamed.get(k) != merged.get(k)]
    return differs


# --- backpressure ------------------------------------------------------------------------------------------
