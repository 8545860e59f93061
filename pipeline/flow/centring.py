"""Centring in the window: the running mean of each language's vectors, subtracted before linking.

Encoders put every document near one shared direction (e5's corpus mean has norm 0.86), and documents of a
language the model knows poorly near another one of their own. Cosine similarity then counts that shared
part: unrelated articles of such a language pass any threshold tuned on the big languages. Subtracting the
mean of the document's language (and renormalising) leaves what tells documents apart.

* **Running, per language, over the live window.** Each time bucket keeps the sum and count of its unit
  vectors per language; the window's statistics are the sum over live buckets, so a dropped bucket simply
  leaves them. No model-specific file is needed: any served model is centred on what it serves.
* **Shrinkage for small samples.** A language's centre is ``(sum_lang + k * global) / (count_lang + k)``, a
  language with few documents yet sits near the global centre; the global one is ``sum / (count + k)``, so the
  first documents of a fresh stream are barely moved. ``k`` is ``prior_docs``.
* **One document at a time.** A document is added to the statistics and then centred, each after the ones
  before it: a document's centre depends on what arrived before it, never on how the stream was cut into
  micro-batches, and the first documents of a stream are centred on themselves rather than left raw.
* **Exact replay.** Window totals are kept incrementally (and stored in snapshots); a dropped bucket's share is
  taken out by summing the remaining buckets again, in sorted order. A restart that restores the same decisions
  in the same order rebuilds bit-identical centres.
"""

from __future__ import annotations

import numpy as np

CENTRING_MODES = ("none", "global", "language")
DEFAULT_CENTRING = "language"  # measured best on the dev pairs (README, "Events")
DEFAULT_PRIOR_DOCS = 2.0


class WindowCentre:
    def __init__(self, dim: int, mode: str = DEFAULT_CENTRING, prior_docs: float = DEFAULT_PRIOR_DOCS):
        if mode not in CENTRING_MODES:
            raise ValueError(f"centring must be one of {', '.join(CENTRING_MODES)}, not {mode!r}")
        self.dim, self.mode, self.prior_docs = dim, mode, float(prior_docs)
        self.sums: dict[int, dict[str, np.ndarray]] = {}  # bucket → language → sum of unit vectors
        self.counts: dict[int, dict[str, int]] = {}
        self.total_sums: dict[str, np.ndarray] = {}  # the live window's, per language
        self.total_counts: dict[str, int] = {}
        self.grand_sum = np.zeros(dim, dtype=np.float32)
        self.grand_count = 0

    def add(self, bucket: int, lang: str, vector: np.ndarray) -> None:
        if self.mode == "none":
            return
        _accumulate(self.sums.setdefault(bucket, {}), self.counts.setdefault(bucket, {}), lang, vector, 1)
        _accumulate(self.total_sums, self.total_counts, lang, vector, 1)
        self.grand_sum += vector
        self.grand_count += 1

    def add_and_centre(self, bucket: int, lang: str, vector: np.ndarray) -> np.ndarray:
        """Count a new document, then centre it (a stream's documents, one after another)."""
        self.add(bucket, lang, vector)
        if self.mode == "none":
            return vector
        return centre_and_normalise(vector, self.centre(lang))

    def drop(self, bucket: int) -> None:
        if self.sums.pop(bucket, None) is None:
            return
        self.counts.pop(bucket, None)
        self.total_sums, self.total_counts = {}, {}
        self.grand_sum, self.grand_count = np.zeros(self.dim, dtype=np.float32), 0
        for number in sorted(self.sums):
            for lang in sorted(self.sums[number]):
                count = self.counts[number][lang]
                _accumulate(self.total_sums, self.total_counts, lang, self.sums[number][lang], count)
                self.grand_sum += self.sums[number][lang]
                self.grand_count += count

    def centre(self, lang: str) -> np.ndarray:
        k = self.prior_docs
        global_centre = self.grand_sum / (self.grand_count + k)
        if self.mode == "global" or lang not in self.total_sums:
            return global_centre
        return (self.total_sums[lang] + k * global_centre) / (self.total_counts[lang] + k)

    def apply(self, vectors: np.ndarray, langs: list[str]) -> np.ndarray:
        """``vectors`` (unit rows) minus their language's centre now, renormalised."""
        if self.mode == "none":
            return vectors
        centres = {lang: self.centre(lang) for lang in set(langs)}
        return centre_and_normalise(vectors, np.stack([centres[lang] for lang in langs]))

    # --- persistence (inside the clusterer's snapshot) ----------------------------------------------------
    def to_state(self) -> tuple[dict, np.ndarray]:
        keys = [(bucket, lang) for bucket in sorted(self.sums) for lang in sorted(self.sums[bucket])]
        langs = sorted(self.total_sums)
        rows = [self.sums[b][lang] for b, lang in keys] + [self.total_sums[lang] for lang in langs] + [self.grand_sum]
        meta = {"keys": [[b, lang, self.counts[b][lang]] for b, lang in keys],
                "totals": [[lang, self.total_counts[lang]] for lang in langs], "grand_count": self.grand_count}
        return meta, np.stack(rows).astype(np.float32)

    @classmethod
    def from_state(cls, meta: dict, sums: np.ndarray, empty: "WindowCentre") -> "WindowCentre":
        """What ``to_state`` wrote, in the space of ``empty`` (its dimension, mode and prior)."""
        centre = cls(empty.dim, empty.mode, empty.prior_docs)
        for row, (bucket, lang, count) in enumerate(meta["keys"]):
            centre.sums.setdefault(int(bucket), {})[lang] = sums[row].copy()
            centre.counts.setdefault(int(bucket), {})[lang] = int(count)
        offset = len(meta["keys"])
        for row, (lang, count) in enumerate(meta["totals"], start=offset):
            centre.total_sums[lang] = sums[row].copy()
            centre.total_counts[lang] = int(count)
        centre.grand_sum = sums[-1].copy()
        centre.grand_count = int(meta["grand_count"])
        return centre


def centre_and_normalise(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``vectors - centre``, renormalised: one vector or rows (the stream's centring, centred training targets,
    the centred teacher a student is compared with). The two shapes keep their own exact arithmetic."""
    centred = vectors - centre
    if centred.ndim == 1:
        return centred / max(float(np.linalg.norm(centred)), 1e-12)
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def _accumulate(sums: dict[str, np.ndarray], counts: dict[str, int], lang: str, vector: np.ndarray,
                count: int) -> None:
    """``vector`` (a sum of ``count`` unit vectors) into ``lang``'s running sum and count."""
    if lang in sums:
        sums[lang] += vector
    else:
        sums[lang] = vector.astype(np.float32, copy=True)
    counts[lang] = counts.get(lang, 0) + count
