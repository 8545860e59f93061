"""Hostile input through the pure parse stage: one output per input, a reason for each refusal, no slow ones.

The same generator feeds 10,000 inputs through a real parse worker in tests/integration/test_faults.py.
"""

import time
from collections import Counter

from pipeline.config import Settings
from pipeline.kafka.stages import InRecord, ParseStage
from pipeline.ops.fuzz import WEIGHTS, hostile_inputs
from pipeline.records import DeadLetter, Document


def test_every_hostile_input_becomes_one_document_or_one_reasoned_dead_letter(contest_docs):
    stage = ParseStage(Settings())
    inputs = list(hostile_inputs(3000, seed=3, real_pages=list(contest_docs.values())[:30]))
    assert {i.kind for i in inputs} == set(WEIGHTS)  # every kind is exercised
    outcomes, slowest = Counter(), 0.0
    for item in inputs:
        record = InRecord(item.key.encode(), item.value, dict(item.headers), 0, "news.raw", 0, 0)
        started = time.process_time()  # CPU time: a busy machine must not fail it, a slow parser must
        out = stage.process_safely([record])
        slowest = max(slowest, time.process_time() - started)
        assert len(out) == 1 and out[0].key == item.key.encode()
        if out[0].topic == stage.settings.docs_topic:
            assert Document.from_bytes(out[0].value).doc_id == item.key
            outcomes["parsed"] += 1
        else:
            letter = DeadLetter.from_bytes(out[0].value)
            assert letter.reason != "internal-error", (item.kind, letter.detail)
            assert letter.detail and letter.value is not None
            outcomes[letter.reason] += 1
    assert slowest < 3.0, slowest  # no input stalls a worker (the worst, 800 KB of flat <p>s, takes ~0.9 s)
    assert outcomes["parsed"] > 100 and outcomes["tag-soup"] > 0


def test_the_generator_is_deterministic():
    first = [(i.key, i.value) for i in hostile_inputs(1000, seed=5)]
    time.sleep(1.1)  # nothing may depend on the clock (gzip stamps its mtime unless told not to)
    assert first == [(i.key, i.value) for i in hostile_inputs(1000, seed=5)]
