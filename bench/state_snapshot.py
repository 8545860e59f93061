"""What the cluster stage's durable state costs: snapshot and recovery time and size for a full window.

    python bench/state_snapshot.py [--docs 100000] [--dim 384]

Fills a clusterer with ``--docs`` random documents (``restore``, all in one bucket), snapshots it through
``ClusterStateStore`` (fsync included) and recovers it, as a restarted cluster worker does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer  # noqa: E402
from pipeline.records import EmbeddedDocument  # noqa: E402
from pipeline.flow.state import ClusterStateStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clusterer = IncrementalClusterer(ClusterConfig(dim=args.dim))
    docs = [EmbeddedDocument(doc_id=f"d{i}", vector=rng.normal(size=args.dim).astype(np.float32), model_version="m",
                             published_time="2019-11-08T10:00:00+00:00") for i in range(args.docs)]
    started = time.monotonic()
    clusterer.restore(docs, [f"ev-{i // 3}" for i in range(args.docs)])
    print(f"filled {args.docs} documents in {time.monotonic() - started:.1f}s")
    folder = Path(tempfile.mkdtemp(prefix="newsevents-state-"))
    store = ClusterStateStore(folder)
    store.recover(lambda *_: None)
    started = time.monotonic()
    store.snapshot({"m": clusterer}, {"news.vectors:0": args.docs - 1})
    took = time.monotonic() - started
    size = store.size_bytes()
    store.close()
    store = ClusterStateStore(folder)
    started = time.monotonic()
    recovered = store.recover(lambda *_: None)
    print(f"snapshot {took:.2f}s, {size / 1e6:.0f} MB ({size / args.docs:.0f} bytes/document); "
          f"recovery {time.monotonic() - started:.2f}s, {recovered.generations['m'].live_documents} live documents")
    store.close()


if __name__ == "__main__":
    main()
