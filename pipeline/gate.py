"""The one promotion gate: a model goes into service only when its dev-pair stream F1 (from the one sweep,
``pipeline.evaluate.threshold_sweep``) is at least a reference's plus a margin.

Every route names its reference and margin and records the rule it applied:

* ``students ship``: the teacher (the better of raw and centred), margin ``-bar`` (0.01): served by default;
* ``retrain``: the served model, margin ``--min-gain`` (0): promoted;
* ``students promote``: an operator's explicit choice; no gate, and its record says so.
"""

from __future__ import annotations

from dataclasses import dataclass

MANUAL = "manual promotion (students promote): no gate"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    rule: str


def gate(candidate_f1: float, reference_f1: float, margin: float, reference: str) -> GateDecision:
    """Pass iff ``candidate_f1 >= reference_f1 + margin``; the rule as a sentence with the numbers."""
    passed = candidate_f1 >= reference_f1 + margin
    return GateDecision(passed, f"candidate stream F1 {candidate_f1:.4f} {'>=' if passed else '<'} {reference} "
                                f"{reference_f1:.4f} {margin:+.4f}")
