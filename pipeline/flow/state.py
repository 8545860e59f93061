"""The cluster stage's durable state: snapshots of every generation's window plus a write-ahead log.

The rule that keeps event ids stable across crashes: **a decision is on disk before it is on the broker.**
``ClusterStage.process`` appends the batch's new decisions (document, vector, event, input offset) to the log
and fsyncs it before the Kafka wrapper produces the batch's event records, and the wrapper commits input
offsets only after those records are acknowledged. So on restart

    committed input offset  <=  last produced event  <=  last logged decision,

and replaying from the committed offset meets only documents the recovered state already knows: they get
the same event id again (a duplicate record, never a different one), and everything after is new.

Layout of the state folder::

    CURRENT               "7": the snapshot in force (0 = none yet)
    snapshot-00000007/    one sub-folder per generation (hnswlib index, event sums, bookkeeping) + state.json
    wal-00000007.log      decisions made after snapshot 7, as checksummed frames
    LOCK                  held (flock) by the one worker that owns this state

A snapshot is written to a temporary folder, fsynced and renamed, then ``CURRENT`` is replaced atomically and
only then are the previous snapshot and log deleted: a crash at any point leaves one complete snapshot and
the log that goes with it. A frame torn by a crash mid-append is cut off on recovery (its batch never
reached the broker). Snapshots replace the log, so the log stays bounded by the snapshot interval and the
snapshot by the window.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pipeline.files import fsync_dir as _fsync_dir, replace_folder, staging_folder, write_atomic
from pipeline.flow.cluster import ClusterConfig, IncrementalClusterer
from pipeline.records import EmbeddedDocument, EventMerge

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")  # payload length, crc32


class StateError(RuntimeError):
    pass


@dataclass
class Decision:
    """One new document in a generation's window: what the log needs to put it back after a crash."""

    doc: EmbeddedDocument
    event_id: str


@dataclass
class MergeDecision:
    """A merge of two events of a generation, decided after ``after`` of that generation's decisions of the batch."""

    after: int
    merge: EventMerge


@dataclass
class RecoveredState:
    generations: dict[str, IncrementalClusterer] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" → last input offset decided
    snapshot: int = 0
    logged_batches: int = 0
    logged_documents: int = 0
    torn_bytes: int = 0  # cut off the end of the log (a crash mid-append)


def _write_durably(path: Path, data: bytes) -> None:
    write_atomic(path, data, fsync=True)
    _fsync_dir(path.parent)


class ClusterStateStore:
    def __init__(self, folder: str | Path, snapshot_every_docs: int = 50_000, snapshot_every_s: float = 300.0):
        self.folder = Path(folder)
        self.snapshot_every_docs = snapshot_every_docs
        self.snapshot_every_s = snapshot_every_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.folder / "LOCK", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StateError(f"another cluster worker holds {self.folder} (one clusterer per state folder)") from None
        self.sequence = 0
        self._wal = None
        self.logged_since_snapshot = 0
        self.last_snapshot_at = time.monotonic()

    # --- paths ----------------------------------------------------------------------------------------------
    def _snapshot_dir(self, sequence: int) -> Path:
        return self.folder / f"snapshot-{sequence:08d}"

    def _wal_path(self, sequence: int) -> Path:
        return self.folder / f"wal-{sequence:08d}.log"

    # --- recovery -------------------------------------------------------------------------------------------
    def recover(self, new_generation) -> RecoveredState:
        """Load the snapshot in force and replay its log. ``new_generation(version, config, generations)`` adds
        a generation the way the live stage does (so the same number of generations is kept)."""
        current = self.folder / "CURRENT"
        self.sequence = int(current.read_text().strip() or 0) if current.exists() else 0
        state = RecoveredState(snapshot=self.sequence)
        if self.sequence:
            folder = self._snapshot_dir(self.sequence)
            meta = orjson.loads((folder / "state.json").read_bytes())
            for entry in meta["generations"]:
                state.generations[entry["version"]] = IncrementalClusterer.from_state(folder / entry["folder"])
            state.offsets = meta["offsets"]
        wal = self._wal_path(self.sequence)
        if wal.exists():
            good_bytes = 0
            data = wal.read_bytes()
            for payload, end in self._frames(data):
                self._replay(orjson.loads(payload), state, new_generation)
                good_bytes = end
            state.torn_bytes = len(data) - good_bytes
            if state.torn_bytes:
                log.warning("cluster state: cutting a torn %d-byte frame off %s", state.torn_bytes, wal)
                with open(wal, "r+b") as f:
                    f.truncate(good_bytes)
                    os.fsync(f.fileno())
        self._cleanup(keep=self.sequence)
        self._wal = open(wal, "ab")
        self.logged_since_snapshot = state.logged_documents
        return state

    @staticmethod
    def _frames(data: bytes):
        position = 0
        while position + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, position)
            start, end = position + _FRAME.size, position + _FRAME.size + length
            if end > len(data) or zlib.crc32(data[start:end]) != crc:
                return
            yield data[start:end], end
            position = end

    @staticmethod
    def _replay(frame: dict, state: RecoveredState, new_generation) -> None:
        if frame["type"] == "generation":
            if frame["version"] not in state.generations:
                new_generation(frame["version"], ClusterConfig(**frame["config"]), state.generations)
            return
        by_version: dict[str, tuple[list[EmbeddedDocument], list[str], list]] = {}
        for entry in frame["decisions"]:
            doc = EmbeddedDocument.from_dict(entry["doc"])
            docs, events, _ = by_version.setdefault(doc.model_version, ([], [], []))
            docs.append(doc)
            events.append(entry["event_id"])
        for entry in frame.get("merges", []):
            merge = EventMerge.from_dict(entry["merge"])
            by_version.setdefault(merge.model_version, ([], [], []))[2].append((entry["after"], merge))
        for version, (docs, events, merges) in by_version.items():
            generation = state.generations.get(version)
            if generation is not None and docs:  # else evicted since: the live stage dropped it too
                generation.restore(docs, events, merges, num_threads=1)  # the live graph, exactly
        state.offsets.update(frame["offsets"])
        state.logged_batches += 1
        state.logged_documents += len(frame["decisions"])

    # --- the log --------------------------------------------------------------------------------------------
    def _append(self, frame: dict) -> None:
        if self._wal is None:
            raise StateError("recover() first")
        payload = orjson.dumps(frame)
        self._wal.write(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)

    def log_generation(self, version: str, config: ClusterConfig) -> None:
        """A new generation (written with the batch that opens it, so it is on disk before its decisions)."""
        self._append({"type": "generation", "version": version, "config": dataclasses.asdict(config)})

    def log_batch(self, decisions: list[Decision], offsets: dict[str, int],
                  merges: list[MergeDecision] = ()) -> None:
        """Append the batch and fsync: returns once the decisions survive a crash of this process or machine."""
        self._append({"type": "batch", "offsets": offsets,
                      "decisions": [{"doc": _wal_doc(d.doc), "event_id": d.event_id} for d in decisions],
                      "merges": [{"after": m.after, "merge": m.merge.to_dict()} for m in merges]})
        self._wal.flush()
        os.fsync(self._wal.fileno())
        self.logged_since_snapshot += len(decisions)

    def snapshot_due(self) -> bool:
        return (self.logged_since_snapshot >= self.snapshot_every_docs
                or (self.logged_since_snapshot > 0 and time.monotonic() - self.last_snapshot_at >= self.snapshot_every_s))

    # --- snapshots ------------------------------------------------------------------------------------------
    def snapshot(self, generations: dict[str, IncrementalClusterer], offsets: dict[str, int]) -> Path:
        """Write every generation's window as snapshot N+1, switch ``CURRENT`` to it, start its empty log."""
        started = time.monotonic()
        sequence = self.sequence + 1
        final = self._snapshot_dir(sequence)
        tmp = staging_folder(final)
        tmp.mkdir()
        entries = []
        for number, (version, clusterer) in enumerate(generations.items()):
            sub = tmp / f"generation-{number}"
            sub.mkdir()
            clusterer.to_state(sub)
            entries.append({"version": version, "folder": sub.name})
        (tmp / "state.json").write_bytes(orjson.dumps({"generations": entries, "offsets": offsets,
                                                        "written_at": time.time()}))
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        replace_folder(tmp, final)
        wal = self._wal_path(sequence)
        with open(wal, "wb") as f:
            os.fsync(f.fileno())
        _fsync_dir(self.folder)
        _write_durably(self.folder / "CURRENT", str(sequence).encode())
        if self._wal is not None:
            self._wal.close()
        self._wal = open(wal, "ab")
        self.sequence = sequence
        self._cleanup(keep=sequence)
        self.logged_since_snapshot = 0
        self.last_snapshot_at = time.monotonic()
        log.info("cluster state: snapshot %d (%d generations) in %.1fs", sequence, len(entries),
                 time.monotonic() - started)
        return final

    def _cleanup(self, keep: int) -> None:
        """Remove every snapshot and log but ``keep``'s: older ones, a newer one a crash left before its
        ``CURRENT`` switch, and temporary files."""
        kept = {f"snapshot-{keep:08d}", f"wal-{keep:08d}.log"}
        for path in self.folder.iterdir():
            if path.name in kept or not (path.name.startswith(("snapshot-", "wal-")) or path.name.endswith(".tmp")):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        self._lock_file.close()  # releases the flock


def _wal_doc(doc: EmbeddedDocument) -> dict:
    """What ``restore`` needs: the vector, the times that pick its bucket and the language that picks its centre."""
    return {"doc_id": doc.doc_id, "model_version": doc.model_version, "published_time": doc.published_time,
            "ingested_at_ms": doc.ingested_at_ms, "lang": doc.lang, "vector": doc.vector_b64}
