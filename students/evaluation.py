"""Dev-pair evaluation of an encoder through the stream's own clusterer: what decides whether a student ships.

``DevPairEvaluator(pairs, inputs)(encoder)`` embeds every document of the pairs' days, clusters them in
published-time order with the production clusterer at each threshold of a sweep, and returns the best
threshold's F1 (with precision, recall, and batch average link at the same threshold). Every model is scored
at its own best threshold, so a student and a teacher that live in different spaces are compared fairly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.evaluate import CENTRINGS, THRESHOLD_GRID



@dataclass
class DevPairEvaluator:
    pairs_path: str
    inputs: list[str]
    max_chars: int = 1500
    thresholds: tuple[float, ...] = THRESHOLD_GRID
    centrings: tuple[str, ...] = CENTRINGS
    docs: list = field(init=False)

    def __post_init__(self) -> None:
        from pipeline.evaluate import read_pairs
        from pipeline.flow.documents import InputStats, iter_documents

        self.pairs = read_pairs(self.pairs_path)
        self.docs = list(iter_documents(self.inputs, InputStats()))
        if not self.docs:
            raise ValueError(f"no parseable documents in {self.inputs}")

    def embedded(self, encoder) -> list:
        from pipeline.flow.embed import embed

        out = []
        for start in range(0, len(self.docs), 256):
            out += embed(self.docs[start:start + 256], encoder, batch_size=64, max_chars=self.max_chars)
        return out

    def __call__(self, encoder) -> dict:
        return self.score(self.embedded(encoder))

    def score(self, embedded: list) -> dict:
        """The stream F1 at the best threshold and centring of the sweep, and batch average link there."""
        from pipeline.evaluate import evaluate, threshold_sweep

        sweep = threshold_sweep(self.pairs, embedded, ["stream"], self.thresholds, centrings=self.centrings)
        best, centring = sweep.best, sweep.centring
        batch = evaluate(self.pairs, embedded, "batch", best.threshold, {"centring": centring}).overall
        return {"stream_f1": round(best.overall.f1, 4), "precision": round(best.overall.precision, 4),
                "recall": round(best.overall.recall, 4), "threshold": float(best.threshold), "centring": centring,
                "batch_f1": round(batch.f1, 4), "pairs_scored": best.overall.pairs_scored,
                "pairs_missing": best.overall.pairs_missing, "model_version": embedded[0].model_version,
                "by_day": {day: round(score.f1, 4) for day, score in best.by_day.items()},
                "curve": {f"{r.threshold:.2f}": round(r.overall.f1, 4) for r in sweep.rows["stream"]}}
