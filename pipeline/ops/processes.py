"""Stopping the child processes this package starts (broker, storage, workers): SIGTERM, wait, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Iterable


def stop_processes(processes: Iterable[subprocess.Popen], timeout_s: float, one_at_a_time: bool = False) -> None:
    """``one_at_a_time``: each process is gone before the next is signalled (a broker before its storage)."""
    processes = list(processes)
    if not one_at_a_time:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in processes:
        if one_at_a_time:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
