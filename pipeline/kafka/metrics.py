"""A worker's Prometheus metrics (``prometheus_client``) and its ``/healthz``, served from a thread.

A thread, not faust's web server: the answer must not wait for the event loop, and a scrape never touches the
stage. Every name starts with ``newsevents_`` (the table is in the README, *Running it as a service*). The
input lag comes from the high watermark of the last fetch response after each batch, and every few seconds from
the broker's end offsets on Kafka (``pipeline.kafka.worker``); never from ``end_offsets`` on tansu, which gets them
wrong.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from pipeline.kafka.stages import ClusterStage, EmbedStage, InRecord, OutRecord, Stage

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StageMetrics:
    """The metrics of one stage worker, on a registry of its own (one stage per process; tests make several)."""

    def __init__(self, stage: str, dlq_topic: str):
        self.stage, self.dlq_topic = stage, dlq_topic
        self.registry = registry = CollectorRegistry()
        self.joined = False  # the consumer group assigned this worker its partitions (none is fine)
        self.loaded = False  # the stage is built: its model loaded, its state recovered
        self.model_version = ""
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) → last offset processed
        self.records_in = Counter("newsevents_records_in", "Records consumed and processed", ["stage"],
                                  registry=registry)
        self.records_out = Counter("newsevents_records_out", "Records produced (stored by the broker), by topic",
                                   ["stage", "topic"], registry=registry)
        self.dead_letters = Counter("newsevents_dead_letters", "Dead letters produced, by reason",
                                    ["stage", "reason"], registry=registry)
        self.batch_size = Histogram("newsevents_batch_size", "Records per micro-batch", ["stage"],
                                    buckets=BATCH_SIZES, registry=registry)
        self.batch_seconds = Histogram("newsevents_batch_seconds", "A micro-batch from take to stored outputs",
                                       ["stage"], buckets=SECONDS, registry=registry)
        self.input_lag = Gauge("newsevents_input_lag", "Records behind the high watermark of the last fetch",
                               ["stage", "topic", "partition"], registry=registry)
        self.model_info = Gauge("newsevents_model_info", "1 for the model version the stage serves",
                                ["stage", "model_version"], registry=registry)
        self.ready = Gauge("newsevents_ready", "1 once joined to its group with the stage loaded", ["stage"],
                           registry=registry)
        self.cluster_window = Gauge("newsevents_cluster_window_documents",
                                    "Documents in the newest generation's window", registry=registry)
        self.cluster_events = Gauge("newsevents_cluster_live_events", "Live events in the newest generation",
                                    registry=registry)
        self.cluster_merges = Gauge("newsevents_cluster_merges", "Event merges so far in the newest generation",
                                    registry=registry)
        self.snapshot_seconds = Histogram("newsevents_cluster_snapshot_seconds", "Writing a state snapshot",
                                          buckets=SECONDS, registry=registry)
        self.log_fsync_seconds = Histogram("newsevents_cluster_log_fsync_seconds",
                                           "Appending a batch's decisions to the state log and fsyncing it",
                                           buckets=SECONDS, registry=registry)
        self.ready.labels(stage).set(0)

    # --- what the worker reports ---------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.joined and self.loaded

    def stage_loaded(self, stage: Stage) -> None:
        store = getattr(stage, "store", None)
        if isinstance(stage, ClusterStage) and store is not None:
            store.log_batch = _timed(store.log_batch, self.log_fsync_seconds)  # timed from outside the store
            store.snapshot = _timed(store.snapshot, self.snapshot_seconds)
        self.loaded = True
        self.observe_stage(stage)
        self._update_ready()

    def group_joined(self) -> None:
        self.joined = True
        self._update_ready()

    def _update_ready(self) -> None:
        self.ready.labels(self.stage).set(1 if self.healthy else 0)
        if self.healthy:
            log.warning("ready: joined the group, stage loaded", extra={"event": "ready"})

    def observe_batch(self, batch: list[InRecord], results: list[OutRecord], seconds: float) -> None:
        self.records_in.labels(self.stage).inc(len(batch))
        self.batch_size.labels(self.stage).observe(len(batch))
        self.batch_seconds.labels(self.stage).observe(seconds)
        for result in results:
            self.records_out.labels(self.stage, result.topic).inc()
            if result.topic == self.dlq_topic:
                reason = _reason(result.value)
                self.dead_letters.labels(self.stage, reason).inc()
                log.info("dead letter: %s", reason,
                         extra={"event": "dead-letter", "doc_id": result.key.decode("utf-8", "replace")})
        for record in batch:
            where = (record.topic, record.partition)
            if record.offset > self.positions.get(where, -1):
                self.positions[where] = record.offset

    def observe_stage(self, stage: Stage) -> None:
        version = ""
        if isinstance(stage, EmbedStage):
            version = stage.encoder.version
        elif isinstance(stage, ClusterStage) and stage.generations:
            version = next(reversed(stage.generations))
            clusterer = stage.generations[version]
            self.cluster_window.set(clusterer.live_documents)
            self.cluster_events.set(len(clusterer.events))
            self.cluster_merges.set(getattr(clusterer, "merge_count", 0))  # issue 13 adds merges
        if version and version != self.model_version:
            if self.model_version:
                self.model_info.remove(self.stage, self.model_version)
            self.model_info.labels(self.stage, version).set(1)
            self.model_version = version

    def refresh_lag(self, highwater) -> None:
        """``highwater(topic, partition)``: the next offset the broker had when it last answered a fetch."""
        for (topic, partition), offset in list(self.positions.items()):
            mark = highwater(topic, partition)
            if mark is not None and mark >= 0:
                self.input_lag.labels(self.stage, topic, str(partition)).set(max(0, mark - offset - 1))

    # --- serving -------------------------------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok" if self.healthy else "starting", "stage": self.stage, "pid": os.getpid(),
                "joined_group": self.joined, "stage_loaded": self.loaded, "model_version": self.model_version}

    def wsgi_app(self):
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") == "/healthz":
                body = orjson.dumps(self.health())
                start_response("200 OK" if self.healthy else "503 Service Unavailable",
                               [("Content-Type", "application/json")])
                return [body]
            return metrics_app(environ, start_response)  # /metrics (and, as prometheus_client does, any path)

        return app

    def serve(self, host: str, port: int) -> ThreadingWSGIServer | None:
        """Serve ``/metrics`` and ``/healthz`` on ``host:port`` from a daemon thread; None when the port is taken
        (the worker runs on without metrics rather than not at all)."""
        try:
            server = make_server(host, port, self.wsgi_app(), ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError as err:
            log.error("cannot serve metrics on %s:%d: %s", host, port, err, extra={"event": "metrics-unavailable"})
            return None
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", host, port, extra={"event": "metrics"})
        return server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # a scrape every few seconds is not news
        pass


def _reason(value: bytes) -> str:
    try:
        return str(orjson.loads(value).get("reason") or "unknown")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"


def _timed(method, histogram: Histogram):
    @functools.wraps(method)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed
