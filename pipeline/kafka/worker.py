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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust

from pipeline.config import Settings
from pipeline.flow.state import StateError
from pipeline.kafka.clients import faust_app_options
from pipeline.kafka.stages import STAGES, ClusterStage, InRecord, Stage

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


def make_app(settings: Settings, stage_name: str, stage: Stage | None = None) -> faust.App:
    if stage_name not in STAGES:
        raise ValueError(f"unknown stage {stage_name!r}; stages are {', '.join(STAGES)}")
    source_name, batch_size, within = _stage_batching(settings, stage_name)
    datadir = settings.home_path / "faust" / f"{settings.group_prefix}-{stage_name}"  # not the working directory
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(f"{settings.group_prefix}-{stage_name}", **faust_app_options(settings, batch_size, datadir))
    source = app.topic(source_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    outputs: dict[str, faust.TopicT] = {}
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stage_name}-stage")
    holder: dict[str, Stage] = {}

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

    async def run(stream) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(batch_size, within=within):
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

    app.agent(source, name=f"{stage_name}-agent")(run)
    return app


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

    holder: dict[str, EmbedStage] = {}

    def on_promotion(promotion) -> None:
        def switch() -> None:
            try:
                holder["stage"].switch_model(promotion.model_dir)
            except Exception:
                log.exception("embed: cannot serve promoted model %s; keeping %s", promotion.model_dir,
                              holder["stage"].encoder.version)

        executor.submit(switch)

    watcher = ControlWatcher(settings, on_promotion)
    latest = watcher.catch_up()
    stage = None
    if latest is not None:
        try:
            stage = EmbedStage(settings, model_dir=Path(latest.model_dir))
        except Exception:
            log.exception("embed: cannot serve promoted model %s; starting on the configured one", latest.model_dir)
    holder["stage"] = stage or EmbedStage(settings)
    watcher.start()
    return holder["stage"]


def run_worker(settings: Settings, stage_name: str, loglevel: str = "warning") -> None:
    """Run one stage until SIGTERM/SIGINT (faust finishes the batch in hand, flushes and commits)."""
    app = make_app(settings, stage_name)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
