"""The supervisor's restart policy (backoff, crash-loop limit), the bounded-shutdown watchdog and JSON logs."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import orjson
import pytest

from pipeline.config import Settings
from pipeline.lifecycle import EXIT_SHUTDOWN_TIMEOUT
from pipeline.logs import configure_logging
from pipeline.ops.supervise import BACKOFF_FIRST_S, CrashLoop, Workers


def _exiting(code: int):
    return lambda stage: [sys.executable, "-c", f"import sys; sys.exit({code})"]


def _wait_dead(workers: Workers, name: str) -> None:
    workers.processes[name].wait(30)


def test_a_worker_that_exits_is_restarted_with_growing_backoff_until_the_crash_loop_limit(tmp_path):
    settings = Settings(home=str(tmp_path), restart_limit=2, restart_window_s=600)
    workers = Workers(settings, ["parse"], command=_exiting(3)).start()
    try:
        delays = []
        for _ in range(2):
            _wait_dead(workers, "parse")
            now = time.monotonic()
            assert workers.supervise(now) == []  # exited: scheduled, not restarted at once
            wait = workers.next_restart_in(now)
            assert workers.supervise(now + wait - 0.05) == []
            restarted = workers.supervise(now + wait)
            assert [(r.name, r.exit_code) for r in restarted] == [("parse", 3)]
            delays.append(restarted[0].delay_s)
        assert delays == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S]
        _wait_dead(workers, "parse")
        with pytest.raises(CrashLoop, match="parse worker exited 3 times within 600s .*last exit code 3"):
            workers.supervise()
    finally:
        workers.stop(timeout_s=5)


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def test_workers_die_with_a_sigkilled_supervisor_and_each_gets_its_own_metrics_port(tmp_path):
    probe = ("import os; fd = int(os.environ['NEWSEVENTS_SUPERVISOR_FD']); "
             "print(os.environ['NEWSEVENTS_METRICS_PORT'], flush=True); os.read(fd, 1); print('eof', flush=True)")
    supervisor = (
        "import sys, time; from pipeline.config import Settings; from pipeline.ops.supervise import Workers; "
        f"w = Workers(Settings(home={str(tmp_path)!r}, metrics_port=9300), ['parse', 'embed'], "
        f"log_dir={str(tmp_path / 'logs')!r}, command=lambda stage: [sys.executable, '-c', {probe!r}]).start(); "
        "print(' '.join(str(p.pid) for p in w.processes.values()), flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", supervisor], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    time.sleep(1.0)
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)  # blocked on the pipe while the supervisor lives
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert (tmp_path / "logs" / "worker-parse.log").read_text().split() == ["9300", "eof"]
    assert (tmp_path / "logs" / "worker-embed.log").read_text().split() == ["9301", "eof"]


def test_the_shutdown_watchdog_ends_a_stop_that_hangs():
    code = ("import time; from pipeline.lifecycle import ShutdownWatchdog; w = ShutdownWatchdog(30.0); "
            "w.arm(); w.arm(0.5, 'a hung stop'); time.sleep(60)")  # the closer deadline wins
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_SHUTDOWN_TIMEOUT and time.monotonic() - started < 10
    assert "a hung stop did not finish within its deadline" in result.stderr


def test_json_logs_are_one_object_per_line_with_stage_event_and_doc_id(capsys):
    try:
        configure_logging("json", stage="parse")
        logging.getLogger("kafka.conn").error("Connection failed: ECONNREFUSED")  # client chatter: dropped
        logging.getLogger("pipeline.test").warning("dead letter: %s", "binary",
                                                   extra={"event": "dead-letter", "doc_id": "42"})
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        configure_logging()
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert entry["message"] == "dead letter: binary" and entry["level"] == "WARNING"
    assert (entry["stage"], entry["event"], entry["doc_id"]) == ("parse", "dead-letter", "42")
