"""The one register → promote → announce path (``students promote`` and ``retrain``): copy the folder into the
registry as its next version, record it as promoted, and announce it on the control topic so running embed
workers switch before their next batch. Which gate let it through (``pipeline.gate``) is recorded beside it."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings


def register_and_announce(settings: Settings, folder: Path, *, rule: str, name: str = "student",
                          register: bool = True, announce: bool = True) -> dict:
    """``registered`` (the registry's copy, or ``folder`` itself with ``register=False``), ``model_version``,
    ``announced`` and, when announcing failed, ``announce_error``: the registry already says so, and workers that
    start later serve it."""
    from students.registry import Registry

    registry = Registry(settings.registry_dir)
    served = registry.register(Path(folder), name) if register else Path(folder)
    promotion = registry.promote(served)
    report = {"registered": str(served), "model_version": promotion.model_version, "announced": False,
              "gate": rule, "registry": str(registry.root)}
    if not announce:
        return report
    from pipeline.kafka.control import publish_promotion
    from pipeline.kafka.topics import ensure_topics

    try:
        ensure_topics(settings)
        publish_promotion(settings, promotion)
    except Exception as err:
        return {**report, "announce_error": repr(err)}
    return {**report, "announced": True}
