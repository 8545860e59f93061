"""The Kafka wrapper: one faust app per stage, the only place that consumes from the pipeline's topics.

Each stage is a faust agent reading micro-batches with ``stream.take_events(max, within)``; the batch is
handed to the stage's pure ``process`` in a worker thread (torch and hnswlib release the GIL, so the event
loop keeps heartbeating while a batch embeds), the outputs are sent and the producer flushed, and only then
does ``take_events`` ack the batch, so faust commits offsets of documents whose outputs are on the broker
(at-least-once; the clusterer is idempotent per document id).

Every stage is its own consumer group (``<group_prefix>-<stage>``): start more ``newsevents worker parse``
processes to scale parsing out over the raw topic's partitions, independently of the other stages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import faust
from faust.types import TP

from pipeline.config import Settings
from pipeline.flow.state import StateError
from pipeline.kafka.clients import (broker_profile, faust_app_options, install_aiokafka_connect_backoff,
                                    make_faust_producers_idempotent, wait_for_broker)
from pipeline.kafka.metrics import StageMetrics
from pipeline.kafka.stages import STAGES, ClusterStage, InRecord, Stage
from pipeline.lifecycle import ORPHAN_GRACE_S, ShutdownWatchdog, watch_supervisor
from pipeline.logs import configure_logging

LAG_REFRESH_S = 5.0

log = logging.getLogger(__name__)


def _stage_batching(settings: Settings, stage: str) -> tuple[str, int, float]:
    return {
        "parse": (settings.raw_topic, settings.parse_batch_size, settings.parse_max_wait_s),
        "embed": (settings.docs_topic, settings.embed_batch_size, settings.embed_max_wait_s),
        "cluster": (settings.vectors_topic, settings.cluster_batch_size, settings.cluster_max_wait_s),
    }[stage]


def _headers(event) -> dict[str, bytes]:
    raw = event.headers or {}
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}


def make_app(settings: Settings, stage_name: str, stage: Stage | None = None,
             metrics: StageMetrics | None = None) -> faust.App:
    if stage_name not in STAGES:
        raise ValueError(f"unknown stage {stage_name!r}; stages are {', '.join(STAGES)}")
    source_name, batch_size, within = _stage_batching(settings, stage_name)
    datadir = settings.home_path / "faust" / f"{settings.group_prefix}-{stage_name}"  # not the working directory
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(f"{settings.group_prefix}-{stage_name}", **faust_app_options(settings, batch_size, datadir))
    make_faust_producers_idempotent(app, settings)  # on Kafka; tansu's InitProducerId fails for aiokafka
    install_aiokafka_connect_backoff()  # a broker that is gone costs a connect every few seconds, not 35 a second
    lag_from_end_offsets = broker_profile(settings).end_offsets  # tansu's are wrong: the last fetch's high watermark
    source = app.topic(source_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    outputs: dict[str, faust.TopicT] = {}
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stage_name}-stage")
    holder: dict[str, Stage] = {}
    metrics = metrics or StageMetrics(stage_name, settings.dlq_topic)

    def get_stage() -> Stage:
        if "stage" not in holder:
            if stage is not None:
                holder["stage"] = stage
            elif stage_name == "embed":
                holder["stage"] = embed_stage_following_promotions(settings, executor)
            elif stage_name == "cluster":
                holder["stage"] = ClusterStage(settings, state_dir=settings.cluster_state_path)
            else:
                holder["stage"] = STAGES[stage_name](settings)
            metrics.stage_loaded(holder["stage"])
        return holder["stage"]

    @app.on_before_shutdown.connect
    async def close_stage(app, **kwargs) -> None:
        # After the consumer stopped and the last batch was acked; on the stage's thread, after that batch.
        if "stage" in holder:
            await asyncio.get_running_loop().run_in_executor(executor, holder["stage"].close)

    @app.task
    async def warm_up() -> None:
        # Load the model before the first batch arrives, off the event loop.
        await asyncio.get_running_loop().run_in_executor(executor, get_stage)

    @app.on_partitions_assigned.connect
    async def joined(app, assigned, **kwargs) -> None:
        metrics.group_joined()

    @app.timer(LAG_REFRESH_S)
    async def refresh_lag() -> None:
        if lag_from_end_offsets:  # right even while the worker fetches nothing (a full buffer, a long batch)
            marks = await _end_offsets(app, metrics.positions)
            metrics.refresh_lag(lambda topic, partition: marks.get((topic, partition)))
        else:
            metrics.refresh_lag(lambda topic, partition: _highwater(app, topic, partition))

    async def run(stream) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(batch_size, within=within):
            started = time.perf_counter()
            batch = [InRecord(e.key, e.value, _headers(e), e.message.timestamp and int(e.message.timestamp * 1000),
                              e.message.topic, e.message.partition, e.message.offset)
                     for e in events]
            current = await loop.run_in_executor(executor, get_stage)
            try:
                results = await loop.run_in_executor(executor, current.process_safely, batch)
            except (StateError, OSError):
                # The stage cannot keep its state: stop hard, before acking, so nothing of this batch is
                # committed; the supervisor restarts the worker, which recovers and is redelivered the batch.
                log.critical("%s: state failure; exiting without committing this batch", stage_name, exc_info=True)
                os._exit(70)
            await send_stored(app, outputs, results, stage_name)  # on the broker before take_events acks
            metrics.observe_batch(batch, results, time.perf_counter() - started)
            metrics.observe_stage(current)
            metrics.refresh_lag(lambda topic, partition: _highwater(app, topic, partition))

    app.agent(source, name=f"{stage_name}-agent")(run)
    return app


async def _end_offsets(app: faust.App, positions: dict) -> dict[tuple[str, int], int]:
    """The partitions' end offsets from the broker (Kafka's ``end_offsets``); {} when it cannot answer now."""
    try:
        answer = await app.consumer.highwaters(*(TP(topic, partition) for topic, partition in positions))
    except Exception:  # not started, rebalancing, broker away: the next refresh tries again
        return {}
    return {(tp.topic, tp.partition): offset for tp, offset in answer.items()}


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    """The high watermark from the last fetch response (on tansu, whose ``end_offsets`` is wrong)."""
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:  # not assigned (any more), or no fetch yet
        return None


async def send_stored(app: faust.App, outputs: dict, results: list, stage_name: str, attempts: int = 10) -> None:
    """Send, flush, and re-send what the broker acknowledged without storing: tansu on S3 storage answers
    some produce requests with base offset -1 and no error, and those records are not on the topic."""
    pending = results
    for attempt in range(attempts):
        sent = []
        for result in pending:
            topic = outputs.get(result.topic)
            if topic is None:
                topic = outputs[result.topic] = app.topic(result.topic, key_serializer="raw", value_serializer="raw")
            sent.append(await topic.send(key=result.key, value=result.value))
        await app.producer.flush()
        pending = [result for result, future in zip(pending, sent) if _not_stored(future)]
        if not pending:
            return
        log.warning("%s: the broker acknowledged %d records at offset -1 (not stored); re-sending", stage_name,
                    len(pending))
    log.critical("%s: %d records still not stored after %d attempts; exiting without acking the batch",
                 stage_name, len(pending), attempts)
    os._exit(75)


def _not_stored(future) -> bool:
    if not future.done():  # flush returned: every send has an answer
        return False
    if future.cancelled() or future.exception() is not None:
        return True
    return future.result().offset < 0


def embed_stage_following_promotions(settings: Settings, executor: ThreadPoolExecutor) -> Stage:
    """The embed stage on the latest promoted model, switching on each new promotion. The switch is queued on
    the stage's single thread, so it happens between two batches: none is lost or embedded twice for it."""
    from pipeline.kafka.control import ControlWatcher
    from pipeline.kafka.stages import EmbedStage
    from pipeline.models import served_model

    holder: dict[str, EmbedStage] = {}

    def on_promotion(promotion) -> None:
        def switch() -> None:
            try:
                holder["stage"].switch_model(served_model(settings, promotion))
            except Exception:
                log.exception("embed: cannot serve promoted model %s; keeping %s", promotion.model_dir,
                              holder["stage"].encoder.version)

        executor.submit(switch)

    watcher = ControlWatcher(settings, on_promotion)
    latest = watcher.catch_up()
    stage = None
    if latest is not None:
        try:
            stage = EmbedStage(settings, served=served_model(settings, latest))
        except Exception:
            log.exception("embed: cannot serve promoted model %s; starting on the configured one", latest.model_dir)
    holder["stage"] = stage or EmbedStage(settings)
    watcher.start()
    return holder["stage"]


class ServiceWorker(faust.Worker):
    """faust's worker whose graceful stop is bounded: the first SIGTERM/SIGINT arms the shutdown watchdog."""

    def __init__(self, app: faust.App, watchdog: ShutdownWatchdog, **kwargs):
        super().__init__(app, **kwargs)
        self.watchdog = watchdog

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self.watchdog.arm(reason=f"the graceful stop on {signal.name}")
        if not self._signal_stop_time:
            log.warning("%s: stopping within %.0fs", signal.name, self.watchdog.deadline - time.monotonic(),
                        extra={"event": "shutdown"})
        super()._schedule_shutdown(signal)


def run_worker(settings: Settings, stage_name: str, loglevel: str = "warning") -> None:
    """Run one stage until SIGTERM/SIGINT (faust finishes the batch in hand, flushes and commits), within
    ``shutdown_timeout_s``; under a supervisor, also until the supervisor's process is gone."""
    configure_logging(settings.log_format, settings.verbose, loglevel.upper(), stage=stage_name)
    watchdog = ShutdownWatchdog(settings.shutdown_timeout_s)

    def orphaned() -> None:
        watchdog.arm(min(ORPHAN_GRACE_S, settings.shutdown_timeout_s), "the orphaned worker's stop")
        os.kill(os.getpid(), signal.SIGTERM)  # the same graceful stop, on a shorter clock

    watch_supervisor(orphaned)
    metrics = StageMetrics(stage_name, settings.dlq_topic)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    log.warning("starting (pid %d)", os.getpid(), extra={"event": "start"})
    wait_for_broker(settings, log)
    app = make_app(settings, stage_name, metrics=metrics)
    worker = ServiceWorker(app, watchdog, loglevel=loglevel, quiet=True, override_logging=False)
    worker.execute_from_commandline()
