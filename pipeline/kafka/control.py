"""The control topic: model promotions, announced to every embed worker.

Each worker reads ``news.control`` on its own, with no consumer group (a group would hand each record to one
worker only), from the beginning: the last promotion on the topic is the model to serve, on start-up as well
as while running.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from pipeline.config import Settings
from pipeline.kafka import clients
from pipeline.records import Promotion

log = logging.getLogger(__name__)


def publish_promotion(settings: Settings, promotion: Promotion) -> None:
    producer = clients.producer(settings, "newsevents-promote")
    try:
        producer.send(settings.control_topic, key=b"promote", value=promotion.to_bytes()).get(timeout=30)
    finally:
        producer.close()


class ControlWatcher:
    """Follows the control topic in a thread; ``on_promotion`` is called for each promotion after the first
    ``catch_up`` (which returns the latest one already on the topic, for start-up)."""

    def __init__(self, settings: Settings, on_promotion: Callable[[Promotion], None]):
        from pipeline.kafka.reader import make_reader

        self.on_promotion = on_promotion
        self.consumer = make_reader(settings, [settings.control_topic])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self, timeout_ms: int) -> list[Promotion]:
        found = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                try:
                    found.append(Promotion.from_bytes(record.value))
                except (ValueError, KeyError, TypeError) as err:
                    log.warning("ignoring control record at offset %s: %r", record.offset, err)
        return found

    def catch_up(self, quiet_ms: int = 1500) -> Promotion | None:
        """Everything already on the topic (until a poll comes back empty); the latest promotion."""
        latest = None
        while True:
            found = self._read(quiet_ms)
            if not found:
                return latest
            latest = found[-1]

    def start(self) -> None:
        def follow() -> None:
            while not self._stop.is_set():
                try:
                    for promotion in self._read(500):
                        self.on_promotion(promotion)
                except Exception:  # the stream keeps flowing on the current model
                    log.exception("control topic: reading or applying a promotion failed")
                    self._stop.wait(2.0)
            self.consumer.close()

        self._thread = threading.Thread(target=follow, name="control-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
