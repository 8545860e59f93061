#!/usr/bin/env bash
# Reproduces students/default, the six-layer teacher cut, from the shared teacher labels: one epoch from the
# teacher's own weights (the TrainSettings defaults), a second at half the rate continuing it (as `retrain` does),
# then scores it beside the teacher on the dev pairs and ships it (release.json records both and the verdict).
# About 2.5 hours on 2 CPU cores, nearly all of it training; every step resumes where it stopped (rerun it).
#   bash deploy/reproduce_student.sh            # RUN=runs/student-default by default
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
NE=.venv/bin/newsevents
SHARED=../shared/data
HOME_DIR=${NEWSEVENTS_HOME:-$HOME/.cache/newsevents}
RUN=${RUN:-runs/student-default}
DEV_TAR=$SHARED/contest_html/tgcontest_2019-11-08_2019-11-15.tar.gz
DEV=(--dev-pairs $SHARED/eval/dev_pairs.tsv --dev-input "$DEV_TAR")
$NE students train --labels $SHARED/labels/e5-int8-corpus --out "$RUN/first-epoch" "${DEV[@]}"
$NE students train --labels $SHARED/labels/e5-int8-corpus --out "$RUN/second-epoch" "${DEV[@]}" \
  --init-from "$RUN/first-epoch/model" --learning-rate 1e-4
$NE teacher label "$DEV_TAR" --out "$HOME_DIR/labels/e5-contest" --teacher e5
$NE students ship "$RUN/second-epoch/model" --teacher-labels "$HOME_DIR/labels/e5-contest" \
  --reproduce "bash deploy/reproduce_student.sh"
