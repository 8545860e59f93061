#!/usr/bin/env bash
# Reproduces a shipped student from the shared teacher labels, then scores it beside the teacher on the dev pairs and
# ships it (release.json records both and the verdict). Every step resumes where it stopped: rerun it.
#   bash deploy/reproduce_student.sh          # students/default: the six-layer teacher cut (~2.5 hours on 2 cores):
#                                             # one epoch of the TrainSettings defaults, one more at half the rate
#   bash deploy/reproduce_student.sh static   # students/static: the static student, the fast option (~15 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
NE=.venv/bin/newsevents
SHARED=../shared/data
LABELS=$SHARED/labels/e5-int8-corpus
HOME_DIR=${NEWSEVENTS_HOME:-$HOME/.cache/newsevents}
DEV_TAR=$SHARED/contest_html/tgcontest_2019-11-08_2019-11-15.tar.gz
DEV=(--dev-pairs "$SHARED/eval/dev_pairs.tsv" --dev-input "$DEV_TAR")
WHICH=${1:-default}
RUN=${RUN:-runs/student-$WHICH}
case "$WHICH" in
  default)
    $NE students train --labels "$LABELS" --out "$RUN/first-epoch" "${DEV[@]}"
    $NE students train --labels "$LABELS" --out "$RUN/second-epoch" "${DEV[@]}" \
      --init-from "$RUN/first-epoch/model" --learning-rate 1e-4
    MODEL=$RUN/second-epoch/model SHIP_TO=() ;;
  static)
    $NE students train --labels "$LABELS" --out "$RUN" "${DEV[@]}" \
      --arch static --embedding-dim 256 --aggregation mean --max-vocab 80000 --min-token-count 2 --max-tokens 256 \
      --embedding-storage int8 --batch-size 256 --learning-rate 2e-3 --max-epochs 5 --schedule plateau
    MODEL=$RUN/model SHIP_TO=(--to students/static) ;;
  *) echo "usage: bash deploy/reproduce_student.sh [default|static]" >&2; exit 2 ;;
esac
$NE teacher label "$DEV_TAR" --out "$HOME_DIR/labels/e5-contest" --teacher e5
$NE students ship "$MODEL" --teacher-labels "$HOME_DIR/labels/e5-contest" "${SHIP_TO[@]}" \
  --reproduce "bash deploy/reproduce_student.sh${1:+ $1}"
