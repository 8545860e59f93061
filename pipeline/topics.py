"""Every topic the pipeline uses, created explicitly (auto-created topics get the broker's defaults)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    purpose: str
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    common = {"retention.ms": str(settings.retention_ms), "max.message.bytes": str(settings.max_message_bytes)}
    return [
        TopicSpec(settings.raw_topic, settings.partitions, "raw article HTML, key = document id", common),
        TopicSpec(settings.docs_topic, settings.partitions, "parsed documents (orjson)", common),
        # One partition: clustering is one sequential decision process over a shared index.
        TopicSpec(settings.vectors_topic, 1, "document vectors for the clusterer (orjson, base64 float32)", common),
        TopicSpec(settings.events_topic, settings.partitions, "(doc id → event id) assignments (orjson)", common),
        TopicSpec(settings.dlq_topic, 1, "dead letters: original record, stage, reason (orjson)", common),
    ]


def admin_client(settings: Settings):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="newsevents-admin",
                            request_timeout_ms=30000)


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; fail loudly when an existing one has a different partition count. Returns a report."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = topic_specs(settings)
    report: list[str] = []
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config)
                                     for s in missing])
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won
        deadline = time.monotonic() + timeout_s
        while True:
            described = {d["name"]: d for d in admin.describe_topics([s.name for s in specs])}
            if all(len(described.get(s.name, {}).get("partitions") or []) > 0 for s in specs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        problems = []
        for spec in specs:
            actual = len(described.get(spec.name, {}).get("partitions") or [])
            state = "created" if spec in missing else "exists"
            if actual != spec.partitions:
                problems.append(f"{spec.name}: {actual} partitions, expected {spec.partitions}")
            report.append(f"{spec.name:<16} {actual:>2} partitions  {state:<8} {spec.purpose}")
        if problems:
            raise RuntimeError("topic check failed: " + "; ".join(problems))
        return report
    finally:
        admin.close()
