import pytest

from conftest import SHARED
from pipeline.evaluate import LabelledPair, read_pairs, score_pairs


def test_pair_f1_on_a_hand_made_case():
    pairs = [LabelledPair("a", "b", True), LabelledPair("a", "c", True), LabelledPair("b", "d", False),
             LabelledPair("c", "d", False), LabelledPair("a", "zz", True)]
    clusters = {"a": 1, "b": 1, "c": 2, "d": 2}  # TP a-b, FN a-c, FP c-d, TN b-d, a-zz missing
    score = score_pairs(pairs, clusters)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 1, 1)
    assert score.precision == score.recall == score.f1 == 0.5
    assert (score.pairs_scored, score.pairs_missing) == (4, 1)


def test_reads_both_pair_formats(tmp_path):
    dev = read_pairs(SHARED / "eval" / "dev_pairs.tsv")
    assert len(dev) == 671 and sum(p.same_event for p in dev) == 319
    dialogue = tmp_path / "dialogue.tsv"
    dialogue.write_text("quality\tsecond_url\tfirst_url\nOK\thttp://b\thttp://a\nBAD\thttp://c\thttp://a\n")
    assert read_pairs(dialogue) == [LabelledPair("http://a", "http://b", True), LabelledPair("http://a", "http://c", False)]
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\ty\n1\t2\n")
    with pytest.raises(ValueError, match="needs columns"):
        read_pairs(bad)
