"""Stopping the child processes this package starts (broker, storage, workers): SIGTERM, wait, then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterable


def stop_processes(processes: Iterable[subprocess.Popen], timeout_s: float, one_at_a_time: bool = False,
                   whole_group: bool = False) -> None:
    """``one_at_a_time``: each process is gone before the next is signalled (a broker before its storage).
    ``whole_group``: signal each process's group (a worker leads its own, with anything it started)."""
    processes = [p for p in processes if p.poll() is None]
    send = _signal_group if whole_group else (lambda proc, signum: proc.send_signal(signum))
    if not one_at_a_time:
        for proc in processes:
            send(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in processes:
        if one_at_a_time:
            if proc.poll() is None:
                send(proc, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            send(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
