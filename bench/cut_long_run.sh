#!/usr/bin/env bash
# Issue 18: a long teacher-cut distillation on all the shared labels, nice'd, resumable (rerun the same command after
# any interruption: it resumes from the run's last checkpoint, every 100 steps). The defaults are the run of
# 2026-12-03: six teacher layers keeping the top one, 192 tokens, pooled targets, one epoch (~90 min on 2 cores).
#
#   bash bench/cut_long_run.sh                                   # RUN=$RUNS/cut6s-192
#   LAYERS=bottom-3 RUN=~/.cache/newsevents/runs/cut3-192 EPOCHS=2 bash bench/cut_long_run.sh
#   INIT_FROM=$RUNS/cut6s-192/model LR=1e-4 RUN=$RUNS/cut6s-192b bash bench/cut_long_run.sh  # the shipped student
#
# Runs go to $RUNS (default ~/.cache/newsevents/runs), outside the work tree: a machine change loses them (it did
# on 2026-12-03, with five CPU-hours of the 3-layer run), so commit a model a later session must continue from.
# Set SNAPSHOT=1 to run from a copy of HEAD, so edits to the checkout do not reach a run in progress. The shipped
# recipe itself is deploy/reproduce_student.sh (the TrainSettings defaults); this script is for trying other cuts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=$(cd ../shared/data && pwd)
RUNS=${RUNS:-$HOME/.cache/newsevents/runs}
LAYERS=${LAYERS:-0,2,4,6,8,11}
TOKENS=${TOKENS:-192}
EPOCHS=${EPOCHS:-1}
LR=${LR:-2e-4}
RUN=${RUN:-$RUNS/cut6s-$TOKENS}
INIT=()
[ -n "${INIT_FROM:-}" ] && INIT=(--init-from "$(cd "$INIT_FROM" && pwd)")
if [ "${SNAPSHOT:-0}" = 1 ]; then
  SNAP="$RUN.code"
  rm -rf "$SNAP" && mkdir -p "$SNAP" && git archive HEAD | tar -x -C "$SNAP" && cd "$SNAP"
fi
mkdir -p "$RUN"
# python -m from the (snapshot's) tree, so the code the run imports is the tree it was started from
exec nice -n 10 "$ROOT/.venv/bin/python" -m pipeline.cli students train --arch teacher-cut \
  --labels "$SHARED/labels/e5-int8-corpus" --kept-layers "$LAYERS" --max-tokens "$TOKENS" \
  --min-token-count 1 --max-vocab 120000 --batch-size 32 --learning-rate "$LR" --schedule one-cycle --warmup 0.03 \
  --max-epochs "$EPOCHS" --checkpoint-every 100 --head-fit-docs 6000 --threads 2 "${INIT[@]}" \
  --dev-pairs "$SHARED/eval/dev_pairs.tsv" --dev-input "$SHARED/contest_html/tgcontest_2019-11-08_2019-11-15.tar.gz" \
  --out "$RUN"
