"""The one source of Kafka clients: every producer, reader, admin client and faust app setting is made here.

Sizes, acks and timeouts live in one place, with the broker workarounds they carry. Which broker answers is
detected, not configured (``broker_kind``): Apache Kafka in KRaft mode reports its finalized ``metadata.version``
feature in ApiVersions; tansu 0.6 (the embedded broker) reports no feature at all. tansu's workarounds apply
only to tansu (see the README's *Environment notes*):

* tansu makes a group join wait half the session timeout: a short session there (6 s, heartbeat 1 s); on Kafka
  Kafka's own default (45 s, heartbeat 3 s); ``session_timeout_s`` sets another for either;
* tansu's ``end_offsets`` is wrong: readers are group-less and track what they consumed, and lag comes from the
  high watermark of the last fetch; on Kafka lag and "read to the end" use ``end_offsets``;
* idempotent aiokafka producers fail on tansu, and a restarted tansu does not know a producer's sequence numbers:
  there faust's producer and the producers that outlive broker restarts (the soak publisher) are not idempotent
  (kafka-python's publish producer is: it works there); on Kafka every producer is idempotent.

On any broker: a fetch or a request must hold one whole ``max_message_bytes`` record plus its batch headers
(``SIZE_MARGIN``), every topic is created explicitly (``pipeline.kafka.topics``), and a worker's consumer refreshes
its metadata every ``CONSUMER_METADATA_MAX_AGE_S`` (``faust_app_options``).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings

SIZE_MARGIN = 64 * 1024  # room over max_message_bytes for record and batch headers
BROKER_CHECK_S = 8.0  # a command that needs the broker gives up after this long (workers wait instead)
# A worker's consumer re-reads the metadata of its topics this often (aiokafka's default: 5 minutes). A group
# leader that assigned partitions while its metadata lacked the source topic (a join right after a broker
# restart, before any metadata request succeeded: faust "Ignoring missing topic") holds an empty assignment, and
# aiokafka rejoins only when a metadata refresh changes the subscribed topics' partition counts.
CONSUMER_METADATA_MAX_AGE_S = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerProfile:
    """How clients talk to one kind of broker."""

    kind: str  # "kafka" or "tansu"
    idempotent: bool  # every producer idempotent (aiokafka's, and those that live through broker restarts)
    session_timeout_s: float  # consumer group session (a killed member holds its partitions this long)
    heartbeat_interval_s: float
    end_offsets: bool  # ListOffsets(latest) is right: lag and "read to the end" may use it


PROFILES = {
    "kafka": BrokerProfile("kafka", idempotent=True, session_timeout_s=45.0, heartbeat_interval_s=3.0,
                           end_offsets=True),
    # tansu 0.6: joins wait half the session; InitProducerId fails for aiokafka; ListOffsets(latest) is wrong
    "tansu": BrokerProfile("tansu", idempotent=False, session_timeout_s=6.0, heartbeat_interval_s=1.0,
                           end_offsets=False),
}
_kinds: dict[str, str] = {}  # bootstrap servers → detected kind, per process


def broker_kind(settings: Settings, timeout_s: float = 10.0) -> str:
    """"kafka" when the broker reports a finalized ``metadata.version`` (Apache Kafka in KRaft mode), else "tansu":
    tansu and any broker that reports no features get tansu's conservative clients, which work everywhere (so does
    a broker that cannot be asked within ``timeout_s``, with a warning; that answer is not remembered)."""
    servers = settings.bootstrap_servers
    if servers not in _kinds:
        kind = _detect(servers, timeout_s)
        if kind is None:
            log.warning("could not ask %s which broker it is; using the clients that work on any broker", servers)
            return "tansu"
        _kinds[servers] = kind
    return _kinds[servers]


def _detect(servers: str, timeout_s: float) -> str | None:
    from kafka import KafkaAdminClient
    from kafka.errors import IncompatibleBrokerVersion, UnsupportedVersionError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=servers, client_id="newsevents-probe",
                                     request_timeout_ms=max(1000, int(timeout_s * 1000)))
            try:
                features = admin.describe_features()
            finally:
                admin.close()
            return "kafka" if "finalized" in features.get("metadata.version", {}) else "tansu"
        except (IncompatibleBrokerVersion, UnsupportedVersionError):
            return "tansu"  # no ApiVersions v3: not a KRaft Kafka
        except Exception:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def broker_profile(settings: Settings) -> BrokerProfile:
    """The detected broker's profile, with ``session_timeout_s`` applied when set (heartbeat a third of it, at most)."""
    profile = PROFILES[broker_kind(settings)]
    if settings.session_timeout_s > 0:
        from dataclasses import replace

        profile = replace(profile, session_timeout_s=settings.session_timeout_s,
                          heartbeat_interval_s=min(profile.heartbeat_interval_s, settings.session_timeout_s / 3))
    return profile


class BrokerUnavailable(RuntimeError):
    """No broker answers at the configured address: the message names it and the fix, on one line."""


def broker_unavailable(settings: Settings, why: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answers at {settings.bootstrap_servers} ({why}); start one with `newsevents broker`, or "
        "point KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers) at yours")


def _probe(settings: Settings) -> str | None:
    """None when a bootstrap server accepts a TCP connection, else why none did."""
    why = "no bootstrap server given"
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not port.isdigit():
            raise broker_unavailable(settings, f"{server.strip()!r} is not host:port")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2.0):
                return None
        except OSError as err:
            why = (err.strerror or str(err) or type(err).__name__).lower()
    return why


def require_broker(settings: Settings, timeout_s: float = BROKER_CHECK_S) -> None:
    """Return once a bootstrap server accepts a TCP connection; raise ``BrokerUnavailable`` after ``timeout_s``.

    A plain connect, before any client is built: kafka-python would log every retry and time out after 30-60 s."""
    deadline = time.monotonic() + timeout_s
    while (why := _probe(settings)) is not None:
        if time.monotonic() + 0.5 > deadline:
            raise broker_unavailable(settings, why)
        time.sleep(0.5)


def wait_for_broker(settings: Settings, log, first_s: float = 0.5, max_s: float = 30.0) -> None:
    """A worker's start-up: wait, with exponential backoff, until the broker answers (faust's clients give up
    at once when they cannot bootstrap). SIGTERM meanwhile ends the process, as nothing has started."""
    delay, waited = first_s, 0.0
    while (why := _probe(settings)) is not None:
        if waited == 0.0:
            log.warning("no broker at %s yet (%s); retrying with backoff up to %.0fs", settings.bootstrap_servers,
                        why, max_s, extra={"event": "waiting-for-broker"})
        time.sleep(delay)
        waited += delay
        delay = min(2 * delay, max_s)
    if waited:
        log.warning("broker at %s answers after %.0fs", settings.bootstrap_servers, waited,
                    extra={"event": "broker-back"})


def max_request_bytes(settings: Settings) -> int:
    return settings.max_message_bytes + SIZE_MARGIN


def producer(settings: Settings, client_id: str | None = None, **options):
    """A kafka-python producer with ``acks=all``, idempotent where the broker keeps producer state (Kafka);
    ``options`` add to or override the defaults (``linger_ms``, retries and timeouts of a given use)."""
    from kafka import KafkaProducer

    defaults = {"bootstrap_servers": settings.bootstrap_servers, "acks": "all",
                "enable_idempotence": broker_profile(settings).idempotent}
    if client_id is not None:
        defaults["client_id"] = client_id
    return KafkaProducer(**{**defaults, **options})


def publish_producer(settings: Settings):
    """``newsevents publish``'s producer: idempotent (works on tansu with kafka-python), batched, gzip."""
    return producer(settings, "newsevents-publish", enable_idempotence=True, linger_ms=20, compression_type="gzip",
                    max_request_size=max_request_bytes(settings))


def restart_tolerant_producer(settings: Settings, client_id: str | None = None, **options):
    """For a producer that lives through broker restarts: quick reconnects; idempotent on Kafka (which keeps
    producer state in its log), not on tansu (a restarted tansu does not know its sequence numbers; duplicates are
    harmless there, every stage is idempotent per document id)."""
    return producer(settings, client_id, linger_ms=20, retries=5, reconnect_backoff_max_ms=1000,
                    request_timeout_ms=10000, **options)


def reader(settings: Settings, topics: list[str], from_beginning: bool = True):
    """A group-less consumer assigned every partition of ``topics`` (no group join wait, no committed offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, client_id="newsevents-reader",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             reconnect_backoff_ms=100, reconnect_backoff_max_ms=10_000,  # exponential, capped
                             max_partition_fetch_bytes=max_request_bytes(settings),
                             fetch_max_bytes=64 * 1024 * 1024)
    partitions = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic) or set()
        partitions += [TopicPartition(topic, p) for p in sorted(ids)]
    consumer.assign(partitions)
    if from_beginning:
        consumer.seek_to_beginning(*partitions)
    return consumer


def admin(settings: Settings):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="newsevents-admin",
                            request_timeout_ms=30000)


def faust_app_options(settings: Settings, batch_size: int, datadir: Path) -> dict:
    """faust.App settings of a stage worker (its consumer, producer and memory bounds); the session per broker."""
    profile = broker_profile(settings)
    return dict(
        broker=";".join(f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(",")),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # `newsevents topics` creates every topic explicitly
        topic_disable_leader=True,
        broker_session_timeout=profile.session_timeout_s,  # tansu: 6 s, as it makes a join wait half of it
        broker_heartbeat_interval=profile.heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # an assignment made without the source topic's metadata is redone within this (see the constant)
        consumer_metadata_max_age_ms=int(CONSUMER_METADATA_MAX_AGE_S * 1000),
        producer_acks=-1,
        producer_max_request_size=max_request_bytes(settings),
        consumer_max_fetch_size=max_request_bytes(settings),
        stream_buffer_maxsize=4 * max(batch_size, 64),
        datadir=str(datadir),
    )


def make_faust_producers_idempotent(app, settings: Settings) -> bool:
    """Where the broker supports it (Kafka), faust's aiokafka producer is idempotent (faust makes it so only inside
    transactions): a retried send is never stored twice. False, and nothing changed, on tansu."""
    if not broker_profile(settings).idempotent:
        return False
    from faust.transport.drivers.aiokafka import Producer

    class IdempotentProducer(Producer):
        def _settings_extra(self):
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    app.producer_transport.Producer = IdempotentProducer  # before faust makes its producer (lazily)
    return True


CONNECT_BACKOFF_FIRST_S, CONNECT_BACKOFF_MAX_S = 0.1, 5.0


def install_aiokafka_connect_backoff(first_s: float = CONNECT_BACKOFF_FIRST_S, max_s: float = CONNECT_BACKOFF_MAX_S):
    """aiokafka (faust's client) retries a broker it cannot reach every ``retry_backoff_ms`` (100 ms), from each
    of its loops (metadata, coordinator, fetcher, sender): about 35 connects a second while the broker is gone.
    This makes a connection to a node that failed wait before the next try, doubling from ``first_s`` to
    ``max_s`` while it keeps failing, and back to none once a connection is made. Idempotent; for the process."""
    import asyncio

    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._get_conn
    if getattr(original, "backs_off", False):
        return

    async def _get_conn(self, node_id, **kwargs):
        failures = self.__dict__.setdefault("_newsevents_failures", {})  # node → (consecutive failures, retry at)
        count, retry_at = failures.get(node_id, (0, 0.0))
        loop = asyncio.get_running_loop()
        if retry_at > loop.time():
            await asyncio.sleep(retry_at - loop.time())
        conn = await original(self, node_id, **kwargs)
        if conn is None:
            failures[node_id] = (count + 1, loop.time() + min(max_s, first_s * 2 ** count))
        else:
            failures.pop(node_id, None)
        return conn

    _get_conn.backs_off = True
    AIOKafkaClient._get_conn = _get_conn
