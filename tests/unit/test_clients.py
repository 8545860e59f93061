"""Client settings that do not need a broker: aiokafka's connection backoff."""

from __future__ import annotations

import asyncio

from aiokafka.client import AIOKafkaClient

from pipeline.kafka.clients import install_aiokafka_connect_backoff


def test_a_node_that_cannot_be_reached_is_retried_with_a_doubling_backoff(monkeypatch):
    answers = [None] * 5 + ["conn", None]  # five failures, a connection, a failure
    tried_at: list[float] = []

    async def original(self, node_id, **kwargs):
        tried_at.append(asyncio.get_running_loop().time())
        return answers[len(tried_at) - 1]

    monkeypatch.setattr(AIOKafkaClient, "_get_conn", original)
    install_aiokafka_connect_backoff(first_s=0.05, max_s=0.2)
    install_aiokafka_connect_backoff(first_s=0.05, max_s=0.2)  # twice: still one wrapper
    client = AIOKafkaClient.__new__(AIOKafkaClient)

    async def connect_repeatedly() -> list:
        return [await client._get_conn(1) for _ in answers]

    assert asyncio.run(connect_repeatedly()) == answers
    gaps = [b - a for a, b in zip(tried_at, tried_at[1:])]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2]):  # doubling, capped
        assert expected <= gap < expected + 0.04
    assert gaps[5] < 0.04  # after a connection, no wait before the next try
