"""Fixtures shared by the suite: one real broker per session, a tiny real model, real contest HTML."""

from __future__ import annotations

import os
import sys
import tarfile
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import build_tiny_bert  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTEST_TAR = SHARED / "contest_html" / "tgcontest_2019-11-08_2019-11-15.tar.gz"
SINGLE = SHARED / "contest_html" / "single"


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """KAFKA_BOOTSTRAP_SERVERS if set, else testcontainers' KafkaContainer where Docker answers, else Apache Kafka
    from the jars ``deploy/setup.sh`` fetched (one KRaft node), else (no jars, no Java) the embedded tansu."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from pipeline.ops.broker import EmbeddedBroker, KafkaBroker, kafka_available

    if not kafka_available():
        warnings.warn("Apache Kafka's jars or Java are missing (run deploy/setup.sh): the tests run on tansu")
        with EmbeddedBroker() as broker:
            yield broker.bootstrap_servers
        return
    with KafkaBroker(log_dir=tmp_path_factory.mktemp("kafka-logs")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def tansu_bootstrap():
    """The embedded tansu broker, the default of ``newsevents demo``: a few tests also run there."""
    from pipeline.ops.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(params=["kafka", "tansu"])
def any_bootstrap(request):
    """Both brokers in turn: for the tests that keep the embedded default covered."""
    return request.getfixturevalue(f"{request.param}_bootstrap")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def contest_tar() -> Path:
    if not CONTEST_TAR.exists():
        pytest.fail(f"the shared contest sample is missing: {CONTEST_TAR}")
    return CONTEST_TAR


@pytest.fixture(scope="session")
def contest_docs(contest_tar) -> dict[str, bytes]:
    """The first 400 contest HTML files of the sample: id → raw bytes."""
    docs: dict[str, bytes] = {}
    with tarfile.open(contest_tar) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".html"):
                docs[Path(member.name).stem] = archive.extractfile(member).read()
                if len(docs) == 400:
                    break
    return docs
