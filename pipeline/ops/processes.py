"""Stopping the child processes this package starts (broker, storage, workers): SIGTERM, wait, then SIGKILL;
and `ParentGuard`, which stops a child that cannot watch a pipe itself (the Kafka JVM) when this process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


# The guard of a child that cannot watch a pipe itself (a JVM): a small Python process that blocks reading the
# pipe's read end and, at end-of-file (the parent's process is gone, however it went; or the parent closed it),
# stops the child's process group: SIGTERM, then SIGKILL after ``grace``; when the parent died without a word, it
# also removes ``remove`` (the child's temporary storage). It runs in a session of its own, so neither a terminal's
# Ctrl-C nor the group it stops takes it first.
_GUARD = """
import os, shutil, signal, sys, time
fd, group, grace, remove = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
said = b""
try:
    while byte := os.read(fd, 1):  # the parent writes one byte when it closes the pipe itself
        said += byte
except OSError:
    pass
def alive():
    try:
        os.killpg(group, 0)
        return True
    except OSError:
        return False
if alive():
    os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(group, signal.SIGKILL)
if remove and not said:
    shutil.rmtree(remove, ignore_errors=True)
"""


class ParentGuard:
    """Makes ``child`` (the leader of its own process group: ``start_new_session=True``) die with this process.

    ``close()`` after stopping the child: the guard then finds the group gone and exits."""

    def __init__(self, child: subprocess.Popen, grace_s: float = 10.0, remove: str | os.PathLike = ""):
        read_end, self._write_end = os.pipe()  # both non-inheritable: only the guard gets the read end
        try:
            self.process = subprocess.Popen([sys.executable, "-I", "-c", _GUARD, str(read_end), str(child.pid),
                                             str(grace_s), str(remove)], pass_fds=(read_end,), start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            os.close(read_end)

    def close(self, timeout_s: float = 15.0) -> None:
        if self._write_end is not None:
            os.write(self._write_end, b"k")  # a word before closing: the parent cleans up itself
            os.close(self._write_end)
            self._write_end = None
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
