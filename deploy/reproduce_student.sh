#!/usr/bin/env bash
# Reproduces students/default from the shared teacher labels, then scores it beside the centred teacher and ships
# it (release.json records both and whether it is served by default). About 15 minutes on 2 CPU cores, most of
# it labelling the dev documents with the fp32 teacher once (resumable, kept in $NEWSEVENTS_HOME).
#   bash deploy/reproduce_student.sh            # RUN=runs/student-default by default
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
NE=.venv/bin/newsevents
SHARED=../shared/data
HOME_DIR=${NEWSEVENTS_HOME:-$HOME/.cache/newsevents}
RUN=${RUN:-runs/student-default}
DEV_TAR=$SHARED/contest_html/tgcontest_2019-11-08_2019-11-15.tar.gz
$NE students train --labels $SHARED/labels/e5-int8-corpus --out "$RUN" \
  --arch static --embedding-dim 256 --aggregation mean --max-vocab 80000 --embedding-storage int8 \
  --batch-size 256 --learning-rate 2e-3 --max-epochs 5 \
  --dev-pairs $SHARED/eval/dev_pairs.tsv --dev-input "$DEV_TAR"
$NE teacher label "$DEV_TAR" --out "$HOME_DIR/labels/e5-contest" --teacher e5
$NE students ship "$RUN/model" --teacher-labels "$HOME_DIR/labels/e5-contest" \
  --reproduce "bash deploy/reproduce_student.sh"
