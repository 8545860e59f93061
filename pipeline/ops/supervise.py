"""Stage workers as child processes (``newsevents worker STAGE``), one per stage replica, supervised.

Processes, not threads: a stage can be killed and restarted alone, parse workers never import torch, and
each one is exactly what a user runs on another machine.

Every child dies with its supervisor (``pipeline.lifecycle``: a pipe it watches) and runs in its own process
group. ``Workers.supervise()`` restarts a worker that exited, after an exponential backoff, and raises
``CrashLoop`` when one exits more than ``restart_limit`` times within ``restart_window_s``. ``stop()`` sends
SIGTERM to every worker, waits ``shutdown_timeout_s`` plus a margin (a worker bounds its own stop by
``shutdown_timeout_s``), then SIGKILLs the process groups still there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from pipeline.config import ENV_PREFIX, Settings
from pipeline.lifecycle import SUPERVISOR_FD_ENV, supervisor_pipe
from pipeline.ops.processes import stop_processes

BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0
STABLE_AFTER_S = 60.0  # a worker up this long starts its next backoff from the first step again
KILL_MARGIN_S = 5.0  # after shutdown_timeout_s, before SIGKILL


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as NEWSEVENTS_* variables, so a child process sees exactly the parent's configuration."""
    names = {ENV_PREFIX + f.name.upper() for f in fields(settings)} | {"KAFKA_BOOTSTRAP_SERVERS"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    for f in fields(settings):
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    return env


class CrashLoop(RuntimeError):
    pass


@dataclass
class Restart:
    name: str
    exit_code: int
    delay_s: float
    pid: int = 0


@dataclass
class _Child:
    stage: str
    port: int
    proc: subprocess.Popen | None = None
    pipe: int | None = None  # the write end this child watches
    started_at: float = 0.0
    exits: deque = field(default_factory=deque)  # monotonic times of unrequested exits
    backoff_s: float = 0.0
    restart_at: float | None = None
    last_code: int | None = None


def worker_command(stage: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "worker", stage]


class Workers:
    def __init__(self, settings: Settings, stages: list[str], log_dir: str | Path | None = None, replicas: int = 1,
                 command: Callable[[str], list[str]] = worker_command):
        self.settings = settings
        self.stages = stages
        self.replicas = replicas
        self.log_dir = Path(log_dir) if log_dir else None
        self.command = command
        self.processes: dict[str, subprocess.Popen] = {}
        self.children: dict[str, _Child] = {}
        self._logs: list = []

    def _port_for(self, name: str) -> int:
        if name in self.children:
            return self.children[name].port
        base = self.settings.metrics_port
        return base + len(self.children) if base else 0  # the first worker gets the base, the next +1, ...

    def start_one(self, stage: str, name: str | None = None) -> subprocess.Popen:
        name = name or stage
        child = self.children.get(name) or _Child(stage, self._port_for(name))
        self.children[name] = child
        self._release(child)
        output = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"worker-{name}.log", "ab")
            self._logs.append(output)
        read_end, child.pipe = supervisor_pipe()
        env = settings_env(self.settings.replace(metrics_port=child.port))
        env[SUPERVISOR_FD_ENV] = str(read_end)
        try:
            proc = subprocess.Popen(self.command(child.stage), env=env, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=(read_end,))
        finally:
            os.close(read_end)  # the child has its copy; ours would keep the pipe open
        child.proc, child.started_at, child.restart_at = proc, time.monotonic(), None
        self.processes[name] = proc
        return proc

    def start(self) -> "Workers":
        for stage in self.stages:
            for replica in range(self.replicas):
                self.start_one(stage, stage if self.replicas == 1 else f"{stage}-{replica}")
        return self

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def supervise(self, now: float | None = None) -> list[Restart]:
        """Restart what exited, each after its backoff; the restarts made now. Raises ``CrashLoop``."""
        now = time.monotonic() if now is None else now
        restarted = []
        for name, child in self.children.items():
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.restart_at is None:
                self._schedule(name, child, now)
            if now >= child.restart_at:
                proc = self.start_one(child.stage, name)
                restarted.append(Restart(name, child.last_code, child.backoff_s, proc.pid))
        return restarted

    def _schedule(self, name: str, child: _Child, now: float) -> None:
        child.last_code = child.proc.returncode
        child.exits.append(now)
        window = self.settings.restart_window_s
        while child.exits and now - child.exits[0] > window:
            child.exits.popleft()
        if len(child.exits) > self.settings.restart_limit:
            raise CrashLoop(f"the {name} worker exited {len(child.exits)} times within {window:.0f}s (last exit "
                            f"code {child.last_code}): not restarting it; see its log")
        stable = now - child.started_at >= STABLE_AFTER_S
        child.backoff_s = BACKOFF_FIRST_S if stable or not child.backoff_s else min(2 * child.backoff_s,
                                                                                    BACKOFF_MAX_S)
        child.restart_at = now + child.backoff_s

    def next_restart_in(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        due = [c.restart_at - now for c in self.children.values() if c.restart_at is not None]
        return max(0.0, min(due)) if due else None

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM to every worker (faust: finish the batch, flush, commit), SIGKILL to the process groups of
        those still there after ``timeout_s`` (default: ``shutdown_timeout_s`` + a margin)."""
        timeout_s = self.settings.shutdown_timeout_s + KILL_MARGIN_S if timeout_s is None else timeout_s
        stop_processes(self.processes.values(), timeout_s, whole_group=True)
        for child in self.children.values():
            self._release(child)
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    @staticmethod
    def _release(child: _Child) -> None:
        if child.pipe is not None:
            os.close(child.pipe)  # a child still running now sees its supervisor gone
            child.pipe = None

    def __enter__(self) -> "Workers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_supervised(workers: Workers, should_stop: Callable[[], bool], say: Callable[[str], None]) -> None:
    """``newsevents run``'s loop: restart workers that exit until ``should_stop()``; then stop them all.
    ``CrashLoop`` propagates (after the workers are stopped)."""
    try:
        while not should_stop():
            for restart in workers.supervise():
                say(f"restarted the {restart.name} worker (pid {restart.pid}) {restart.delay_s:.0f}s after it "
                    f"exited with code {restart.exit_code}")
            time.sleep(0.2)
    finally:
        workers.stop()
