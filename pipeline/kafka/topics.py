"""Every topic the pipeline uses, created explicitly (auto-created topics get the broker's defaults)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.kafka import clients


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
        # Compacted, keyed by the absorbed event id: the latest (only) merge of each id is what a reader needs.
        TopicSpec(settings.merges_topic, 1, "event merges: absorbed event id → surviving id (orjson)",
                  {**common, "cleanup.policy": "compact", "retention.ms": "-1"}),
        TopicSpec(settings.dlq_topic, 1, "dead letters: original record, stage, reason (orjson)", common),
        # Kept forever: a worker that starts reads it from the beginning to find the model to serve.
        TopicSpec(settings.control_topic, 1, "model promotions for the embed workers (JSON)",
                  {**common, "retention.ms": "-1"}),
    ]


def admin_client(settings: Settings):
    return clients.admin(settings)


def _topic_configs(admin, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic configs as the broker reports them (tansu reports none; Apache Kafka does)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    except Exception:
        return {}
    topics = answer.get("topic", {}) if isinstance(answer, dict) else {}
    return {name: {k: (v.get("value") if isinstance(v, dict) else v) for k, v in (entries or {}).items()}
            for name, entries in topics.items()}


def ensure_topics(settings: Settings, timeout_s: float = 30.0, only: tuple[str, ...] = ()) -> list[str]:
    """Create missing topics (``only`` those named, if given); fail loudly when an existing one has a different
    partition count. Returns a report."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = [s for s in topic_specs(settings) if not only or s.name in only]
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
        configs = _topic_configs(admin, [s.name for s in specs])
        for spec in specs:
            actual = len(described.get(spec.name, {}).get("partitions") or [])
            state = "created" if spec in missing else "exists"
            if actual != spec.partitions:
                problems.append(f"{spec.name}: {actual} partitions, expected {spec.partitions}")
            reported = configs.get(spec.name, {})
            for key in ("max.message.bytes",):  # too small a limit would reject documents publish accepts
                if key in reported and int(reported[key]) < int(spec.config[key]):
                    problems.append(f"{spec.name}: {key}={reported[key]}, need at least {spec.config[key]}")
            checked = ", ".join(f"{k}={reported[k]}" for k in spec.config if k in reported) or "configs not reported"
            report.append(f"{spec.name:<16} {actual:>2} partitions  {state:<8} {spec.purpose} ({checked})")
        if problems:
            raise RuntimeError("topic check failed: " + "; ".join(problems))
        return report
    finally:
        admin.close()
