"""The one promotion gate: each route's rule, with its numbers in the record."""

from pipeline.gate import gate


def test_the_gate_passes_at_the_reference_plus_its_margin_and_says_so():
    ship = gate(0.860, 0.868, -0.01, "teacher")  # students ship: within a point of the teacher
    assert ship.passed and ship.rule == "candidate stream F1 0.8600 >= teacher 0.8680 -0.0100"
    assert not gate(0.857, 0.868, -0.01, "teacher").passed
    retrain = gate(0.801, 0.801, 0.0, "served")  # retrain: at least the served model
    assert retrain.passed and ">= served 0.8010 +0.0000" in retrain.rule
    refused = gate(0.80, 0.79, 0.02, "served")
    assert not refused.passed and "< served 0.7900 +0.0200" in refused.rule
