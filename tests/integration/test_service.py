"""``newsevents run`` as a service: workers die with it, restart under it, stop in time, and report metrics.

Real processes on a real broker, as a user starts them; the tiny model keeps them quick.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.kafka.publish import publish
from pipeline.kafka.reader import iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.ops.broker import free_port, kafka_available, make_broker
from pipeline.ops.demo import Accounting
from pipeline.ops.supervise import Workers, settings_env

THRESHOLD = 0.995  # the tiny model merges documents into events here (see test_faults.py)


def _settings(bootstrap: str, tiny_model_dir, tmp_path: Path, **changes) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(bootstrap_servers=bootstrap, group_prefix=f"svc-{run}", raw_topic=f"{run}.raw",
                    docs_topic=f"{run}.docs", vectors_topic=f"{run}.vectors", events_topic=f"{run}.events",
                    dlq_topic=f"{run}.dlq", control_topic=f"{run}.control", partitions=2,
                    model_dir=str(tiny_model_dir), threshold=THRESHOLD, home=str(tmp_path / "home"),
                    cluster_state_dir=str(tmp_path / "cluster-state"), embed_batch_size=16, **changes)


def _free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


def _start_run(settings: Settings, log_dir: Path, *flags: str) -> tuple[subprocess.Popen, dict[str, int]]:
    """``newsevents run`` with the settings in its environment; returns it and its workers' pids (its children)."""
    out = open(log_dir / f"run-{time.monotonic_ns()}.out", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--log-dir", str(log_dir), *flags],
                            env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.output = out
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"run exited with {proc.returncode}"
            out.seek(0)
            if any(line.startswith("running ") for line in out):
                return proc, _children(proc.pid)
            time.sleep(0.2)
        raise AssertionError("run did not start its workers")
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        raise


def _children(pid: int) -> dict[str, int]:
    """The stage of each child process of ``pid`` (``… pipeline.cli worker STAGE``) → its pid."""
    found = {}
    for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
        command = open(f"/proc/{child}/cmdline").read().split("\0")
        if "worker" in command:
            found[command[command.index("worker") + 1]] = int(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _wait_healthy(port: int, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        if status == 200:
            return orjson.loads(body)
        time.sleep(0.5)
    raise AssertionError(f"/healthz on {port} did not turn 200 within {timeout_s:.0f}s (last {status} {body!r})")


def _metric(port: int, name: str, **labels: str) -> float:
    text = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def _crawl(contest_docs: dict[str, bytes], folder: Path, start: int, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, raw in list(contest_docs.items())[start:start + count]:
        (folder / f"{doc_id}.html").write_bytes(raw)
    return folder


def _settle(settings: Settings, keys: list[str], timeout_s: float = 180.0) -> Accounting:
    books = Accounting.empty(keys)
    reader = make_reader(settings, [settings.events_topic, settings.dlq_topic])
    deadline = time.monotonic() + timeout_s
    for record in iter_records(reader, idle_timeout_s=None,
                               stop=lambda: len(books.settled) == len(keys) or time.monotonic() > deadline):
        books.add(record)
    for record in iter_records(reader, idle_timeout_s=2.0):  # late duplicates or conflicts
        books.add(record)
    reader.close()
    return books


def test_run_restarts_a_killed_worker_and_metrics_count_what_went_through(kafka_bootstrap, tiny_model_dir,
                                                                          contest_docs, tmp_path):
    # a worker killed with SIGKILL holds its partitions until its session ends (Kafka's default: 45 s)
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path, session_timeout_s=10.0)
    ensure_topics(settings)
    base = _free_ports(3)
    run, pids = _start_run(settings, tmp_path, "--metrics-port", str(base))
    try:
        ports = dict(zip(["parse", "embed", "cluster"], range(base, base + 3)))
        for stage, port in ports.items():
            assert _wait_healthy(port)["pid"] == pids[stage]
        first = publish(settings, [_crawl(contest_docs, tmp_path / "a", 0, 40)], progress=False)
        books = _settle(settings, first.keys)
        assert books.settled == books.published
        assert _metric(ports["parse"], "newsevents_records_in_total", stage="parse") == 40
        assert _metric(ports["parse"], "newsevents_records_out_total", topic=settings.docs_topic) == 40
        assert _metric(ports["embed"], "newsevents_records_out_total", topic=settings.vectors_topic) == 40
        assert _metric(ports["cluster"], "newsevents_records_out_total", topic=settings.events_topic) == 40
        assert _metric(ports["cluster"], "newsevents_batch_size_count") >= 1
        assert _metric(ports["cluster"], "newsevents_cluster_window_documents") == 40
        assert _metric(ports["cluster"], "newsevents_cluster_log_fsync_seconds_count") >= 1
        assert _metric(ports["embed"], "newsevents_model_info", model_version=books.book.by_doc[first.keys[0]]
                       .model_version) == 1
        assert _metric(ports["cluster"], "newsevents_input_lag", topic=settings.vectors_topic) == 0

        os.kill(pids["parse"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (health := _get(f"http://127.0.0.1:{ports['parse']}/healthz"))[0] != 200 or \
                orjson.loads(health[1])["pid"] == pids["parse"]:
            assert time.monotonic() < deadline, "the killed parse worker was not restarted"
            time.sleep(0.5)
        run.output.seek(0)
        assert "restarted the parse worker" in run.output.read()
        second = publish(settings, [_crawl(contest_docs, tmp_path / "b", 40, 10)], progress=False)
        books = _settle(settings, second.keys)
        assert books.settled == books.published  # the restarted parse worker carries the stream on
        assert _metric(ports["parse"], "newsevents_records_in_total", stage="parse") == 10  # a new process

        run.send_signal(signal.SIGTERM)
        assert run.wait(settings.shutdown_timeout_s + 10) == 0
        workers = [orjson.loads(_get(f"http://127.0.0.1:{p}/healthz")[1] or b"{}") for p in ports.values()]
        assert workers == [{}, {}, {}]  # every worker stopped with it
    finally:
        if run.poll() is None:
            run.kill()


def test_kill_9_of_run_leaves_no_worker_alive_and_a_new_run_completes_the_stream(kafka_bootstrap, tiny_model_dir,
                                                                                 contest_docs, tmp_path):
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path)
    ensure_topics(settings)
    run, pids = _start_run(settings, tmp_path)
    summary = publish(settings, [_crawl(contest_docs, tmp_path / "crawl", 0, 200)], progress=False, rate=40.0)
    reader = make_reader(settings, [settings.events_topic])
    seen = Accounting.empty(summary.keys)
    deadline = time.monotonic() + 120
    for record in iter_records(reader, idle_timeout_s=None,
                               stop=lambda: len(seen.settled) >= 20 or time.monotonic() > deadline):
        seen.add(record)
    reader.close()
    assert 20 <= len(seen.settled), "the first run produced no events"
    run.kill()  # kill -9 of the supervisor, mid-stream
    run.wait()
    killed_at = time.monotonic()
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() - killed_at < 10:
        time.sleep(0.2)
    orphans = [stage for stage, pid in pids.items() if _alive(pid)]
    for stage in orphans:
        os.kill(pids[stage], signal.SIGKILL)  # not to leave them running when this fails
    assert len(pids) == 3 and orphans == [], "workers outlived their supervisor"

    again, _ = _start_run(settings, tmp_path)  # the state folder's lock is free: the cluster worker starts
    try:
        books = _settle(settings, summary.keys)
        assert again.poll() is None, "the second run exited"
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(settings.shutdown_timeout_s + 10)
    assert books.settled == books.published, f"{len(books.published - books.settled)} documents never settled"
    assert books.book.conflicts == []  # every document has one event id, across both runs
    assert len(summary.keys) == 200


@pytest.mark.parametrize("engine", ["tansu", "kafka"])
def test_sigterm_with_the_broker_gone_exits_within_the_timeout(engine, tiny_model_dir, tmp_path):
    def cpu_seconds(pid: int) -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    if engine == "kafka" and not kafka_available():
        pytest.skip("Apache Kafka's jars are not fetched (deploy/setup.sh)")
    port = _free_ports(1)
    with make_broker(engine) as broker:
        settings = _settings(broker.bootstrap_servers, tiny_model_dir, tmp_path, shutdown_timeout_s=6.0,
                             metrics_port=port)
        ensure_topics(settings)
        workers = Workers(settings, ["embed"], log_dir=tmp_path / "logs").start()
        _wait_healthy(port)
    try:  # the broker is gone now
        worker = workers.processes["embed"]
        time.sleep(3.0)
        before, started = cpu_seconds(worker.pid), time.monotonic()
        time.sleep(10.0)
        share = (cpu_seconds(worker.pid) - before) / (time.monotonic() - started)
        print(f"{engine} gone: the embed worker used {share:.1%} of a core")
        assert worker.poll() is None, "a worker waits for its broker"
        assert share < 0.03, f"{share:.1%} of a core while the broker is away"
        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        worker.wait(settings.shutdown_timeout_s + 4)  # raises TimeoutExpired if it hangs
        assert time.monotonic() - stopped <= settings.shutdown_timeout_s + 4
    finally:
        workers.stop(timeout_s=1)


def test_publish_and_events_without_a_broker_fail_fast_in_one_line(contest_docs, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["KAFKA_BOOTSTRAP_SERVERS"] = nowhere

    def newsevents(*args: str) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                                timeout=60, env=env)
        return result, time.monotonic() - started

    result, seconds = newsevents("publish", str(tmp_path / "nonexistent"))
    assert result.returncode == 1 and seconds < 5  # the path is checked before any broker
    assert result.stderr.strip() == f"newsevents: error: {tmp_path / 'nonexistent'}: no such file or directory"
    crawl = _crawl(contest_docs, tmp_path / "crawl", 0, 2)
    for args in (("publish", str(crawl), "--quiet"), ("events",)):
        result, seconds = newsevents(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and seconds < 15, (args, seconds, result.stderr[-2000:])
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"no Kafka broker answers at {nowhere}" in lines[0]
        assert "`newsevents broker`" in lines[0] and "KAFKA_BOOTSTRAP_SERVERS" in lines[0]


def test_two_embed_workers_share_the_partitions_and_one_takes_over_when_the_other_is_killed(
        kafka_bootstrap, tiny_model_dir, contest_docs, tmp_path):
    """Consumer-group scale-out: two embed workers share news.docs' two partitions; one is killed with SIGKILL and
    the other takes its partition once the dead member's session ends (10 s here). No document is lost, and every
    document's vectors carry one model version."""
    from collections import defaultdict

    from pipeline.records import EmbeddedDocument

    base = _free_ports(4)
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path, session_timeout_s=10.0, metrics_port=base)
    ensure_topics(settings)
    with Workers(settings, [], log_dir=tmp_path / "logs") as workers:
        for stage, name in (("parse", "parse"), ("embed", "embed-a"), ("embed", "embed-b"), ("cluster", "cluster")):
            workers.start_one(stage, name)
        ports = {name: child.port for name, child in workers.children.items()}
        for port in ports.values():
            _wait_healthy(port)
        first = publish(settings, [_crawl(contest_docs, tmp_path / "a", 0, 80)], progress=False)
        assert _settle(settings, first.keys).settled == set(first.keys)
        shares = {n: _metric(ports[n], "newsevents_records_in_total", stage="embed") for n in ("embed-a", "embed-b")}
        assert all(shares.values()) and sum(shares.values()) >= 80, shares  # both worked: the partitions are shared
        os.kill(workers.processes["embed-b"].pid, signal.SIGKILL)
        second = publish(settings, [_crawl(contest_docs, tmp_path / "b", 80, 80)], progress=False)
        books = _settle(settings, second.keys)
        assert books.settled == set(second.keys), "embed-a took over embed-b's partition"
        assert _metric(ports["embed-a"], "newsevents_records_in_total", stage="embed") >= shares["embed-a"] + 80
    versions = defaultdict(set)
    for record in iter_records(make_reader(settings, [settings.vectors_topic]), idle_timeout_s=3.0):
        vector = EmbeddedDocument.from_bytes(record.value)
        versions[vector.doc_id].add(vector.model_version)
    assert set(versions) == set(first.keys) | set(second.keys)
    assert all(len(v) == 1 for v in versions.values()), "a document embedded by two model versions"


def test_a_worker_that_joined_while_its_topic_was_missing_from_metadata_takes_the_partitions_within_seconds(
        kafka_bootstrap, tiny_model_dir, contest_docs, tmp_path):
    """Issue 20: a group leader that assigns while its metadata lacks the source topic (after a broker restart,
    before a metadata request succeeded; here: the topic is not created yet) gets no partitions. aiokafka rejoins
    only when a metadata refresh shows the topic's partitions, by default after 5 minutes; the workers refresh
    every few seconds (``CONSUMER_METADATA_MAX_AGE_S``), so the worker takes the partitions and the stream flows."""
    base = _free_ports(1)
    settings = _settings(kafka_bootstrap, tiny_model_dir, tmp_path, metrics_port=base)
    with Workers(settings, ["parse"], log_dir=tmp_path / "logs"):
        assert _wait_healthy(base)["joined_group"]  # joined, with nothing to assign: the topic does not exist
        time.sleep(2.0)  # let the empty assignment settle (the first join may still be in flight)
        ensure_topics(settings)
        summary = publish(settings, [_crawl(contest_docs, tmp_path / "crawl", 0, 5)], progress=False)
        reader = make_reader(settings, [settings.docs_topic, settings.dlq_topic])
        parsed: set[str] = set()
        deadline = time.monotonic() + 30
        for record in iter_records(reader, idle_timeout_s=None, stop=lambda: len(parsed) == len(summary.keys)
                                   or time.monotonic() > deadline):
            parsed.add(record.key.decode())
        reader.close()
    assert parsed == set(summary.keys), "the parse worker kept its empty assignment"
