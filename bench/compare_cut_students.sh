#!/usr/bin/env bash
# Issue 18, item 3: teacher-cut students compared at equal compute (the same 10,000 labelled documents, one epoch,
# the same schedule), then a table of validation cosine and dev stream F1 from each run's history.json.
#
#   bash bench/compare_cut_students.sh            # every run; each resumes from its last checkpoint when rerun
#   ONLY="k3-128-pooled k3-128-token" bash bench/compare_cut_students.sh
#
# Runs go to $RUNS (default ~/.cache/newsevents/runs/cmp-*), which outlives the work tree. Token-level targets need
# labels written with --token-states: the first step relabels the five corpus files the shared labels came from
# (int8 e5, the same teacher and recipe; resumable shards) into $TOKEN_LABELS.
set -euo pipefail
cd "$(dirname "$0")/.."
# python -m from the checkout, so a copy of the tree (a snapshot the edits do not reach) runs its own code
NE=(nice -n 10 .venv/bin/python -m pipeline.cli)
SHARED=../shared/data
RUNS=${RUNS:-$HOME/.cache/newsevents/runs}
TOKEN_LABELS=${TOKEN_LABELS:-$HOME/.cache/newsevents/labels/e5-int8-corpus-tok64}
DOCS=${DOCS:-10000}
C=$SHARED/corpus
CORPUS=("$C/tgcontest_html_2019-11-18_halingeorge_part1.tar.gz" "$C/tgcontest_html_2019-11-18_halingeorge_part2.tar.gz"
        "$C/tgcontest_html_2019-11-03_recoilme.tar.gz" "$C/tgcontest_text_2020-04-28_05-03_dzhiblavi.jsonl.gz"
        "$C/tgcontest_text_2019-11_ilyagusev_categories.jsonl.gz")
DEV=(--dev-pairs "$SHARED/eval/dev_pairs.tsv" --dev-input "$SHARED/contest_html/tgcontest_2019-11-08_2019-11-15.tar.gz")
COMMON=(--arch teacher-cut --min-token-count 1 --max-vocab 120000 --batch-size 32 --learning-rate 2e-4
        --schedule one-cycle --warmup 0.05 --max-epochs 1 --checkpoint-every 50 --max-docs "$DOCS" --threads 2 --quiet)

"${NE[@]}" teacher label "${CORPUS[@]}" --out "$TOKEN_LABELS" --teacher e5 --quantize int8 --token-states 64 --threads 2

declare -A RUN=(
  [k3-128-pooled]="--labels $SHARED/labels/e5-int8-corpus --kept-layers bottom-3 --max-tokens 128"
  [k3-128-token]="--labels $TOKEN_LABELS --kept-layers bottom-3 --max-tokens 128 --token-loss-weight 1"
  # pooled targets won at K=3 (val cosine 0.610 vs 0.597, dev F1 0.769 vs 0.759): K and length are compared pooled
  [k3-192-pooled]="--labels $SHARED/labels/e5-int8-corpus --kept-layers bottom-3 --max-tokens 192"
  [k2-128-pooled]="--labels $SHARED/labels/e5-int8-corpus --kept-layers bottom-2 --max-tokens 128"
  [k4-128-pooled]="--labels $SHARED/labels/e5-int8-corpus --kept-layers bottom-4 --max-tokens 128"
)
for name in ${ONLY:-k3-128-pooled k3-128-token k3-192-pooled k2-128-pooled k4-128-pooled}; do
  echo "== $name"
  # shellcheck disable=SC2086
  "${NE[@]}" students train ${RUN[$name]} --out "$RUNS/cmp-$name" "${COMMON[@]}" "${DEV[@]}"
done
.venv/bin/python - "$RUNS" <<'EOF'
import json, sys
from pathlib import Path
print(f"{'run':<16} {'val cosine':>10} {'dev F1':>7} {'threshold':>9} {'centring':>9} {'minutes':>8}")
for run in sorted(Path(sys.argv[1]).glob("cmp-*")):
    history = run / "history.json"
    if history.exists():
        last = json.loads(history.read_text())[-1]
        dev = last.get("dev", {})
        print(f"{run.name[4:]:<16} {last['val_cosine_to_teacher']:>10.4f} {dev.get('f1', float('nan')):>7.4f} "
              f"{dev.get('threshold', float('nan')):>9.2f} {dev.get('centring', ''):>9} {last['seconds'] / 60:>8.1f}")
EOF
