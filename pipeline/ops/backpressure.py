"""Backpressure: the embed worker under ``overload`` times what it sustains; its memory and lag, and recovery.

Part of ``newsevents soak``; ``pressure_verdict`` is the pass/fail rule the command prints.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.flow.sources import SourceRecord, iter_sources
from pipeline.kafka import clients
from pipeline.kafka.reader import iter_records, make_reader
from pipeline.kafka.topics import ensure_topics
from pipeline.models import served_model
from pipeline.ops.soak import SoakError
from pipeline.ops.supervise import Workers
from pipeline.plots import pyplot, save_figure


@dataclass
class BackpressureReport:
    sustainable_rate: float = 0.0  # documents/s the embed worker drains a backlog at
    offered_rate: float = 0.0  # what the overload phase aimed at (overload x sustainable)
    achieved_rate: float = 0.0  # what the publisher managed
    overload_s: float = 0.0
    peak_lag: int = 0  # documents published and not yet embedded
    rss_baseline_mb: float = 0.0  # embed worker, model loaded, before the overload
    rss_peak_mb: float = 0.0  # during overload and recovery
    lag_at_overload_end: int = 0
    recovery_load: float = 0.5
    recovery_s: float | None = None  # overload end → lag back under one batch, while recovery_load x goes on
    final_lag: int = -1
    plot: str = ""

    @property
    def offered_factor(self) -> float:
        return self.achieved_rate / max(self.sustainable_rate, 1e-9)

    def lines(self) -> list[str]:
        recovered = f"{self.recovery_s:.1f}s" if self.recovery_s is not None else "never"
        return [
            f"sustainable  {self.sustainable_rate:.0f} docs/s (embed worker draining a backlog)",
            f"overload     {self.achieved_rate:.0f} docs/s offered for {self.overload_s:.0f}s = "
            f"{self.offered_factor:.1f}x sustainable (aimed at {self.offered_rate:.0f})",
            f"lag          peak {self.peak_lag} documents; {self.lag_at_overload_end} when the overload stopped; "
            f"back under one batch after {recovered} at {self.recovery_load}x load; {self.final_lag} at the end",
            f"memory       embed worker RSS {self.rss_baseline_mb:.0f} MB before, peak {self.rss_peak_mb:.0f} MB "
            f"(+{self.rss_peak_mb - self.rss_baseline_mb:.0f} MB)",
            f"plot         {self.plot}",
        ]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class _Counter(threading.Thread):
    """Counts records arriving on a topic (every partition, no group)."""

    def __init__(self, settings: Settings, topic: str):
        super().__init__(daemon=True, name=f"count-{topic}")
        self.reader = make_reader(settings, [topic])
        self.count = 0
        self.stopping = False

    def run(self) -> None:
        for _record in iter_records(self.reader, idle_timeout_s=None, stop=lambda: self.stopping):
            self.count += 1
        self.reader.close()


def _parsed_documents(inputs: list[str | Path], limit: int) -> list[bytes]:
    from pipeline.flow.parse import ParseError, parse_html

    found = []
    for item in iter_sources(inputs):
        if isinstance(item, SourceRecord) and item.format == "html":
            try:
                found.append(parse_html(item.value, item.key).to_bytes())
            except ParseError:
                continue
            if len(found) == limit:
                break
    if not found:
        raise SoakError("no parseable HTML documents in the inputs")
    return found


def run_backpressure(settings: Settings, inputs: list[str | Path], log_dir: str | Path, overload: float = 10.0,
                     overload_s: float = 30.0, recovery_s: float = 600.0, recovery_load: float = 0.5,
                     backlog: int = 1500, say=print) -> BackpressureReport:
    """Offer the embed worker ``overload`` times what it sustains for ``overload_s``, then ``recovery_load``
    times it for up to ``recovery_s`` (less once caught up): sample its memory and lag (documents on
    ``news.docs`` not yet on ``news.vectors``) every 0.25 s."""
    log_dir = Path(log_dir)
    report = BackpressureReport(overload_s=overload_s)
    served_model(settings)
    ensure_topics(settings)
    documents = _parsed_documents(inputs, backlog)
    producer = clients.producer(settings, linger_ms=20, batch_size=256 * 1024,
                                max_request_size=clients.max_request_bytes(settings))
    published = 0

    def send() -> None:
        nonlocal published
        value = documents[published % len(documents)]
        producer.send(settings.docs_topic, key=f"bp-{published}".encode(), value=value)
        published += 1

    samples: list[tuple[float, int, float]] = []
    with Workers(settings, ["embed"], log_dir=log_dir) as workers:
        counter = _Counter(settings, settings.vectors_topic)
        counter.start()
        pid = workers.processes["embed"].pid

        def wait_for(count: int, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while counter.count < count:
                if workers.dead():
                    raise SoakError(f"the embed worker exited: {workers.dead()}; logs in {log_dir}")
                if time.monotonic() > deadline:
                    raise SoakError(f"{counter.count}/{count} embedded after {timeout_s:.0f}s; logs in {log_dir}")
                time.sleep(0.05)

        send()
        producer.flush()
        wait_for(1, 180)
        started = time.monotonic()
        for n in range(len(documents)):
            send()
        producer.flush()
        wait_for(published, 600)
        report.sustainable_rate = len(documents) / (time.monotonic() - started)
        report.rss_baseline_mb = _rss_mb(pid)
        say(f"backpressure: sustainable {report.sustainable_rate:.0f} docs/s; overloading for {overload_s:.0f}s")

        clock = time.monotonic()

        def sample() -> None:
            lag = published - counter.count
            rss = _rss_mb(pid)
            samples.append((time.monotonic() - clock, lag, rss))
            report.peak_lag = max(report.peak_lag, lag)
            report.rss_peak_mb = max(report.rss_peak_mb, rss)

        def offer(rate: float, seconds: float, until_caught_up: bool = False) -> int:
            begin, sent, next_sample = time.monotonic(), 0, 0.0
            while (elapsed := time.monotonic() - begin) < seconds:
                due = int(elapsed * rate) - sent
                for _ in range(min(due, 2000)):
                    send()
                    sent += 1
                if elapsed >= next_sample:
                    sample()
                    next_sample += 0.25
                    if until_caught_up and samples[-1][1] <= settings.embed_batch_size:
                        report.recovery_s = elapsed
                        return sent
                if due <= 0:
                    time.sleep(0.002)
            return sent

        report.offered_rate = overload * report.sustainable_rate
        before = published
        offer_started = time.monotonic()
        offer(report.offered_rate, overload_s)
        report.achieved_rate = (published - before) / (time.monotonic() - offer_started)
        producer.flush()
        sample()
        report.lag_at_overload_end = samples[-1][1]
        report.recovery_load = recovery_load
        offer(recovery_load * report.sustainable_rate, recovery_s, until_caught_up=True)
        producer.flush()
        deadline = time.monotonic() + 120
        while published - counter.count > 0 and time.monotonic() < deadline and not workers.dead():
            sample()
            time.sleep(0.25)
        report.final_lag = published - counter.count
        counter.stopping = True
    producer.close()
    report.plot = str(_plot_backpressure(samples, log_dir / "backpressure.png", overload_s))
    return report


def _plot_backpressure(samples: list[tuple[float, int, float]], path: Path, overload_s: float) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    t, lag, rss = zip(*samples) if samples else ((), (), ())
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, lag, color="#3b6ea8", label="lag (documents)")
    ax.axvspan(0, overload_s, color="#f4a582", alpha=0.3, label="overload")
    ax.set_xlabel("seconds")
    ax.set_ylabel("lag (documents)")
    other = ax.twinx()
    other.plot(t, rss, color="#b2182b", label="embed worker RSS (MB)")
    other.set_ylabel("RSS (MB)")
    other.set_ylim(bottom=0)
    fig.legend(loc="upper center", ncol=3, fontsize="small")
    return save_figure(fig, path)


def pressure_verdict(pressure: BackpressureReport, max_rss_growth_mb: float) -> bool:
    """Passed: the lag came back to 0 after the overload, and the worker's memory grew less than allowed."""
    growth = pressure.rss_peak_mb - pressure.rss_baseline_mb
    return pressure.final_lag == 0 and pressure.recovery_s is not None and growth < max_rss_growth_mb
