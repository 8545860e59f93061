"""Stage workers as child processes (``newsevents worker STAGE``), one per stage replica.

Processes, not threads: a stage can be killed and restarted alone, parse workers never import torch, and
each one is exactly what a user runs on another machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from pipeline.config import ENV_PREFIX, Settings
from pipeline.ops.processes import stop_processes


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as NEWSEVENTS_* variables, so a child process sees exactly the parent's configuration."""
    names = {ENV_PREFIX + f.name.upper() for f in fields(settings)} | {"KAFKA_BOOTSTRAP_SERVERS"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    for f in fields(settings):
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    return env


class Workers:
    def __init__(self, settings: Settings, stages: list[str], log_dir: str | Path | None = None, replicas: int = 1):
        self.settings = settings
        self.stages = stages
        self.replicas = replicas
        self.log_dir = Path(log_dir) if log_dir else None
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start_one(self, stage: str, name: str | None = None) -> subprocess.Popen:
        name = name or stage
        output = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"worker-{name}.log", "ab")
            self._logs.append(output)
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", stage], env=settings_env(self.settings),
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        return proc

    def start(self) -> "Workers":
        for stage in self.stages:
            for replica in range(self.replicas):
                self.start_one(stage, stage if self.replicas == 1 else f"{stage}-{replica}")
        return self

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_processes(self.processes.values(), timeout_s)  # faust on SIGTERM: finish the batch, flush, commit
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def __enter__(self) -> "Workers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
