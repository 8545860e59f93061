"""Worker processes that never outlive their supervisor, and shutdowns that always end.

**Death with the supervisor: a pipe each child watches.** The supervisor (``pipeline.ops.supervise.Workers``)
makes one pipe per child, keeps the write end and hands the child only the read end (its number in
``NEWSEVENTS_SUPERVISOR_FD``). A thread in the child blocks reading it; nothing is ever written, so the read
returns only at end-of-file, which the kernel delivers when the last write end closes: when the supervisor's
process is gone, however it went (SIGKILL and the OOM killer included). The child then stops as on SIGTERM,
within ``ORPHAN_GRACE_S``. Each child also runs in its own process group, so the supervisor's SIGKILL
escalation takes anything the worker started with it.

Why not ``PR_SET_PDEATHSIG``: it fires when the *thread* that forked the child exits, not the process (a
supervisor restarting workers from a helper thread would kill them when that thread ends); it is Linux only;
and setting it race-free needs a ``preexec_fn``, which is unsafe in a threaded parent. The pipe is a property
of the process, works on any POSIX system, and costs one blocked thread in the child.

**Bounded shutdown.** ``ShutdownWatchdog.arm`` starts a clock at the first SIGTERM: if the graceful stop (finish
the batch, flush, commit, snapshot) has not ended by the deadline (``shutdown_timeout_s``; a broker that is gone
makes flush and commit wait forever), the process leaves with ``os._exit(EXIT_SHUTDOWN_TIMEOUT)``. That acks
nothing: offsets are committed only for batches whose outputs the broker stored, and the cluster stage's log
is written before its outputs are produced.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

SUPERVISOR_FD_ENV = "NEWSEVENTS_SUPERVISOR_FD"
ORPHAN_GRACE_S = 5.0  # an orphan stops sooner than a worker asked to: nobody waits for its graceful exit
EXIT_SHUTDOWN_TIMEOUT = 71  # the graceful stop did not finish within its deadline

log = logging.getLogger(__name__)


def supervisor_pipe() -> tuple[int, int]:
    """(read end for the child, write end the supervisor keeps open while the child should live).

    Both ends are non-inheritable (PEP 446): only a child given the read end in ``pass_fds`` gets it, and no
    other child ever holds a write end that would keep the pipe open after the supervisor died."""
    return os.pipe()


def watch_supervisor(on_gone: Callable[[], None], environ: dict[str, str] | None = None) -> bool:
    """Call ``on_gone()`` from a daemon thread when the supervisor's process is gone. False when this process
    was not started by a supervisor (``newsevents worker`` run by hand, systemd, a container)."""
    raw = (os.environ if environ is None else environ).get(SUPERVISOR_FD_ENV, "")
    if not raw.isdigit():
        return False
    fd = int(raw)

    def wait_for_eof() -> None:
        try:
            while os.read(fd, 1):  # nobody writes: only EOF (or an error) ends this
                pass
        except OSError:
            pass
        log.warning("supervisor is gone; stopping", extra={"event": "supervisor-gone"})
        on_gone()

    threading.Thread(target=wait_for_eof, name="supervisor-watch", daemon=True).start()
    return True


class ShutdownWatchdog:
    """Ends the process at a deadline once armed; arming again can only bring the deadline closer."""

    def __init__(self, timeout_s: float, exit_code: int = EXIT_SHUTDOWN_TIMEOUT):
        self.timeout_s = timeout_s
        self.exit_code = exit_code
        self.deadline: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float | None = None, reason: str = "shutdown") -> None:
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        with self._lock:
            if self.deadline is None or deadline < self.deadline:
                self.deadline = deadline
                self.reason = reason
            if self._thread is None:
                self._thread = threading.Thread(target=self._wait, name="shutdown-watchdog", daemon=True)
                self._thread.start()

    def _wait(self) -> None:
        while True:
            with self._lock:
                left = self.deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.2))
        log.critical("%s did not finish within its deadline; exiting without committing more",
                     self.reason, extra={"event": "shutdown-timeout"})
        sys.stderr.flush()
        os._exit(self.exit_code)
