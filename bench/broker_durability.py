"""Does the embedded broker keep what it acknowledged across restarts? SIGKILL vs SIGTERM, side by side.

    python bench/broker_durability.py [--records 3000] [--restarts 3]

Publishes ``--records`` 1 KB records at 200/s with ``acks=all`` (re-sending what failed) to a durable
embedded broker (tansu on a local S3 server) while restarting the broker ``--restarts`` times, then counts
which acknowledged records are on the topic, and how many were acknowledged at offset -1 (tansu's answer for
a write it did not store; every producer in this project re-sends those).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.ops.broker import EmbeddedBroker  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.kafka.reader import iter_records, make_reader  # noqa: E402
from pipeline.kafka import clients  # noqa: E402
from pipeline.kafka.topics import ensure_topics  # noqa: E402


def trial(kill: bool, records: int, restarts: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="newsevents-durability-"))
    with EmbeddedBroker(durable_dir=folder / "broker", log_dir=folder / "logs") as broker:
        settings = Settings(bootstrap_servers=broker.bootstrap_servers, partitions=2)
        ensure_topics(settings)
        acked: dict[str, int] = {}  # key → the offset the broker acknowledged it at

        def publish() -> None:
            producer = clients.restart_tolerant_producer(settings)
            pending = [f"k{i}" for i in range(records)]
            for attempt in range(10):
                for key in pending:
                    producer.send(settings.raw_topic, key=key.encode(), value=b"x" * 1000).add_callback(
                        lambda meta, key=key: acked.__setitem__(key, meta.offset))
                    if attempt == 0:
                        time.sleep(1 / 200)
                try:
                    producer.flush(timeout=60)
                except Exception:
                    pass
                pending = [k for k in pending if k not in acked]
                if not pending:
                    break
                time.sleep(2)
            producer.close()

        publisher = threading.Thread(target=publish)
        publisher.start()
        for _ in range(restarts):
            time.sleep(records / 200 / (restarts + 1))
            broker.restart_broker(kill=kill, down_s=1.0)
        publisher.join()
        on_topic = {r.key.decode() for r in iter_records(make_reader(settings, [settings.raw_topic]), 5.0)}
    missing = set(acked) - on_topic
    at_minus_one = {k for k, offset in acked.items() if offset < 0}
    return (f"{'SIGKILL' if kill else 'SIGTERM'}: {restarts} restarts, {len(acked)}/{records} acknowledged, "
            f"{len(at_minus_one)} of them at offset -1; {len(missing)} acknowledged records missing from the topic, "
            f"{len(missing - at_minus_one)} of those acknowledged at a real offset")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # reconnect errors while the broker is down
    for kill in (True, False):
        print(trial(kill, args.records, args.restarts), flush=True)


if __name__ == "__main__":
    main()
